"""Channel groups: sets of channel slices that must keep equal (or proportional) widths.

Groups live in a weighted union-find. Each group has an original width; when
two slices are tied, their groups join one class whose members' widths stay in
fixed rational ratios (``width(g) = ratio(g) · width(root)``). A tensor
dimension that carries channels has a *layout*: a sequence of segments
``(group, scale, part)`` laid end to end (``cat`` makes several); a segment
covers ``width(group) · scale`` entries. ``scale > 1`` is a flatten (each
channel repeated ``scale`` times); ``scale = 1/k`` is part ``part`` of a group
cut into ``k`` equal pieces (``chunk``, attention heads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd


ONE = Fraction(1)  # the common ratio and scale; compared by identity in hot paths


@dataclass(frozen=True)
class Segment:
    group: int
    scale: Fraction = ONE
    part: int = 0


Layout = tuple[Segment, ...]


@dataclass
class GroupInfo:
    width: int
    label: str
    pinned: list[str] = field(default_factory=list)


@dataclass
class Proposal:
    layer: str
    role: str  # "in" or "out"
    width: Fraction | int  # proposed width in units of the class root


class GroupTable:
    """Weighted union-find over channel groups."""

    def __init__(self) -> None:
        self.groups: list[GroupInfo] = []
        self._parent: list[int] = []
        self._ratio: list[Fraction] = []  # width(g) = ratio[g] * width(parent[g])
        self.multipliers: dict[int, set[Fraction]] = {}  # root -> q with width(root)*q integer
        self.proposals: dict[int, list[Proposal]] = {}
        self.conflicts: list[str] = []

    # -- creation and lookup -------------------------------------------------
    def new(self, width: int, label: str, pinned: str | None = None) -> int:
        gid = len(self.groups)
        self.groups.append(GroupInfo(int(width), label))
        self._parent.append(gid)
        self._ratio.append(ONE)
        self.multipliers[gid] = set()
        self.proposals[gid] = []
        if pinned:
            self.groups[gid].pinned.append(pinned)
        return gid

    def find(self, g: int) -> tuple[int, Fraction]:
        """``(root, r)`` with ``width(g) = r · width(root)``."""
        parent = self._parent
        if parent[g] == g:
            return g, ONE
        r = ONE
        path = []
        while parent[g] != g:
            path.append(g)
            ratio = self._ratio[g]
            if ratio is not ONE:
                r *= ratio
            g = parent[g]
        # path compression
        acc = r
        for node in path:
            parent[node], ratio = g, self._ratio[node]
            self._ratio[node] = ONE if acc == 1 else acc
            if ratio is not ONE:
                acc /= ratio
        return g, (ONE if r == 1 else r)

    def root(self, g: int) -> int:
        return self.find(g)[0]

    def roots(self) -> list[int]:
        return sorted({self.root(g) for g in range(len(self.groups))})

    def members(self, root: int) -> list[int]:
        return self.members_by_root().get(root, [])

    def members_by_root(self) -> dict[int, list[int]]:
        """Every class's member groups, in one pass."""
        out: dict[int, list[int]] = {}
        for g in range(len(self.groups)):
            out.setdefault(self.root(g), []).append(g)
        return out

    # -- constraints ------------------------------------------------------
    def width0(self, segment: Segment) -> Fraction | int:
        width = self.groups[segment.group].width
        return width if segment.scale is ONE else width * segment.scale

    def layout_width(self, layout: Layout) -> int:
        return int(sum(self.width0(s) for s in layout))

    def pin(self, g: int, reason: str) -> None:
        root = self.root(g)
        if reason not in self.groups[root].pinned:
            self.groups[root].pinned.append(reason)

    def pinned(self, g: int) -> list[str]:
        return self.groups[self.root(g)].pinned

    def require_integer(self, segment: Segment, factor: Fraction = Fraction(1)) -> None:
        """``width(segment) · factor`` must stay an integer."""
        root, r = self.find(segment.group)
        self.multipliers[root].add(r * segment.scale * factor)

    def propose(self, segment: Segment, layer: str, role: str, proposed_slice: int) -> None:
        root, r = self.find(segment.group)
        if r is ONE and segment.scale is ONE:
            width = proposed_slice  # an int is an exact rational too
        else:
            width = Fraction(proposed_slice) / (r * segment.scale)
        self.proposals[root].append(Proposal(layer, role, width))

    def union(self, a: Segment, b: Segment, why: str) -> None:
        """Tie two segments so that their widths stay equal."""
        ra, ka = self.find(a.group)
        rb, kb = self.find(b.group)
        wa, wb = self.width0(a), self.width0(b)
        if wa != wb:
            self.conflicts.append(f"{why}: widths {wa} and {wb} differ")
            self.pin(a.group, f"inconsistent channel coupling ({why})")
            self.pin(b.group, f"inconsistent channel coupling ({why})")
            return
        if ra == rb:
            if ka * a.scale != kb * b.scale:
                self.pin(ra, f"channels tied to themselves at two scales ({why})")
            return
        # width(rb) = (ka*sa)/(kb*sb) * width(ra)
        ratio = (ka * a.scale) / (kb * b.scale)
        if ratio == 1:
            ratio = ONE
        self._parent[rb] = ra
        self._ratio[rb] = ratio
        self.groups[ra].pinned.extend(p for p in self.groups[rb].pinned if p not in self.groups[ra].pinned)
        self.multipliers[ra].update(q * ratio for q in self.multipliers.pop(rb))
        self.proposals[ra].extend(
            Proposal(p.layer, p.role, p.width / ratio) for p in self.proposals.pop(rb)
        )

    # -- resolution ----------------------------------------------------------
    def step(self, root: int, members: list[int] | None = None) -> int:
        """The smallest width step: ``width(root)`` must be a multiple of it."""
        qs = set(self.multipliers.get(root, ()))
        for g in self.members(root) if members is None else members:
            qs.add(self.find(g)[1])
        m = 1
        for q in qs:
            q = Fraction(q)
            need = q.denominator // gcd(q.denominator, q.numerator)
            m = m * need // gcd(m, need)
        return m
