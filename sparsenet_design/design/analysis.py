"""Analysis: densities, the channel graph and √d widths of a model, and the
design spec that records them (no model built)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from ..channels.graph import ChannelGraph, build_channel_graph
from ..errors import SdesignError
from ..kinds.prunable import is_prunable
from ..tracing.trace import TracedModel, trace
from .density import layer_density
from .spec import DesignSpec, architecture_fingerprint
from .widths import GroupDecision, layout_width, resolve_widths


def as_inputs(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    return tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)


def check_densities(model: nn.Module, densities: Mapping[str, float], names: dict[str, nn.Module]) -> None:
    for path, d in densities.items():
        if path not in names:
            raise SdesignError(
                f"densities names module '{path}', which {type(model).__name__} does not have. "
                "Use paths as in model.named_modules() (e.g. 'features.0')."
            )
        if not (0 < float(d) <= 1):
            raise SdesignError(f"density of '{path}' is {d}; densities must lie in (0, 1].")


def layer_densities(model: nn.Module, densities: Mapping[str, float] | None,
               modules: dict[str, nn.Module]) -> dict[str, float]:
    """Densities of the prunable layers: as given, else measured from the weights."""
    given = {}
    if densities:
        check_densities(model, densities, modules)
        given = {k: float(v) for k, v in densities.items()}
    measured = {}
    for name, module in modules.items():
        if name not in given and is_prunable(module):
            measured[name] = layer_density(module.weight)
    measured.update(given)
    return measured


def module_attr_value(module: nn.Module, attr: str) -> int:
    v = getattr(module, attr)
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def make_spec(model, graph: ChannelGraph, decisions, strategy, densities, settings) -> DesignSpec:
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
        original = {a: module_attr_value(module, a) for a in rec.attrs}
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


@dataclass
class Analysis:
    """What every design starts from: the model's modules, the density of each
    prunable layer (given, else measured), and its traced graph."""

    model: nn.Module
    modules: dict[str, nn.Module]
    densities: dict[str, float]
    traced: TracedModel


def analyse(model: nn.Module, example_inputs, densities: Mapping[str, float] | None = None,
            leaf_modules: Iterable[type[nn.Module]] = ()) -> Analysis:
    modules = dict(model.named_modules())
    measured = layer_densities(model, densities, modules)
    return Analysis(model, modules, measured, trace(model, as_inputs(example_inputs), leaf_modules, modules))


@dataclass
class Design:
    graph: ChannelGraph
    decisions: dict[int, GroupDecision]
    spec: DesignSpec


def decide(analysis: Analysis, strategy: str, pinned: Iterable[str] = (), overrides: Mapping[str, str] | None = None,
           inherit: bool = False) -> Design:
    """Channel groups, one √d width per group, and the spec recording them."""
    pinned = list(pinned)
    graph = build_channel_graph(analysis.traced, pinned)
    decisions = resolve_widths(graph, analysis.densities, strategy, overrides)
    settings = {"inherit": inherit, "tracer": analysis.traced.method, "pinned": pinned}
    return Design(graph, decisions, make_spec(analysis.model, graph, decisions, strategy, analysis.densities, settings))


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

    Same arguments as :func:`~sparsenet_design.rebuild.reconstruct.reconstruct`.
    Cheaper, but unverified: ``reconstruct`` also builds the compact model, checks
    that it runs and pins what does not. ``apply_spec(model, spec)`` builds the
    model from it later.
    """
    return decide(analyse(model, example_inputs, densities, leaf_modules), strategy, pinned, overrides).spec
