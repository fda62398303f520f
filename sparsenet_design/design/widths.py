"""The √d rule on channel groups.

Every prunable layer that touches a group proposes ``⌈√d · C⌉`` for its slice of
``C`` channels; a strategy turns the proposals into one width per group class,
which then respects the class's width step (divisibility by conv groups and
attention heads, whole parts of split groups) and a floor of one step. Pinned
classes keep their width. On a plain chain of convolutions this is exactly the
paper's ``-min`` / ``-max`` rule.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from ..channels.graph import ChannelGraph
from ..channels.groups import ONE, Layout

STRATEGIES: dict[str, Callable[[list[Fraction]], Fraction]] = {
    "min": min,
    "max": max,
    "mean": lambda xs: sum(xs, Fraction(0)) / len(xs),
}


@dataclass
class GroupDecision:
    root: int
    label: str
    original: int
    width: int
    step: int
    proposals: list[tuple[str, str, float]] = field(default_factory=list)  # (layer, role, width)
    pinned: list[str] = field(default_factory=list)


def proposed_slice(density: float, channels: int | Fraction) -> int:
    """``⌈√d · C⌉`` (the paper's rule for one layer's slice of ``C`` channels)."""
    # round before ceil so that e.g. √0.25·64 = 32 exactly is not pushed to 33
    return max(1, math.ceil(round(math.sqrt(density) * float(channels), 9)))


def add_proposals(graph: ChannelGraph, densities: Mapping[str, float]) -> None:
    table = graph.table
    for rec in graph.modules.values():
        d = densities.get(rec.path)
        if d is None:
            continue
        for role, layout in rec.roles:
            for seg in layout:
                table.propose(seg, rec.path, role, proposed_slice(d, table.width0(seg)))


def resolve_widths(
    graph: ChannelGraph,
    densities: Mapping[str, float],
    strategy: str = "min",
    overrides: Mapping[str, str] | None = None,
) -> dict[int, GroupDecision]:
    """One width per group class. ``overrides`` maps a group label (as shown in
    reports, e.g. ``"layer1.0.conv1.out_channels"``) to another strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    add_proposals(graph, densities)
    table = graph.table
    overrides = dict(overrides or {})
    decisions: dict[int, GroupDecision] = {}
    members = table.members_by_root()
    for root in sorted(members):
        info = table.groups[root]
        step = table.step(root, members[root])
        props = table.proposals[root]
        decision = GroupDecision(
            root, info.label, info.width, info.width, step,
            [(p.layer, p.role, float(p.width)) for p in props], list(info.pinned),
        )
        member_labels = {table.groups[g].label for g in members[root]} if overrides else set()
        chosen = next((overrides[label] for label in member_labels if label in overrides), strategy)
        if props and not info.pinned:
            target = math.ceil(round(float(STRATEGIES[chosen]([p.width for p in props])), 9))
            width = max(step, -(-target // step) * step)
            decision.width = min(width, info.width) if info.width % step == 0 else info.width
        decisions[root] = decision
    return decisions


def layout_width(graph: ChannelGraph, layout: Layout, decisions: Mapping[int, GroupDecision]) -> int:
    """New width of a layout given the group decisions."""
    total = 0
    for seg in layout:
        root, r = graph.table.find(seg.group)
        if r is ONE and seg.scale is ONE:
            total += decisions[root].width
        else:
            total += decisions[root].width * r * seg.scale
    if total.denominator != 1:
        raise AssertionError(f"non-integer width {total} for layout {layout}")
    return int(total)
