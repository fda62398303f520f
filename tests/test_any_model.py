"""End to end: models the way users actually write them, rebuilt by ``reconstruct``.

Each case is a few lines of pure torch that replicate one pattern from a real
library (cited per class) that the tracer and the layer registries must handle:
shape checks before a residual add, forwards that loop over lists, YOLO's
saved-outputs loop, timm's norm-act subclasses with their own forward,
``*args``/``**kwargs`` forwards and a branch on tensor values. Every case must
pass ``tests/support/rebuild_check.check_rebuild`` for ``min`` and ``max`` with
``strict=True`` and random densities; per case, a second test checks that the
part that used to break was really resized rather than pinned or repaired.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.rebuild_check import check_rebuild, param_count, random_densities  # noqa: E402

from sparsenet_design.kinds.prunable import prunable_layers  # noqa: E402
from sparsenet_design import reconstruct  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _image(c: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, c, size, size, generator=torch.Generator().manual_seed(seed))


# -- CDFI's GridNet synthesis network (tding1/CDFI, models/cdfi_adacof.py), as published ------


class LateralBlock(nn.Module):
    def __init__(self, ch_in, ch_out):
        super().__init__()
        self.f = nn.Sequential(nn.PReLU(), nn.Conv2d(ch_in, ch_out, 3, padding=1),
                               nn.PReLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1))
        if ch_in != ch_out:
            self.conv = nn.Conv2d(ch_in, ch_out, 3, padding=1)

    def forward(self, x):
        fx = self.f(x)
        if fx.shape[1] != x.shape[1]:
            x = self.conv(x)
        return fx + x


class DownSamplingBlock(nn.Module):
    def __init__(self, ch_in, ch_out):
        super().__init__()
        self.f = nn.Sequential(nn.PReLU(), nn.Conv2d(ch_in, ch_out, 3, stride=2, padding=1),
                               nn.PReLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1))

    def forward(self, x):
        return self.f(x)


class UpSamplingBlock(nn.Module):
    def __init__(self, ch_in, ch_out):
        super().__init__()
        self.f = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                               nn.PReLU(), nn.Conv2d(ch_in, ch_out, 3, padding=1),
                               nn.PReLU(), nn.Conv2d(ch_out, ch_out, 3, padding=1))

    def forward(self, x):
        return self.f(x)


class GridNet(nn.Module):
    """3 rows (scales) × 6 columns; columns 0-2 go down the rows, 3-5 come back up."""

    def __init__(self, in_chs=8, out_chs=3, grid_chs=(4, 6, 8)):
        super().__init__()
        self.lateral_init = LateralBlock(in_chs, grid_chs[0])
        for r, n in enumerate(grid_chs):
            for c in range(5):
                setattr(self, f"lateral_{r}_{c}", LateralBlock(n, n))
        for r, (a, b) in enumerate(zip(grid_chs[:-1], grid_chs[1:])):
            for c in range(3):
                setattr(self, f"down_{r}_{c}", DownSamplingBlock(a, b))
                setattr(self, f"up_{r}_{c}", UpSamplingBlock(b, a))
        self.lateral_final = LateralBlock(grid_chs[0], out_chs)

    def forward(self, x):
        s00 = self.lateral_init(x)
        s10 = self.down_0_0(s00)
        s20 = self.down_1_0(s10)
        s01 = self.lateral_0_0(s00)
        s11 = self.down_0_1(s01) + self.lateral_1_0(s10)
        s21 = self.down_1_1(s11) + self.lateral_2_0(s20)
        s02 = self.lateral_0_1(s01)
        s12 = self.down_0_2(s02) + self.lateral_1_1(s11)
        s22 = self.down_1_2(s12) + self.lateral_2_1(s21)
        s23 = self.lateral_2_2(s22)
        s13 = self.up_1_0(s23) + self.lateral_1_2(s12)
        s03 = self.up_0_0(s13) + self.lateral_0_2(s02)
        s24 = self.lateral_2_3(s23)
        s14 = self.up_1_1(s24) + self.lateral_1_3(s13)
        s04 = self.up_0_1(s14) + self.lateral_0_3(s03)
        s25 = self.lateral_2_4(s24)
        s15 = self.up_1_2(s25) + self.lateral_1_4(s14)
        s05 = self.up_0_2(s15) + self.lateral_0_4(s04)
        return self.lateral_final(s05)


# -- a shape check right after a norm / activation layer ------------------------------------


class ShapeCheckAfter(nn.Module):
    """GridNet's ``if fx.shape[1] != x.shape[1]`` with the checked tensor coming out of a
    BatchNorm, GroupNorm or per-channel PReLU instead of a conv."""

    def __init__(self, norm: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 16, 3, padding=1)
        self.norm = {"bn": lambda: nn.BatchNorm2d(16), "gn": lambda: nn.GroupNorm(4, 16),
                     "prelu": lambda: nn.PReLU(16)}[norm]()
        self.proj = nn.Conv2d(8, 16, 1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.norm(self.body(x))
        if y.shape[1] != x.shape[1]:
            x = self.proj(x)
        return self.head(y + x)


# -- lists: a list input and loops over lists built inside forward ---------------------------


class ListFPN(nn.Module):
    """A feature-pyramid neck called with a list of maps (torchvision.ops.FeaturePyramidNetwork
    and mmdet's FPN take a list/dict of backbone levels), top-down loop over an inner list."""

    def __init__(self, in_chs=(4, 8, 12), width=8):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_chs)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in in_chs)

    def forward(self, feats: list[torch.Tensor]):
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        outs = [laterals[-1]]
        for lat in reversed(laterals[:-1]):
            outs.insert(0, lat + F.interpolate(outs[0], scale_factor=2.0, mode="nearest"))
        return [conv(o) for conv, o in zip(self.smooth, outs)]


def _pyramid():
    return ([_image(4, 16, 1), _image(8, 8, 2), _image(12, 4, 3)],)


# -- ultralytics YOLOv8: Conv, Bottleneck, C2f, Concat and DetectionModel's loop ---------------


class Conv(nn.Module):
    """ultralytics.nn.modules.conv.Conv: one SiLU instance shared by every Conv (class attribute)."""

    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x):
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 3, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, e=1.0) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class TinyYOLO(nn.Module):
    """ultralytics DetectionModel: ``self.model`` is a Sequential run by hand, each layer
    tagged with its from-index ``f`` (-1: previous, list: several) and index ``i``;
    outputs of layers in ``save`` are kept in a list. ``fuse=True`` does what
    ``DetectionModel.fuse()`` does to Conv: drop ``bn``, ``forward = forward_fuse``."""

    def __init__(self, fuse: bool = False):
        super().__init__()
        layers = [  # (from, module)
            (-1, Conv(3, 8, 3, 2)),
            (-1, C2f(8, 8, n=1, shortcut=True)),
            (-1, Conv(8, 16, 3, 2)),
            (-1, C2f(16, 16, n=1, shortcut=True)),
            (-1, nn.Upsample(scale_factor=2.0, mode="nearest")),
            ([-1, 1], Concat(1)),
            (-1, C2f(24, 8, n=1)),
            (-1, nn.Conv2d(8, 5, 1)),  # a head: box + class channels, fixed
        ]
        for i, (f, m) in enumerate(layers):
            m.f, m.i = f, i
        self.model = nn.Sequential(*(m for _, m in layers))
        self.save = {1}
        if fuse:
            for m in self.modules():
                if isinstance(m, Conv):
                    delattr(m, "bn")
                    m.forward = m.forward_fuse

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


# -- timm norm-act layers (timm/layers/norm_act.py, norm.py) and torchvision's FrozenBatchNorm2d ---


class BatchNormAct2d(nn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: a BatchNorm2d with its own forward (F.batch_norm, drop, act)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, apply_act=True, act_layer=nn.ReLU, drop_layer=None):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = act_layer() if apply_act else nn.Identity()

    def forward(self, x):
        torch._assert(x.ndim == 4, "expected 4D input")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        x = F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight, self.bias, bn_training, factor, self.eps,
        )
        return self.act(self.drop(x))


class GroupNormAct(nn.GroupNorm):
    """timm.layers.GroupNormAct: a GroupNorm with its own forward (F.group_norm, drop, act)."""

    def __init__(self, num_channels, num_groups=32, eps=1e-5, apply_act=True, act_layer=nn.ReLU):
        super().__init__(num_groups, num_channels, eps=eps)
        self.drop = nn.Identity()
        self.act = act_layer() if apply_act else nn.Identity()

    def forward(self, x):
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return self.act(self.drop(x))


class LayerNorm2d(nn.LayerNorm):
    """timm.layers.LayerNorm2d (ConvNeXt): LayerNorm over the channels of an NCHW map."""

    def __init__(self, num_channels, eps=1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class FrozenBatchNorm2d(nn.Module):
    """torchvision.ops.misc.FrozenBatchNorm2d (timm has the same): statistics and affine as buffers."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        w, b = self.weight.reshape(1, -1, 1, 1), self.bias.reshape(1, -1, 1, 1)
        rv, rm = self.running_var.reshape(1, -1, 1, 1), self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        return x * scale + (b - rm * scale)


NORM_ACT = {  # (channels, with activation?) -> module
    "BatchNormAct2d": lambda c, act: BatchNormAct2d(c, apply_act=act, act_layer=nn.SiLU),
    "GroupNormAct": lambda c, act: GroupNormAct(c, num_groups=2, apply_act=act, act_layer=nn.SiLU),
    "LayerNorm2d": lambda c, act: nn.Sequential(LayerNorm2d(c), nn.SiLU()) if act else LayerNorm2d(c),
    "FrozenBatchNorm2d": lambda c, act: nn.Sequential(FrozenBatchNorm2d(c), nn.SiLU()) if act else FrozenBatchNorm2d(c),
}


class SqueezeExcite(nn.Module):
    def __init__(self, chs, rd_chs):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1)
        self.act1 = nn.SiLU()
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1)

    def forward(self, x):
        s = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class InvertedResidual(nn.Module):
    """timm's efficientnet_blocks.InvertedResidual: pw expand, dw, SE, pw linear, skip."""

    def __init__(self, in_chs, out_chs, norm, exp=4):
        super().__init__()
        mid = in_chs * exp
        self.conv_pw = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.bn1 = norm(mid, True)
        self.conv_dw = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False)
        self.bn2 = norm(mid, True)
        self.se = SqueezeExcite(mid, max(1, in_chs // 4))
        self.conv_pwl = nn.Conv2d(mid, out_chs, 1, bias=False)
        self.bn3 = norm(out_chs, False)
        self.has_skip = in_chs == out_chs
        self.drop_path = nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        x = self.bn3(self.conv_pwl(self.se(x)))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class TinyEfficientNet(nn.Module):
    def __init__(self, norm_kind: str):
        super().__init__()
        norm = NORM_ACT[norm_kind]
        self.conv_stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = norm(8, True)
        self.blocks = nn.Sequential(InvertedResidual(8, 8, norm), InvertedResidual(8, 12, norm))
        self.conv_head = nn.Conv2d(12, 32, 1, bias=False)
        self.bn2 = norm(32, True)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        x = self.blocks(self.bn1(self.conv_stem(x)))
        x = self.bn2(self.conv_head(x))
        return self.classifier(x.mean((2, 3)))


class ConvNormAct(nn.Module):
    """timm.layers.ConvNormAct: ``conv`` then a norm-act layer called ``bn``."""

    def __init__(self, in_chs, out_chs, k, stride=1, apply_act=True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, k, stride, k // 2, bias=False)
        self.bn = BatchNormAct2d(out_chs, apply_act=apply_act)

    def forward(self, x):
        return self.bn(self.conv(x))


class RepVggBlock(nn.Module):
    """timm byobnet.RepVggBlock (training form): 3×3 and 1×1 conv-BN branches summed, plus
    an identity BN when the width stays; BatchNormAct2d(apply_act=False) everywhere."""

    def __init__(self, in_chs, out_chs, stride=1):
        super().__init__()
        use_ident = in_chs == out_chs and stride == 1
        self.identity = BatchNormAct2d(out_chs, apply_act=False) if use_ident else None
        self.conv_kxk = ConvNormAct(in_chs, out_chs, 3, stride, apply_act=False)
        self.conv_1x1 = ConvNormAct(in_chs, out_chs, 1, stride, apply_act=False)
        self.drop_path = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        if self.identity is None:
            x = self.conv_1x1(x) + self.conv_kxk(x)
        else:
            identity = self.identity(x)
            x = self.drop_path(self.conv_1x1(x) + self.conv_kxk(x)) + identity
        return self.act(x)


class TinyRepVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(RepVggBlock(3, 8, 2), RepVggBlock(8, 8), RepVggBlock(8, 16, 2), RepVggBlock(16, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.stages(x).mean((2, 3)))


# -- *args / **kwargs forwards, and a branch on tensor values --------------------------------


class VarArgsNet(nn.Module):
    """``forward(self, *frames)``: a shared encoder over however many frames are passed
    (CDFI's ``forward(frame0, frame2)`` generalised to any number of frames)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.dec = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, *frames):
        return self.dec(torch.cat([self.enc(f) for f in frames], 1))


class KwargsNet(nn.Module):
    """``forward(self, x, **kwargs)`` as HuggingFace models write it; options come by keyword."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x, **kwargs):
        feats = self.body(x)
        out = self.head(feats)
        if kwargs.get("output_hidden_states", False):
            return out, feats
        return out


class ValueBranchNet(nn.Module):
    """Python branches on tensor values: images in 0-255 rescaled (input-sniffing preprocessing
    inside forward) and a data-dependent choice of path (dynamic / early-exit nets)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bright = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 8, 3, padding=1))
        self.dark = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU(), nn.Conv2d(12, 8, 1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        if x.max() > 1:
            x = x / 255
        y = self.stem(x)
        y = self.bright(y) if x.mean() > 0.25 else self.dark(y)
        return self.head(y)


def _bright_image():
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255  # mean ≈ 0.5 after /255


# -- the cases ------------------------------------------------------------------------------

CASES = {
    "gridnet": (GridNet, lambda: _image(8, 32)),
    **{f"shape_check_after_{k}": (functools.partial(ShapeCheckAfter, k), lambda: _image(3))
       for k in ("bn", "gn", "prelu")},
    "list_fpn": (ListFPN, _pyramid),
    "yolo_c2f": (TinyYOLO, lambda: _image(3)),
    "yolo_c2f_fused": (functools.partial(TinyYOLO, fuse=True), lambda: _image(3)),
    **{f"efficientnet_{k}": (functools.partial(TinyEfficientNet, k), lambda: _image(3)) for k in NORM_ACT},
    "repvgg": (TinyRepVGG, lambda: _image(3)),
    "varargs": (VarArgsNet, lambda: (_image(3, seed=1), _image(3, seed=2))),
    "kwargs": (KwargsNet, lambda: _image(3)),
    "value_branch": (ValueBranchNet, _bright_image),
}


def _make(name: str):
    build = CASES[name][0]

    def make():
        torch.manual_seed(0)
        return build().eval()

    return make


@pytest.mark.parametrize("strategy", ["min", "max"])
@pytest.mark.parametrize("name", list(CASES))
def test_rebuilds(name, strategy):
    make, inputs = _make(name), CASES[name][1]()
    model = make()
    # at most 1/2, so that max must shrink too: in nets this small one layer near density 1 holds a whole group
    densities = {path: d / 2 for path, d in random_densities(model, seed=1).items()}
    res = check_rebuild(make, inputs, densities, strategy, strict=True, model=model)
    assert res.repaired == [], f"{name}: the core had to pin {res.repaired} to make the compact model run"
    if strategy == "min":
        assert res.ratio < 0.9, f"{name}: min kept {res.ratio:.0%} of the parameters"


@functools.cache
def _design(name: str, density: float = 0.25):
    """``(model, compact, spec)`` for ``min`` with every prunable layer at ``density``."""
    make, inputs = _make(name), CASES[name][1]()
    model = make()
    densities = {path: density for path, _ in prunable_layers(model)}
    compact, spec = reconstruct(model, inputs, "min", densities)
    assert not any(n.startswith("the first rebuild did not run") for n in spec.notes), spec.notes
    return model, compact, spec


def _changed(spec, path: str, attr: str) -> tuple[int, int]:
    """``(original, new)`` width of ``path.attr``, which must have shrunk."""
    entry = spec.modules.get(path)
    assert entry is not None, f"{path} is not in the spec"
    before, after = entry["original"][attr], entry["widths"][attr]
    assert after < before, f"{path}.{attr} kept {before} channels"
    return before, after


def test_gridnet_every_row_and_shape_checked_projection_shrink():
    _, compact, spec = _design("gridnet")
    for r, width in enumerate((4, 6, 8)):  # each row (scale stream) is one group: laterals, downs and ups
        streams = {compact.get_submodule(f"lateral_{r}_{c}.f.3").out_channels for c in range(5)}
        streams |= {compact.get_submodule(f"lateral_{r}_{c}.f.1").in_channels for c in range(5)}
        assert len(streams) == 1 and streams.pop() < width, f"row {r}"
    # the projections that only run because of ``if fx.shape[1] != x.shape[1]``
    _changed(spec, "lateral_init.conv", "out_channels")
    _changed(spec, "lateral_final.conv", "in_channels")
    assert compact.lateral_init.conv.in_channels == 8 and compact.lateral_final.conv.out_channels == 3


@pytest.mark.parametrize("norm, attr", [("bn", "num_features"), ("gn", "num_channels"), ("prelu", "num_parameters")])
def test_shape_check_after_norm_resizes_norm_and_projection(norm, attr):
    _, compact, spec = _design(f"shape_check_after_{norm}")
    _, w = _changed(spec, "norm", attr)
    assert _changed(spec, "proj", "out_channels")[1] == w == compact.body.out_channels
    if norm == "gn":
        assert w % 4 == 0


def test_list_input_fpn_resizes_the_shared_width():
    _, compact, spec = _design("list_fpn")
    widths = {_changed(spec, f"lateral.{i}", "out_channels")[1] for i in range(3)}
    assert len(widths) == 1  # the top-down adds tie every level to one width
    assert all(compact.smooth[i].in_channels in widths for i in range(3))


@pytest.mark.parametrize("name", ["yolo_c2f", "yolo_c2f_fused"])
def test_yolo_c2f_split_halves_resized(name):
    model, compact, spec = _design(name)
    for c2f in ("model.1", "model.3", "model.6"):
        _, split = _changed(spec, f"{c2f}.cv1.conv", "out_channels")
        half = compact.get_submodule(f"{c2f}.m.0.cv1.conv").in_channels
        assert split == 2 * half, f"{c2f}: chunk(2) of {split} channels feeds a {half}-channel bottleneck"
    assert param_count(compact) < 0.5 * param_count(model)


def test_yolo_fused_forward_runs_the_compact_weights():
    """``forward = forward_fuse`` is a bound method in the instance dict: a copy that keeps
    it bound to the source module would run the source's weights and hide the compact ones."""
    _, compact, _ = _design("yolo_c2f_fused")
    fused = [m for m in compact.modules() if "forward" in vars(m)]
    assert fused and all(m.forward.__self__ is m for m in fused)
    assert not any(hasattr(m, "bn") for m in fused)


@pytest.mark.parametrize("kind", list(NORM_ACT))
def test_efficientnet_norm_act_layers_resized(kind):
    _, compact, _ = _design(f"efficientnet_{kind}")
    block = compact.blocks[1]
    mid = block.conv_pw.out_channels
    assert mid < 32, f"{kind}: the expanded width was not cut"
    for name in ("bn1", "bn2"):
        norm = getattr(block, name)
        norm = norm[0] if isinstance(norm, nn.Sequential) else norm
        assert type(norm).__name__ == kind
        sizes = {t.shape[0] for t in list(norm.parameters(recurse=False)) + list(norm.buffers(recurse=False))
                 if t.ndim == 1}
        assert sizes == {mid}, f"{kind}.{name}: per-channel tensors of sizes {sizes}, convs have {mid}"
        if isinstance(norm, nn.LayerNorm):
            assert tuple(norm.normalized_shape) == (mid,)


def test_repvgg_shrinks_and_identity_bn_follows():
    model, compact, _ = _design("repvgg")
    assert param_count(compact) < 0.5 * param_count(model)
    for i in (1, 3):  # blocks with an identity BN: it must follow the summed branches
        block = compact.stages[i]
        w = block.conv_kxk.conv.out_channels
        assert w < (8, 16)[i // 2]
        assert block.identity.num_features == block.conv_1x1.bn.num_features == w
        assert block.identity.running_mean.shape == (w,)


@pytest.mark.parametrize("name, path", [("varargs", "enc.0"), ("kwargs", "body.0"), ("value_branch", "bright.0")])
def test_unusual_forward_resizes_its_layers(name, path):
    _changed(_design(name)[2], path, "out_channels")
