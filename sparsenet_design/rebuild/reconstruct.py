"""``reconstruct``: a sparse model → design spec + compact dense model, checked
to run, with modules pinned and rebuilt where the first rebuild does not run."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import nn

from ..design.analysis import analyse, as_inputs, decide
from ..design.spec import DesignSpec
from ..tracing.shapes import cheap_to_run, on_meta, to_meta
from .build import build
from .inherit import inherit_indices
from .verify import does_not_run, output_shapes, run_once, to_device_of, widest_changed


MAX_REPAIRS = 8


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
    inputs = as_inputs(example_inputs)
    analysis = analyse(model, inputs, densities, leaf_modules)
    expected = output_shapes(next(n for n in reversed(analysis.traced.graph.nodes) if n.op == "output").meta.get("value"))
    extra_pins: list[str] = []
    for attempt in range(MAX_REPAIRS + 1):
        design = decide(analysis, strategy, list(pinned) + extra_pins, overrides, inherit)
        spec = design.spec
        indices = inherit_indices(design.graph, model, design.decisions) if inherit else None
        compact = build(model, spec, indices, not inherit, analysis.modules)
        if not verify:
            return compact, spec
        if attempt == 0:
            run_inputs = to_device_of(model, inputs)
            meta_inputs = to_meta(inputs)
            small = cheap_to_run(model, inputs)
        # small inputs: one real forward pass is cheapest; else shapes on the meta
        # device first, and for real only if that fails
        got = None
        if not small:
            with on_meta(compact):
                got, where, exc = run_once(compact, meta_inputs)
        if got is None or got != expected:
            got, where, exc = run_once(compact, run_inputs)
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
        extra_pins.append(target or widest_changed(spec, extra_pins))
    raise does_not_run(model, where, exc, got, expected, extra_pins)
