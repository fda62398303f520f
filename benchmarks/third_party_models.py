"""The third-party model catalog of ``third_party_zoo.py``: random init, nothing downloaded.

- **timm**: one model per architecture family (a ``timm.models`` module that
  registers models): its smallest registered model by parameter count (counted
  on the meta device), at its default input size or the smallest of 64/96/128/160
  at which it runs with the same output rank (ViT-like models are rebuilt with
  ``img_size=`` where their constructor takes it). The pick is slow (every
  registered model is built once on the meta device), so it is computed family
  by family in worker processes and cached in ``TIMM_CATALOG``.
- **ultralytics**: YOLOv8n and YOLO11n detection, segmentation and pose, built
  from their yaml files (no weights), eval mode.
- **smp**: Unet, FPN, DeepLabV3Plus × resnet34, efficientnet-b0, mobilenet_v2 encoders.
- **diffusers**: a small ``UNet2DModel`` and ``UNet2DConditionModel``.
- **transformers**: BERT, GPT-2, ViT, Llama and Whisper from small configs, each
  with its task head (the layer Torch-Pruning's README flow leaves alone).

A model is an :class:`Entry` (picklable: it travels to worker processes);
:func:`load` builds it into an :class:`Example`.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


def _keep_offline_and_in_temp() -> None:
    """No hub access, and ultralytics' settings file goes to a temp dir, not ~/.config.
    Set before any of the libraries is imported; spawned workers inherit it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:
        scratch = tempfile.mkdtemp(prefix="third-party-zoo-yolo-")
        os.environ["YOLO_CONFIG_DIR"] = scratch
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)


_keep_offline_and_in_temp()

import torch  # noqa: E402  (after the environment above)
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ZOOS = ("timm", "ultralytics", "smp", "diffusers", "transformers")
TIMM_CATALOG = HERE / "results" / "third_party_coverage.timm_catalog.json"
SMALL_SIZES = (64, 96, 128, 160)


@dataclass(frozen=True)
class Entry:
    zoo: str
    name: str
    family: str
    options: tuple = ()  # (key, value) pairs: constructor kwargs, input size


@dataclass
class Example:
    model: nn.Module
    inputs: tuple  # positional forward arguments
    build: Callable[[], nn.Module]  # a fresh model of the same configuration
    head: list[str]  # module paths Torch-Pruning's README flow ignores
    notes: list[str] = field(default_factory=list)


def _fresh(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make().eval()

    return build


def _example(make: Callable[[], nn.Module], inputs: tuple, head: Callable[[nn.Module], list[str]],
             notes: list[str] = ()) -> Example:
    build = _fresh(make)
    model = build()
    return Example(model, inputs, build, head(model), list(notes))


def _image(size: int, channels: int = 3) -> torch.Tensor:
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(0))


def _paths_of(model: nn.Module, modules) -> list[str]:
    wanted = {id(m) for m in modules if m is not None}
    return [path for path, m in model.named_modules() if id(m) in wanted and path]


# -- timm -----------------------------------------------------------------------


def timm_families() -> list[str]:
    import timm

    return list(timm.list_modules())


def _meta_param_count(name: str) -> int:
    import timm

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def _output_ranks(value) -> list[int]:
    from support.rebuild_check import output_shapes

    return [len(s) for s in output_shapes(value)]


def _runs(model: nn.Module, size: int, channels: int) -> list[int] | None:
    """Output ranks of a forward pass at size×size, or None if it raises."""
    try:
        with torch.no_grad():
            return _output_ranks(model(_image(size, channels)))
    except Exception:
        return None


def _timm_builder(name: str, kwargs: dict) -> Callable[[], nn.Module]:
    import timm

    return lambda: timm.create_model(name, pretrained=False, **kwargs)


def _takes_img_size(model: nn.Module) -> bool:
    import inspect

    return "img_size" in inspect.signature(type(model).__init__).parameters


def _timm_smallest_input(name: str) -> dict:
    """Input size and constructor kwargs for ``name``: the smallest of SMALL_SIZES at
    which it runs with its default-size output rank (rebuilt with ``img_size=`` if the
    plain model refuses), else its default size. Raises if it runs at none."""
    model = _fresh(_timm_builder(name, {}))()
    channels, height, width = model.pretrained_cfg.get("input_size", (3, 224, 224))
    default = max(height, width)
    reference = _runs(model, default, channels) if height == width else None
    if reference is None and height == width:
        raise RuntimeError(f"does not run at its default input size {channels}×{height}×{width}")
    for size in (s for s in SMALL_SIZES if s < default and height == width):
        if _runs(model, size, channels) == reference:
            return {"size": size, "channels": channels, "kwargs": {}}
        if not _takes_img_size(model):
            continue
        try:
            resized = _fresh(_timm_builder(name, {"img_size": size}))()
        except Exception:
            continue
        if _runs(resized, size, channels) == reference:
            return {"size": size, "channels": channels, "kwargs": {"img_size": size}}
    if height != width:
        raise RuntimeError(f"non-square default input {channels}×{height}×{width}")
    return {"size": default, "channels": channels, "kwargs": {}}


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def pick_timm_family(family: str, candidates: int = 3) -> dict:
    """The smallest model of one timm family that builds and runs (tried in order of
    parameter count, at most ``candidates``), with its input size; or why none does."""
    import timm

    counts, uncounted = {}, {}
    for name in timm.list_models(module=family):
        try:
            counts[name] = _meta_param_count(name)
        except Exception as exc:
            uncounted[name] = _short_error(exc)
    pick = {"family": family, "registered": len(counts) + len(uncounted), "uncounted": uncounted, "skipped": {}}
    if not counts:
        pick["not_runnable"] = "no model of the family builds on the meta device: " + next(iter(uncounted.values()), "none registered")
        return pick
    for name in sorted(counts, key=lambda n: (counts[n], n))[:candidates]:
        try:
            pick.update(model=name, params=counts[name], **_timm_smallest_input(name))
            return pick
        except Exception as exc:
            pick["skipped"][name] = _short_error(exc)
    pick.pop("model", None)
    pick["not_runnable"] = f"its {candidates} smallest models do not build or run: " + "; ".join(
        f"{n}: {e}" for n, e in pick["skipped"].items())
    return pick


def load_timm_catalog(path: Path = TIMM_CATALOG) -> dict[str, dict]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    import timm

    return data["families"] if data.get("timm") == timm.__version__ else {}


def save_timm_catalog(picks: dict[str, dict], path: Path = TIMM_CATALOG) -> None:
    import timm

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timm": timm.__version__, "families": picks}, indent=1, sort_keys=True) + "\n")


def timm_entries(picks: dict[str, dict]) -> list[Entry]:
    out = []
    for family, pick in sorted(picks.items()):
        if pick.get("model"):
            options = (("size", pick["size"]), ("channels", pick["channels"]),
                       ("kwargs", tuple(sorted(pick["kwargs"].items()))))
            out.append(Entry("timm", pick["model"], family, options))
    return out


def _timm_head(model: nn.Module) -> list[str]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = head if isinstance(head, (tuple, list)) else [head]
    return _paths_of(model, heads)


def _load_timm(entry: Entry) -> Example:
    options = dict(entry.options)
    kwargs = dict(options["kwargs"])
    notes = [f"built with {kwargs}"] if kwargs else []
    return _example(_timm_builder(entry.name, kwargs), (_image(options["size"], options["channels"]),),
                    _timm_head, notes)


# -- ultralytics ----------------------------------------------------------------

YOLO_MODELS = ("yolov8n", "yolov8n-seg", "yolov8n-pose", "yolo11n", "yolo11n-seg", "yolo11n-pose")
YOLO_SIZE = 64  # stride 32: the smallest size with a 2×2 map on the coarsest level


def ultralytics_entries() -> list[Entry]:
    task = {"seg": "segmentation", "pose": "pose"}
    return [Entry("ultralytics", n, task.get(n.partition("-")[2], "detection")) for n in YOLO_MODELS]


def _load_ultralytics(entry: Entry) -> Example:
    from ultralytics.nn.tasks import DetectionModel, PoseModel, SegmentationModel

    cls = {"segmentation": SegmentationModel, "pose": PoseModel, "detection": DetectionModel}[entry.family]
    return _example(lambda: cls(f"{entry.name}.yaml", verbose=False), (_image(YOLO_SIZE),),
                    lambda m: _paths_of(m, [m.model[-1]]))


# -- segmentation_models_pytorch --------------------------------------------------

SMP_ARCHS = ("Unet", "FPN", "DeepLabV3Plus")
SMP_ENCODERS = ("resnet34", "efficientnet-b0", "mobilenet_v2")
SMP_SIZE = 64


def smp_entries() -> list[Entry]:
    return [Entry("smp", f"{arch}-{enc}", arch) for arch in SMP_ARCHS for enc in SMP_ENCODERS]


def _load_smp(entry: Entry) -> Example:
    import segmentation_models_pytorch as smp

    arch, encoder = entry.name.split("-", 1)
    make = lambda: getattr(smp, arch)(encoder_name=encoder, encoder_weights=None)  # noqa: E731
    return _example(make, (_image(SMP_SIZE),), lambda m: _paths_of(m, [m.segmentation_head]))


# -- diffusers ------------------------------------------------------------------


def diffusers_entries() -> list[Entry]:
    return [Entry("diffusers", "UNet2DModel", "unet"), Entry("diffusers", "UNet2DConditionModel", "unet")]


def _unet2d():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def _unet2d_condition():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )


def _load_diffusers(entry: Entry) -> Example:
    timestep = torch.tensor([10])
    if entry.name == "UNet2DModel":
        return _example(_unet2d, (_image(32), timestep), lambda m: ["conv_out"])
    context = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(1))
    return _example(_unet2d_condition, (_image(16, 4), timestep, context), lambda m: ["conv_out"])


# -- transformers ---------------------------------------------------------------

ATTENTION = "eager"  # explicit matmul + softmax: ops a tracer sees, rather than one fused call
VOCAB = 1000
TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def transformers_entries() -> list[Entry]:
    return [Entry("transformers", n, n) for n in ("bert", "gpt2", "vit", "llama", "whisper")]


def _bert():
    import transformers as T

    config = T.BertConfig(vocab_size=VOCAB, max_position_embeddings=64, attn_implementation=ATTENTION,
                          **SMALL, **TOKENS)
    return T.BertForSequenceClassification(config)


def _gpt2():
    import transformers as T

    config = T.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=64,
                          attn_implementation=ATTENTION, **TOKENS)
    return T.GPT2LMHeadModel(config)


def _vit():
    import transformers as T

    config = T.ViTConfig(image_size=32, patch_size=8, num_labels=10, attn_implementation=ATTENTION, **SMALL)
    return T.ViTForImageClassification(config)


def _llama():
    import transformers as T

    config = T.LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64,
                           attn_implementation=ATTENTION, **SMALL, **TOKENS)
    return T.LlamaForCausalLM(config)


def _whisper():
    import transformers as T

    config = T.WhisperConfig(
        vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=16,
        max_source_positions=16, max_target_positions=32, decoder_start_token_id=1,
        attn_implementation=ATTENTION, **TOKENS,
    )
    return T.WhisperForConditionalGeneration(config)


TRANSFORMERS = {"bert": (_bert, "classifier"), "gpt2": (_gpt2, "lm_head"), "vit": (_vit, "classifier"),
                "llama": (_llama, "lm_head"), "whisper": (_whisper, "proj_out")}


def _token_ids(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


def _load_transformers(entry: Entry) -> Example:
    make, head = TRANSFORMERS[entry.name]
    notes = [f"attn_implementation={ATTENTION!r}"]
    if entry.name == "vit":
        inputs = (_image(32),)
    elif entry.name == "whisper":
        # forward(input_features, attention_mask, decoder_input_ids, ...): positional, no wrapper
        features = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
        inputs = (features, None, _token_ids(4))
        notes.append("inputs (input_features, None, decoder_input_ids)")
    else:
        inputs = (_token_ids(8),)
    return _example(make, inputs, lambda m: [head], notes)


# -- the whole catalog ----------------------------------------------------------

LOADERS = {"timm": _load_timm, "ultralytics": _load_ultralytics, "smp": _load_smp,
           "diffusers": _load_diffusers, "transformers": _load_transformers}


def fixed_entries(zoos=ZOOS) -> list[Entry]:
    """Every entry whose choice needs no computation (all but timm)."""
    makers = {"ultralytics": ultralytics_entries, "smp": smp_entries, "diffusers": diffusers_entries,
              "transformers": transformers_entries}
    return [e for zoo in zoos if zoo in makers for e in makers[zoo]()]


def load(entry: Entry) -> Example:
    """Build ``entry`` with random weights (seeded), in eval mode, with its example inputs."""
    return LOADERS[entry.zoo](entry)


def entry_record(entry: Entry) -> dict:
    record = asdict(entry)
    record["options"] = {k: dict(v) if k == "kwargs" else v for k, v in entry.options}
    return record
