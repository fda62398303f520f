"""``sdesign adacof …``: frame-interpolation commands.

    sdesign adacof evaluate --model cdfi --weights W.safetensors --dataset middlebury DATA/middlebury_others
    sdesign adacof score PRED_DIR --dataset middlebury DATA/middlebury_others
    sdesign adacof interpolate A.png B.png -o MID.png --model cdfi --weights W.safetensors
    sdesign adacof video IN.mp4 --factor 4 -o OUT.mp4 --model cdfi --weights W.safetensors
    sdesign adacof synth OUT_DIR --count 100 --size 128x128
    sdesign adacof convert CDFI_adacof.pth --arch cdfi -o cdfi.safetensors

Scores follow the published protocol (see ``metrics.py``); tables look like the
paper's Table 3 and every command that scores writes a per-image CSV.
"""
from __future__ import annotations

import csv
import functools
import time
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsenet_design.plugin_api import SdesignError

from .data import DATASET_KINDS, find_triplets
from .imageio_utils import FrameSink, open_frames, read_image, write_image
from .interpolate import FACTORS, Interpolator, count_parameters, load_model
from .metrics import METRICS, load_lpips, mean_scores, score_triplets
from .models.mode import MODES

out = Console(width=None if Console().is_terminal else 160)  # wide tables in logs and CliRunner
err = Console(stderr=True)
DATASET_TITLES = {"vimeo": "Vimeo-90K", "middlebury": "Middlebury", "ucf101": "UCF101-DVF", "davis": "DAVIS",
                  "folder": "Folder"}


def _friendly(fn):
    """Turn the toolkit's own errors (and bad files) into one-paragraph CLI errors."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SdesignError as exc:
            raise click.ClickException(str(exc)) from None
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    return wrapper


@click.group(name="adacof")
def adacof() -> None:
    """AdaCoF / CDFI frame interpolation: evaluate, score, interpolate, video, convert."""


# ------------------------------------------------------------------ options
def model_options(f):
    for decorator in reversed([
        click.option("--model", "model_name", default=None,
                     help="average (frame mean), adacof, adacof+, compressed, compressed+, cdfi, or a model file "
                          "(*.py, or a name such as adacof:paper-cdfi) with build_model(). Default: the architecture recorded in --weights (by "
                          "`sdesign adacof convert`), else cdfi."),
        click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Model weights (.safetensors; `sdesign adacof convert` makes them from published .pth)."),
        click.option("--mode", "mode", type=click.Choice(["auto", *MODES]), default="auto", show_default=True,
                     help="Warp sampling/backward and CDFI pyramid geometry: auto = as recorded in --weights "
                          "(published for converted checkpoints), else exact."),
        click.option("--spec", "specs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Design spec(s) of a compact model, applied in order before loading --weights."),
        click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)."),
        click.option("--amp", is_flag=True, help="Run the model under autocast (fp16 on CUDA, bf16 on CPU)."),
        click.option("--set", "settings", multiple=True, metavar="NAME=VALUE", expose_value=False,
                     callback=_remember_settings,
                     help="With a model file as --model: set one of its SETTINGS (repeatable; "
                          "`sdesign info MODEL` lists them)."),
    ]):
        f = decorator(f)
    return f


def _remember_settings(ctx: click.Context, param, values) -> None:
    """``--set`` values for the model file the command loads (kept on the context)."""
    from sparsenet_design.plugin_api import parse_assignments

    ctx.meta["model_settings"] = parse_assignments(values)


def _model_label(model_name, weights) -> str:
    if model_name is None:
        from .checkpoints import ARCH_KEY, weights_metadata

        return (weights_metadata(weights).get(ARCH_KEY) if weights is not None else None) or "cdfi"
    return Path(model_name).stem if str(model_name).endswith(".py") else str(model_name)


def _interpolator(model_name, weights, specs, device, amp, mode="auto") -> tuple[Interpolator, int]:
    settings = click.get_current_context().meta.get("model_settings")
    net = load_model(model_name, weights, specs, mode, settings)
    if weights is None and model_name != "average":
        err.print(f"[yellow]warning: no --weights given; {_model_label(model_name, weights)} runs with its "
                  "initial (untrained) weights")
    try:
        return Interpolator(net, device, amp), count_parameters(net)
    except RuntimeError as exc:
        raise SdesignError(f"cannot use device {device!r}: {exc}") from exc


def _datasets_option(f):
    return click.option(
        "--dataset", "datasets", type=(click.Choice(DATASET_KINDS, case_sensitive=False),
                                       click.Path(exists=True, file_okay=False, path_type=Path)),
        multiple=True, required=True,
        help=f"KIND PATH; KIND is one of {', '.join(DATASET_KINDS)}. Repeat for several datasets.")(f)


def _lpips_option(f):
    return click.option("--lpips-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="SqueezeNet 1.1 ImageNet weights for LPIPS (or SDESIGN_LPIPS_WEIGHTS; default: "
                             "the torch hub cache, downloaded there as torchvision does when online).")(f)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err, transient=True)


# ------------------------------------------------------------------- tables
_DIGITS = {"psnr": 2, "ssim": 3, "ssim_gaussian": 3, "lpips": 3, "lpips_published": 3}


def results_table(title: str, results: dict[str, dict[str, float]], params: int | None,
                  lpips_reason: str = "") -> Table:
    """The paper's Table 3 layout: per dataset PSNR / SSIM / LPIPS, then
    parameters; plus the Gaussian-window SSIM (RIFE, IFRNet, EMA-VFI) and the
    LPIPS of the published test (the paper's LPIPS column)."""
    table = Table(title=title)
    table.add_column("")
    for name in results:
        for heading in METRICS.values():
            table.add_column(f"{name}\n{heading}", justify="right")
    table.add_column("Parameters\n(million)", justify="right")
    cells = []
    for scores in results.values():
        cells += [f"{scores[k]:.{_DIGITS[k]}f}" if k in scores else "n/a" for k in METRICS]
    table.add_row(title, *cells, f"{params / 1e6:.2f}" if params is not None else "–")
    captions = ["SSIM: skimage, 7×7 uniform window (published); SSIM (Gaussian): 11×11×3 Gaussian (RIFE); "
                "LPIPS: inputs scaled to [−1, 1]; LPIPS as published: [0, 1] inputs (the paper's column)"]
    if lpips_reason:
        captions.append(f"LPIPS n/a: {lpips_reason}")
    table.caption = "\n".join(captions)
    return table


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "dataset", "name", *METRICS]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def _score_all(label, datasets, predict, lpips_weights, split="test"):
    lpips_status = load_lpips(lpips_weights)
    results, all_rows = {}, []
    with _progress() as bar:
        for kind, root in datasets:
            triplets = find_triplets(kind, root, split)
            title = DATASET_TITLES[kind.lower()]
            if title in results:
                title = f"{title} ({root.name})"
            task = bar.add_task(title, total=len(triplets), info="")

            def on_item(i, row, task=task):
                bar.update(task, advance=1, info=f"{row['name']}: {row['psnr']:.2f} dB")

            rows = score_triplets(triplets, predict, lpips_status, on_item)
            results[title] = mean_scores(rows)
            all_rows += [{"model": label, "dataset": title, **r} for r in rows]
    return results, all_rows, lpips_status


# ----------------------------------------------------------------- commands
@adacof.command()
@model_options
@_datasets_option
@_lpips_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("evaluate.csv"), show_default=True, help="Per-image scores.")
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also save every interpolated frame as SAVE_DIR/<dataset>/<triplet>.png.")
@_friendly
def evaluate(model_name, weights, specs, device, amp, mode, datasets, lpips_weights, csv_path, save_dir):
    """Interpolate every triplet of the datasets and score PSNR / SSIM / LPIPS
    (the published protocol); prints a table like the paper's Table 3."""
    interp, params = _interpolator(model_name, weights, specs, device, amp, mode)

    def predict(triplet, frame0, frame1):
        mid = interp(frame0, frame1)
        if save_dir is not None:
            write_image(save_dir / f"{triplet.name}.png", mid)
        return mid

    label = _model_label(model_name, weights)
    results, rows, lpips_status = _score_all(label, datasets, predict, lpips_weights)
    out.print(results_table(label, results, params, lpips_status.reason))
    out.print(f"per-image scores → {write_csv(csv_path, rows)}")


@adacof.command()
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_datasets_option
@_lpips_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Per-image scores (default: PRED_DIR/scores.csv).")
@click.option("--label", default=None, help="Method name for the table (default: PRED_DIR's name).")
@_friendly
def score(pred_dir, datasets, lpips_weights, csv_path, label):
    """Score interpolated frames made by any method: PRED_DIR/<triplet>.png
    (e.g. PRED_DIR/Beanbags.png) against the dataset's ground truth."""
    if len(datasets) != 1:
        raise SdesignError("score takes one --dataset KIND PATH (the one the frames in PRED_DIR belong to)")
    kind, root = datasets[0]
    triplets = find_triplets(kind, root, "test")
    missing = [t.name for t in triplets if not (pred_dir / f"{t.name}.png").is_file()]
    if missing:
        raise SdesignError(f"{len(missing)} of {len(triplets)} predictions are missing in {pred_dir}, e.g. "
                           f"{', '.join(m + '.png' for m in missing[:5])}. Expected one PNG per triplet, "
                           "named after the triplet's folder.")

    def predict(triplet, frame0, frame1):
        return read_image(pred_dir / f"{triplet.name}.png", torch.float64)

    label = label or pred_dir.name
    results, rows, lpips_status = _score_all(label, datasets, predict, lpips_weights)
    out.print(results_table(label, results, None, lpips_status.reason))
    out.print(f"per-image scores → {write_csv(csv_path or pred_dir / 'scores.csv', rows)}")


@adacof.command()
@click.argument("frame0", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("frame1", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the middle frame (PNG).")
@model_options
@_friendly
def interpolate(frame0, frame1, out_path, model_name, weights, specs, device, amp, mode):
    """Write the frame halfway between FRAME0 and FRAME1."""
    a, b = read_image(frame0), read_image(frame1)
    if a.shape != b.shape:
        raise SdesignError(f"{frame0.name} is {a.shape[2]}×{a.shape[1]} but {frame1.name} is "
                           f"{b.shape[2]}×{b.shape[1]} (W×H); the two frames must have the same size")
    interp, _ = _interpolator(model_name, weights, specs, device, amp, mode)
    start = time.perf_counter()
    mid = interp(a, b)
    write_image(out_path, mid)
    out.print(f"{out_path} ({a.shape[2]}×{a.shape[1]}) in {time.perf_counter() - start:.2f} s")


@adacof.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--factor", type=click.Choice([str(f) for f in FACTORS]), default="2", show_default=True,
              help="Frame-rate multiplier.")
@click.option("-o", "--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="A video file (.mp4, .avi, .mkv, .gif …) or a folder for PNG frames.")
@click.option("--fps", type=float, default=None, help="Input frame rate (default: the video's, or 25 for a folder).")
@model_options
@_friendly
def video(source, factor, out_path, fps, model_name, weights, specs, device, amp, mode):
    """Raise the frame rate of SOURCE (a video file or a folder of frames) by FACTOR."""
    from .interpolate import interpolate_sequence

    factor = int(factor)
    frames = open_frames(source, fps)
    interp, _ = _interpolator(model_name, weights, specs, device, amp, mode)
    total = (frames.count - 1) * factor + 1 if frames.count else None
    written, start = 0, time.perf_counter()
    with FrameSink(out_path, frames.fps * factor) as sink, _progress() as bar:
        task = bar.add_task(f"×{factor}", total=total, info="")
        for frame in interpolate_sequence(interp, frames, factor):
            sink.write(frame)
            written += 1
            rate = written / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, info=f"{rate:.2f} frames/s")
    elapsed = time.perf_counter() - start
    out.print(f"{written} frames → {out_path} at {frames.fps * factor:g} fps; "
              f"{written / elapsed:.2f} frames/s ({elapsed:.1f} s)")


@adacof.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(1), default=16, show_default=True, help="Number of triplets.")
@click.option("--size", default="64x64", show_default=True, help="HxW of the frames.")
@click.option("--max-motion", type=click.IntRange(0), default=8, show_default=True,
              help="Largest camera pan in pixels between the outer frames (patches move up to twice that).")
@click.option("--seed", type=int, default=0, show_default=True)
@_friendly
def synth(out_dir, count, size, max_motion, seed):
    """Write synthetic triplets with an exact middle frame (UCF101 layout: <i>/frame_00.png, frame_01_gt.png,
    frame_02.png), made from photos that ship with scikit-image."""
    from .synthetic import write_triplet_folder

    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise SdesignError(f"--size must look like 64x96 (H x W), not {size!r}") from None
    write_triplet_folder(out_dir, count, (h, w), max_motion, seed)
    out.print(f"{count} triplets of {h}×{w} → {out_dir}")


@adacof.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arch", required=True, type=click.Choice(["adacof", "adacof+", "compressed", "compressed+", "cdfi"]),
              help="The published architecture: adacof (F=5, d=1) and adacof+ (F=11, d=2) from AdaCoF-pytorch; "
                   "compressed, compressed+ and cdfi (F=11, d=2) from CDFI.")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The weights file to write (.safetensors).")
@click.option("--mode", "mode", type=click.Choice(list(MODES)), default="published", show_default=True,
              help="The mode recorded with the weights: published reproduces the published forward "
                   "(truncating warp, published CDFI pyramid geometry); published-training also its backward; "
                   "exact runs the weights through true bilinear sampling.")
@_friendly
def convert(checkpoint, arch, out_path, mode):
    """Convert a published AdaCoF / CDFI checkpoint (the original .pth, read with
    torch.load(weights_only=True)) to this plugin's weights. The architecture and
    mode go into the file, so evaluate / interpolate / video with --weights OUT
    run it as the published model without further flags."""
    from .checkpoints import ARCHS, convert_checkpoint

    if out_path.suffix != ".safetensors":
        raise SdesignError(f"-o {out_path}: converted weights are written as safetensors; name the file *.safetensors")
    written = convert_checkpoint(checkpoint, arch, out_path, mode)
    from .interpolate import load_model

    params = count_parameters(load_model(None, written))
    out.print(f"{checkpoint.name} → {written}: {ARCHS[arch].title}, {params / 1e6:.2f}M parameters, mode {mode}")
