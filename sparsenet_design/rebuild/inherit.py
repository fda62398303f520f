"""Inherited weights: which channels a shrinking group keeps (the strongest by
l1 norm of the sparse weights)."""
from __future__ import annotations

import torch
from torch import nn

from ..channels.graph import ChannelGraph
from ..channels.groups import Layout
from ..design.widths import GroupDecision
from ..kinds.registry import layer_kind


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


def inherit_indices(graph: ChannelGraph, model: nn.Module, decisions: dict[int, GroupDecision]):
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
