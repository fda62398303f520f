"""``reconstruct``: sparse model → design spec + compact dense model; ``apply_spec``."""
from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..channels.graph import ChannelGraph, build_channel_graph
from ..design.density import layer_density
from ..kinds.prunable import is_prunable
from ..errors import SdesignError, SpecMismatchError
from ..channels.groups import Layout
from .module_copy import copy_module
from ..kinds.base import own_copy
from ..kinds.registry import layer_kind
from .resize import resize_module, resize_tensor
from ..design.spec import DesignSpec, architecture_fingerprint, tensor_shape
from ..tracing.shapes import cheap_to_run, eval_mode, on_meta, sized_layers, to_meta
from ..tracing.run import user_line
from ..tracing.trace import trace
from ..design.widths import GroupDecision, layout_width, resolve_widths

MAX_REPAIRS = 8


def _check_densities(model: nn.Module, densities: Mapping[str, float], names: dict[str, nn.Module]) -> None:
    for path, d in densities.items():
        if path not in names:
            raise SdesignError(
                f"densities names module '{path}', which {type(model).__name__} does not have. "
                "Use paths as in model.named_modules() (e.g. 'features.0')."
            )
        if not (0 < float(d) <= 1):
            raise SdesignError(f"density of '{path}' is {d}; densities must lie in (0, 1].")


def _module_attr_value(module: nn.Module, attr: str) -> int:
    v = getattr(module, attr)
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _channel_l1(t: torch.Tensor, dim: int) -> torch.Tensor:
    """l1 norm of every slice of ``t`` along ``dim``, in float32."""
    others = [d for d in range(t.dim()) if d != dim]
    if dim == 0:  # contiguous slices: the fused norm kernel is fastest
        return torch.linalg.vector_norm(t, ord=1, dim=others, dtype=torch.float32)
    return t.abs().sum(dim=others, dtype=torch.float32)  # strided: the fused kernel is slow here


def _importance(graph: ChannelGraph, model: nn.Module, decisions) -> dict[int, torch.Tensor]:
    """l1 norm of the sparse weights per channel of each shrinking group, summed over
    the layers whose slice is the whole group."""
    table = graph.table
    scores: dict[int, torch.Tensor] = {}
    for rec in graph.modules.values():
        module = model.get_submodule(rec.path)
        kind = layer_kind(module, call=False)
        dims = kind.tensor_dims() if kind is not None else {}
        for attr, layout in rec.attrs.items():
            if len(layout) != 1:
                continue
            root, r = table.find(layout[0].group)
            if r * layout[0].scale != 1 or decisions[root].width >= decisions[root].original:
                continue
            for name, spec in dims.items():
                t = getattr(module, name, None)
                if not isinstance(t, nn.Parameter) or t.dim() < 2:
                    continue
                for dim, (a, per_group) in spec.items():
                    if a == attr and not (per_group and getattr(module, "groups", 1) > 1):
                        s = _channel_l1(t.detach(), dim)
                        scores[root] = scores.get(root, 0) + s.cpu()
    return scores


def _indices_for(graph: ChannelGraph, layout: Layout, decisions, keep: dict[int, torch.Tensor]) -> torch.Tensor | None:
    table = graph.table
    parts, offset = [], 0
    for seg in layout:
        root, r = table.find(seg.group)
        new = int(decisions[root].width * r * seg.scale)
        if r * seg.scale == 1 and root in keep:
            parts.append(keep[root] + offset)
        else:
            parts.append(torch.arange(new) + offset)
        offset += int(table.width0(seg))
    return torch.cat(parts) if parts else None


def _make_spec(model, graph: ChannelGraph, decisions, strategy, densities, settings) -> DesignSpec:
    spec = DesignSpec(
        strategy=strategy,
        densities={k: round(float(v), 6) for k, v in densities.items()},
        fingerprint=architecture_fingerprint(model, graph.traced.modules or None),
        source=type(model).__name__,
        notes=list(graph.notes),
        settings=dict(settings),
    )
    modules = graph.traced.modules or dict(model.named_modules())
    for path, rec in graph.modules.items():
        module = modules[path]
        original = {a: _module_attr_value(module, a) for a in rec.attrs}
        widths = {a: layout_width(graph, layout, decisions) for a, layout in rec.attrs.items()}
        spec.modules[path] = {"class": rec.cls, "original": original, "widths": widths}
    for path, prec in graph.params.items():
        shape = list(prec.shape)
        new = list(shape)
        for d, layout in prec.dims.items():
            new[d] = layout_width(graph, layout, decisions)
        if new != shape:
            spec.params[path] = {"original": shape, "widths": new}
    for key, layout in graph.attributes.items():
        path, _, attr = key.rpartition(".")
        original = getattr(modules[path], attr)
        new = layout_width(graph, layout, decisions)
        if isinstance(original, (tuple, list)):
            original, new = [int(v) for v in original], [new]
        if new != original:
            spec.attributes[key] = {"original": original, "widths": new}
    for dec in decisions.values():
        if dec.proposals or dec.pinned:
            spec.groups.append(
                {
                    "label": dec.label,
                    "original": dec.original,
                    "width": dec.width,
                    "step": dec.step,
                    "proposals": len(dec.proposals),
                    "pinned": dec.pinned[:3],
                }
            )
    return spec


def _check_against(model: nn.Module, spec: DesignSpec) -> None:
    names = dict(model.named_modules())
    for path, entry in spec.modules.items():
        module = names.get(path)
        if module is None:
            raise SpecMismatchError(
                f"The design spec does not fit this model: it names module '{path}', which "
                f"{type(model).__name__} does not have (the spec was made from a "
                f"{spec.source or 'different'} model). Apply the spec to the model its "
                "build_model() makes, or reconstruct a new spec for this model."
            )
        if type(module).__name__ != entry["class"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: module '{path}' is a "
                f"{type(module).__name__} here but a {entry['class']} in the spec. "
                "Apply the spec to the model it was made from, or reconstruct a new spec."
            )
        for attr, value in entry["original"].items():
            have = _module_attr_value(module, attr) if hasattr(module, attr) else None
            if have != value:
                raise SpecMismatchError(
                    f"The design spec does not fit this model: module '{path}' has {attr}={have} "
                    f"but the spec was made from one with {attr}={value}. Apply the spec to the "
                    "uncompressed model its build_model() makes, or reconstruct a new spec."
                )
    for key, entry in spec.attributes.items():
        path, _, attr = key.rpartition(".")
        owner = names.get(path)
        have = getattr(owner, attr, None)
        if (list(have) if isinstance(have, (tuple, list)) else have) != entry["original"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: attribute '{key}' is "
                f"{getattr(owner, attr, 'missing')} here, the spec expects {entry['original']}."
            )
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    for path, entry in spec.params.items():
        t = params.get(path)
        if t is None or tensor_shape(t) != entry["original"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: tensor '{path}' is "
                f"{'missing' if t is None else tensor_shape(t)} here, the spec expects {entry['original']}."
            )


def _build(model: nn.Module, spec: DesignSpec, indices=None, fresh: bool = True,
           modules: Mapping[str, nn.Module] | None = None) -> nn.Module:
    """The compact model ``spec`` describes. ``modules``: ``dict(model.named_modules())``
    where the caller has it already."""
    modules = dict(model.named_modules()) if modules is None else modules
    # the resized layers and tensors go straight into the copy (deepcopy's memo), so
    # the layers being replaced are never copied
    memo: dict[int, object] = {}
    resized: dict[str, nn.Module] = {}
    for path, entry in spec.modules.items():
        if entry["widths"] != entry["original"]:
            module = _submodule(model, modules, path)
            memo[id(module)] = resized[path] = resize_module(module, entry["widths"], (indices or {}).get(path), fresh)
    for path, entry in spec.params.items():
        parent_path, _, name = path.rpartition(".")
        parent = _submodule(model, modules, parent_path)
        old = getattr(parent, name)
        source = old.detach()
        new = own_copy(resize_tensor(source, entry["widths"]), source)
        new = nn.Parameter(new, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else new
        owner = resized.get(parent_path)
        if owner is None:
            memo[id(old)] = new
        elif not _resized_by_kind(parent, name):
            # a tensor its layer kind does not know (a weight-standardised conv's gain):
            # the resized copy holds a clone of the old one, replace it
            (owner._parameters if name in owner._parameters else owner._buffers)[name] = new
    compact = copy_module(model, memo)
    _tie_again(model, compact)
    for key, entry in spec.attributes.items():
        path, _, attr = key.rpartition(".")
        owner = compact.get_submodule(path)
        new = entry["widths"]
        setattr(owner, attr, tuple(new) if isinstance(getattr(owner, attr), tuple) else new)
    return compact


def _resized_by_kind(module: nn.Module, name: str) -> bool:
    kind = layer_kind(module, call=False)
    return kind is not None and name in kind.tensor_dims()


def _tie_again(model: nn.Module, compact: nn.Module) -> None:
    """Parameters that several modules of ``model`` share (tied input and output
    embeddings) are resized with each module; share them again in ``compact``."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    for tied in names.values():
        if len(tied) < 2:
            continue
        owners = [compact.get_submodule(n.rpartition(".")[0]) for n in tied]
        leaves = [n.rpartition(".")[2] for n in tied]
        first = owners[0]._parameters[leaves[0]]
        for owner, leaf in zip(owners[1:], leaves[1:]):
            if owner._parameters[leaf] is not first and owner._parameters[leaf].shape == first.shape:
                owner._parameters[leaf] = first


def _submodule(model: nn.Module, modules: Mapping[str, nn.Module], path: str) -> nn.Module:
    module = modules.get(path)
    return model.get_submodule(path) if module is None else module


def apply_spec(model: nn.Module, spec: DesignSpec | str) -> nn.Module:
    """The compact model a spec describes, built from a fresh ``model`` (which is
    left untouched). Raises :class:`SpecMismatchError` naming the first module
    that does not fit."""
    if not isinstance(spec, DesignSpec):
        spec = DesignSpec.load(spec)
    _check_against(model, spec)
    return _build(model, spec, fresh=True)


# -- verification and repair ------------------------------------------------


def _shapes(value) -> list:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in _shapes(v)]
    if isinstance(value, dict):
        return [s for k in sorted(value, key=str) for s in _shapes(value[k])]
    return []


class _CallStack:
    """Forward hooks that remember which module was running when forward raised."""

    def __init__(self, model: nn.Module):
        self.stack: list[str] = []
        self.handles = []
        for name, m in model.named_modules():
            self.handles.append(m.register_forward_pre_hook(lambda mod, args, n=name: self._enter(n)))
            self.handles.append(m.register_forward_hook(lambda mod, args, out: self._leave()))

    def _enter(self, name: str) -> None:
        self.stack.append(name)

    def _leave(self) -> None:
        self.stack.pop()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _run(model: nn.Module, inputs: tuple) -> tuple[list | None, str | None, Exception | None]:
    """Output shapes of one run of ``model``, or the module that raised and the error."""
    try:
        return _shapes(_forward(model, inputs)), None, None
    except Exception as first:
        # run again with hooks that see which module raises: only a failing run pays for them
        hooks = _CallStack(model)
        try:
            _forward(model, inputs)
        except Exception as exc:
            return None, next((n for n in reversed(hooks.stack) if n), ""), exc
        finally:
            hooks.close()
        return None, "", first


def _forward(model: nn.Module, inputs: tuple):
    with torch.no_grad(), eval_mode(model), sized_layers(model):
        return model(*inputs)


def _to_device_of(model: nn.Module, value):
    p = next(model.parameters(), None)
    if p is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(p.device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device_of(model, v) for v in value)
    return value


def _as_inputs(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    return tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)


def _densities(model: nn.Module, densities: Mapping[str, float] | None,
               modules: dict[str, nn.Module]) -> dict[str, float]:
    """Densities of the prunable layers: as given, else measured from the weights."""
    given = {}
    if densities:
        _check_densities(model, densities, modules)
        given = {k: float(v) for k, v in densities.items()}
    measured = {}
    for name, module in modules.items():
        if name not in given and is_prunable(module):
            measured[name] = layer_density(module.weight)
    measured.update(given)
    return measured


def design_spec(
    model: nn.Module,
    example_inputs,
    strategy: str = "min",
    densities: Mapping[str, float] | None = None,
    pinned: Iterable[str] = (),
    leaf_modules: Iterable[type[nn.Module]] = (),
    overrides: Mapping[str, str] | None = None,
) -> DesignSpec:
    """The design spec alone: trace, channel groups and √d widths, no model built.

    Same arguments as :func:`reconstruct`. Cheaper, but unverified: ``reconstruct``
    also builds the compact model, checks that it runs and pins what does not.
    ``apply_spec(model, spec)`` builds the model from it later.
    """
    modules = dict(model.named_modules())
    measured = _densities(model, densities, modules)
    traced = trace(model, _as_inputs(example_inputs), leaf_modules, modules)
    graph = build_channel_graph(traced, list(pinned))
    decisions = resolve_widths(graph, measured, strategy, overrides)
    settings = {"inherit": False, "tracer": traced.method, "pinned": list(pinned)}
    return _make_spec(model, graph, decisions, strategy, measured, settings)


def reconstruct(
    model: nn.Module,
    example_inputs,
    strategy: str = "min",
    densities: Mapping[str, float] | None = None,
    inherit: bool = False,
    pinned: Iterable[str] = (),
    leaf_modules: Iterable[type[nn.Module]] = (),
    overrides: Mapping[str, str] | None = None,
    verify: bool = True,
) -> tuple[nn.Module, DesignSpec]:
    """Rebuild ``model`` as a compact dense model whose widths follow its density.

    Densities are measured from the model's (sparse) weights; ``densities`` maps
    module paths to a density in (0, 1] and overrides them. ``strategy`` (``min``,
    ``max``, ``mean``) picks one width where coupled layers disagree; ``overrides``
    maps group labels to another strategy. With ``inherit=True`` the compact model
    keeps the strongest channels (l1 norm) of the sparse weights; by default the
    resized layers are freshly initialised, as in the paper. ``pinned`` lists module
    paths whose channels must not change.

    Returns ``(compact_model, spec)``; ``model`` itself is not modified.
    """
    inputs = _as_inputs(example_inputs)
    modules = dict(model.named_modules())
    measured = _densities(model, densities, modules)
    traced = trace(model, inputs, leaf_modules, modules)
    expected = _shapes(next(n for n in reversed(traced.graph.nodes) if n.op == "output").meta.get("value"))
    extra_pins: list[str] = []
    for attempt in range(MAX_REPAIRS + 1):
        graph = build_channel_graph(traced, list(pinned) + extra_pins)
        decisions = resolve_widths(graph, measured, strategy, overrides)
        settings = {"inherit": inherit, "tracer": traced.method, "pinned": list(pinned) + extra_pins}
        spec = _make_spec(model, graph, decisions, strategy, measured, settings)
        indices = None
        if inherit:
            indices = _inherit_indices(graph, model, decisions)
        if not verify:
            return _build(model, spec, indices, not inherit, modules), spec
        compact = _build(model, spec, indices, not inherit, modules)
        if attempt == 0:
            run_inputs = _to_device_of(model, inputs)
            meta_inputs = to_meta(inputs)
            small = cheap_to_run(model, inputs)
        # small inputs: one real forward pass is cheapest; else shapes on the meta
        # device first, and for real only if that fails
        got = None
        if not small:
            with on_meta(compact):
                got, where, exc = _run(compact, meta_inputs)
        if got is None or got != expected:
            got, where, exc = _run(compact, run_inputs)
        if got is not None and got == expected:
            if extra_pins:
                spec.notes.append(
                    "the first rebuild did not run; pinned "
                    + ", ".join(f"'{p}'" for p in extra_pins)
                    + " so that the compact model runs (its forward code likely has constant channel sizes)"
                )
            return compact, spec
        target = where if got is None else ""
        if target in extra_pins or attempt == MAX_REPAIRS:
            break
        extra_pins.append(target or _widest_changed(spec, extra_pins))
    raise _does_not_run(model, where, exc, got, expected, extra_pins)


def _does_not_run(model, where, exc, got, expected, tried: list[str]) -> SdesignError:
    if exc is not None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        problem = f"raised {type(exc).__name__}: {first}"
        line = user_line(traceback.extract_tb(exc.__traceback__))
    else:
        problem, line = f"returned shapes {got}, expected {expected}", None
    module = ""
    if where:
        try:
            module = f" in module '{where}' ({type(model.get_submodule(where)).__name__})"
        except AttributeError:
            module = f" in module '{where}'"
    at = f" at {line}" if line else ""
    pinned = f" Pinning {', '.join(repr(p) for p in tried)} did not help." if tried else ""
    return SdesignError(
        f"The compact {type(model).__name__} does not run: it {problem}{module}{at}.{pinned} Its forward "
        "code probably uses a channel count the channel rules cannot see (a constant, or a size read from "
        "another tensor). Pin that module (pinned=[...] / PINNED in the model file), or register a layer "
        "kind for it (sparsenet_design.kinds)."
    )


def _widest_changed(spec: DesignSpec, taken: list[str]) -> str:
    for path in spec.changed_modules():
        top = path.split(".")[0]
        if top not in taken:
            return top
    return ""


def _inherit_indices(graph: ChannelGraph, model: nn.Module, decisions: dict[int, GroupDecision]):
    scores = _importance(graph, model, decisions)
    keep = {
        root: torch.sort(torch.topk(s, decisions[root].width).indices).values
        for root, s in scores.items()
        if decisions[root].step == 1
    }
    out = {}
    for path, rec in graph.modules.items():
        out[path] = {attr: _indices_for(graph, layout, decisions, keep) for attr, layout in rec.attrs.items()}
    return out
