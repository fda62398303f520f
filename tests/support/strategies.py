"""Random DAG networks for property tests of ``reconstruct``.

A :class:`Recipe` is plain data (a list of :class:`Op` over numbered tensors);
:class:`RecipeNet` is the ``nn.Module`` that runs it, written the way a user
would write such a network. Recipes are drawn through a tiny :class:`Draw`
interface so that the same generator serves hypothesis (``dag_recipes()``,
with shrinking) and a plain seeded ``random.Random`` (``random_recipe(seed)``,
for the 10,000-example benchmark in ``benchmarks/random_dag_fuzz.py``).

Ops: conv (1×1 / 3×3, with and without bias), grouped conv, depthwise conv
(channel multiplier 1 or 2), transposed conv (stride 1 or 2, optionally
grouped), BatchNorm, ReLU, a BatchNorm2d subclass with its own forward
(``F.batch_norm`` + activation, as timm's BatchNormAct2d), residual blocks (a
chain of 1–3 layers back to the source width, then ``+``), adds of any two
same-shape tensors, shape-checked adds of two maps of any widths (a 1×1
projection applied only ``if a.shape[1] != b.shape[1]``, as CDFI's GridNet),
channel concats, ``chunk`` / ``split`` into equal halves, max / average
pooling, flatten → Linear and global-pool → Linear heads, Linear on flat
tensors; several outputs.
The repr of a recipe is valid Python: paste it to reproduce a failure.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

MODULE_KINDS = ("conv", "gconv", "dwconv", "tconv", "bn", "bnact", "relu", "linear", "flat_linear", "gap_linear")


class BatchNormAct(nn.BatchNorm2d):
    """A norm-act subclass with its own forward (timm's BatchNormAct2d, reduced)."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum, self.eps)
        return self.act(x)


@dataclass
class Op:
    kind: str
    src: tuple[int, ...]
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    ops: list[Op]
    outputs: tuple[int, ...]
    densities: dict[str, float]
    in_channels: int = 3
    size: int = 8

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, self.in_channels, self.size, self.size, generator=torch.Generator().manual_seed(0))


class RecipeNet(nn.Module):
    def __init__(self, recipe: Recipe):
        super().__init__()
        self.recipe = recipe.ops
        self.outputs = recipe.outputs
        self.layers = nn.ModuleDict()
        for i, op in enumerate(recipe.ops):
            module = _make_module(op)
            if module is not None:
                self.layers[f"op{i}"] = module

    def forward(self, x: torch.Tensor):
        ts = [x]
        for i, op in enumerate(self.recipe):
            k, src = op.kind, op.src
            if k in ("flat_linear",):
                ts.append(self.layers[f"op{i}"](torch.flatten(ts[src[0]], 1)))
            elif k == "gap_linear":
                ts.append(self.layers[f"op{i}"](F.adaptive_avg_pool2d(ts[src[0]], 1).flatten(1)))
            elif k in MODULE_KINDS:
                ts.append(self.layers[f"op{i}"](ts[src[0]]))
            elif k == "add":
                ts.append(ts[src[0]] + ts[src[1]])
            elif k == "shape_add":
                a, b = ts[src[0]], ts[src[1]]
                if a.shape[1] != b.shape[1]:
                    b = self.layers[f"op{i}"](b)
                ts.append(a + b)
            elif k == "cat":
                ts.append(torch.cat([ts[j] for j in src], dim=1))
            elif k == "chunk":
                a, b = ts[src[0]].chunk(2, dim=1)
                ts += [a, b]
            elif k == "split":
                t = ts[src[0]]
                a, b = torch.split(t, t.shape[1] // 2, dim=1)
                ts += [a, b]
            elif k == "maxpool":
                ts.append(F.max_pool2d(ts[src[0]], 2))
            elif k == "avgpool":
                ts.append(F.avg_pool2d(ts[src[0]], 2))
            else:
                raise ValueError(k)
        outs = [ts[j] for j in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _make_module(op: Op) -> nn.Module | None:
    a = op.args
    if op.kind in ("conv", "gconv", "dwconv"):
        return nn.Conv2d(a["c_in"], a["c_out"], a["k"], padding=a["k"] // 2, groups=a.get("groups", 1), bias=a["bias"])
    if op.kind == "tconv":
        s = a["stride"]
        k = 2 if s == 2 else 3
        return nn.ConvTranspose2d(a["c_in"], a["c_out"], k, stride=s, padding=0 if s == 2 else 1,
                                  groups=a.get("groups", 1), bias=a["bias"])
    if op.kind == "bn":
        return nn.BatchNorm2d(a["c_in"])
    if op.kind == "bnact":
        return BatchNormAct(a["c_in"])
    if op.kind == "shape_add":  # the projection exists only where the widths differ
        return nn.Conv2d(a["c_in"], a["c_out"], 1, bias=a["bias"]) if a["c_in"] != a["c_out"] else None
    if op.kind == "relu":
        return nn.ReLU()
    if op.kind in ("linear", "flat_linear", "gap_linear"):
        return nn.Linear(a["f_in"], a["f_out"], bias=a["bias"])
    return None


def build_net(recipe: Recipe) -> nn.Module:
    torch.manual_seed(0)
    return RecipeNet(recipe).eval()


# -- drawing ----------------------------------------------------------------


class Draw:
    """What the generator needs from a source of randomness."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def density(self) -> float:
        raise NotImplementedError


class RandomDraw(Draw):
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def density(self):
        return 1.0 if self.rng.random() < 0.1 else round(self.rng.uniform(0.01, 1.0), 4)


class HypothesisDraw(Draw):
    def __init__(self, draw):
        self.draw = draw

    def integer(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def choice(self, options):
        return self.draw(st.sampled_from(options))

    def density(self):
        return self.draw(st.one_of(st.just(1.0), st.floats(0.01, 1.0)))


@dataclass
class _T:
    """A tensor while generating: channels (or features) and spatial size (None: flat)."""

    c: int
    s: int | None


class _Gen:
    def __init__(self, draw: Draw, max_ops: int, max_width: int):
        self.d = draw
        self.max_width = max_width
        self.max_ops = max_ops
        self.ts = [_T(3, 8)]
        self.ops: list[Op] = []
        self.densities: dict[str, float] = {}

    # -- helpers ----------------------------------------------------------
    def _pick(self, cands: list[int]) -> int:
        """A tensor index, the most recent one preferred (and shrunk towards)."""
        return cands[len(cands) - 1 - self.d.integer(0, len(cands) - 1)]

    def _maps(self) -> list[int]:
        return [i for i, t in enumerate(self.ts) if t.s is not None]

    def _width(self, lo: int = 1) -> int:
        return self.d.integer(lo, self.max_width)

    def _emit(self, kind: str, src: tuple[int, ...], outs: list[_T], **args) -> int:
        i = len(self.ops)
        self.ops.append(Op(kind, src, args))
        if kind in ("conv", "gconv", "dwconv", "tconv", "linear", "flat_linear", "gap_linear") or (
            kind == "shape_add" and args["c_in"] != args["c_out"]
        ):
            self.densities[f"layers.op{i}"] = self.d.density()
        self.ts.extend(outs)
        return len(self.ts) - 1

    def conv(self, src: int, c_out: int | None = None) -> int:
        t = self.ts[src]
        c_out = c_out or self._width()
        k = self.d.choice([1, 3])
        return self._emit("conv", (src,), [_T(c_out, t.s)], c_in=t.c, c_out=c_out, k=k, bias=self.d.boolean())

    def gconv(self, src: int) -> int | None:
        t = self.ts[src]
        gs = [g for g in (2, 3, 4) if t.c % g == 0]
        if not gs:
            return None
        g = self.d.choice(gs)
        c_out = g * self.d.integer(1, max(1, self.max_width // g))
        return self._emit("gconv", (src,), [_T(c_out, t.s)], c_in=t.c, c_out=c_out, k=self.d.choice([1, 3]),
                          groups=g, bias=self.d.boolean())

    def dwconv(self, src: int) -> int:
        t = self.ts[src]
        mult = self.d.choice([1, 2])
        return self._emit("dwconv", (src,), [_T(t.c * mult, t.s)], c_in=t.c, c_out=t.c * mult, k=3, groups=t.c,
                          bias=self.d.boolean())

    def tconv(self, src: int) -> int:
        t = self.ts[src]
        stride = self.d.choice([1, 2]) if t.s <= 8 else 1
        gs = [1] + [g for g in (2, 4) if t.c % g == 0]
        g = self.d.choice(gs)
        c_out = g * self.d.integer(1, max(1, self.max_width // g))
        return self._emit("tconv", (src,), [_T(c_out, t.s * stride)], c_in=t.c, c_out=c_out, stride=stride,
                          groups=g, bias=self.d.boolean())

    def simple(self, kind: str, src: int) -> int:
        t = self.ts[src]
        return self._emit(kind, (src,), [_T(t.c, t.s)], c_in=t.c)

    def residual(self, src: int) -> int:
        t = self.ts[src]
        cur = src
        n = self.d.integer(1, 3)
        for j in range(n):
            last = j == n - 1
            kind = self.d.choice(["conv", "bn", "relu", "dwconv", "bnact"] if not last else ["conv", "dwconv"])
            if kind == "conv":
                cur = self.conv(cur, t.c if last else None)
            elif kind == "dwconv":
                if self.ts[cur].c != t.c and last:
                    cur = self.conv(cur, t.c)
                else:
                    cur = self._emit("dwconv", (cur,), [_T(self.ts[cur].c, t.s)], c_in=self.ts[cur].c,
                                     c_out=self.ts[cur].c, k=3, groups=self.ts[cur].c, bias=self.d.boolean())
            else:
                cur = self.simple(kind, cur)
        return self._emit("add", (src, cur) if self.d.boolean() else (cur, src), [_T(t.c, t.s)])

    def step(self) -> None:
        maps = self._maps()
        kinds = ["conv", "residual", "bn", "relu", "cat", "add", "gconv", "dwconv", "tconv", "chunk", "split",
                 "maxpool", "avgpool", "head", "linear", "bnact", "shape_add"]
        kind = self.d.choice(kinds)
        if kind == "linear":
            flat = [i for i, t in enumerate(self.ts) if t.s is None]
            if not flat:
                return
            src = self._pick(flat)
            f = self._width()
            self._emit("linear", (src,), [_T(f, None)], f_in=self.ts[src].c, f_out=f, bias=self.d.boolean())
            return
        src = self._pick(maps)
        t = self.ts[src]
        if kind == "conv":
            self.conv(src)
        elif kind == "residual":
            self.residual(src)
        elif kind in ("bn", "relu", "bnact"):
            self.simple(kind, src)
        elif kind == "gconv":
            self.gconv(src)
        elif kind == "dwconv":
            self.dwconv(src)
        elif kind == "tconv":
            self.tconv(src)
        elif kind == "add":
            same = [i for i in maps if self.ts[i] == t]
            self._emit("add", (src, self._pick(same)), [_T(t.c, t.s)])
        elif kind == "shape_add":
            other = self._pick([i for i in maps if self.ts[i].s == t.s])
            self._emit("shape_add", (src, other), [_T(t.c, t.s)], c_in=self.ts[other].c, c_out=t.c,
                       bias=self.d.boolean())
        elif kind == "cat":
            same = [i for i in maps if self.ts[i].s == t.s]
            parts = [src] + [self._pick(same) for _ in range(self.d.integer(1, 2))]
            self._emit("cat", tuple(parts), [_T(sum(self.ts[j].c for j in parts), t.s)])
        elif kind in ("chunk", "split"):
            if t.c % 2:
                return
            self._emit(kind, (src,), [_T(t.c // 2, t.s), _T(t.c // 2, t.s)])
        elif kind in ("maxpool", "avgpool"):
            if t.s < 2:
                return
            self._emit(kind, (src,), [_T(t.c, t.s // 2)])
        elif kind == "head":
            f = self._width()
            if self.d.boolean() and t.c * t.s * t.s <= 1024:
                self._emit("flat_linear", (src,), [_T(f, None)], f_in=t.c * t.s * t.s, f_out=f, bias=self.d.boolean())
            else:
                self._emit("gap_linear", (src,), [_T(f, None)], f_in=t.c, f_out=f, bias=self.d.boolean())

    def recipe(self) -> Recipe:
        # the first layer is always a conv, so that every network has something to shrink
        self.conv(0)
        for _ in range(self.d.integer(2, self.max_ops - 1)):
            self.step()
        last = len(self.ts) - 1
        extra = [self.d.integer(1, last) for _ in range(self.d.choice([0, 0, 1, 2]))]
        outputs = tuple(dict.fromkeys([last] + [e for e in extra if e != last]))
        return Recipe(self.ops, outputs, self.densities)


def make_recipe(draw: Draw, max_ops: int = 10, max_width: int = 12) -> Recipe:
    return _Gen(draw, max_ops, max_width).recipe()


def random_recipe(seed: int, max_ops: int = 14, max_width: int = 12) -> Recipe:
    return make_recipe(RandomDraw(seed), max_ops, max_width)


@st.composite
def dag_recipes(draw, max_ops: int = 10, max_width: int = 12) -> Recipe:
    return make_recipe(HypothesisDraw(draw), max_ops, max_width)
