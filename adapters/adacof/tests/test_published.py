"""Published checkpoints: ``load_published`` against an independent reference of
the published code's semantics, written here from its description:

- the warp takes the integer part of each offset by a C cast (toward zero), so
  negative fractional offsets extrapolate; it reads an input the caller padded
  by replication;
- its backward sums the weight/offset gradients over channels 0-2 only and
  gives the input a zero gradient;
- CDFI's 1×1 pyramid convs pad by 1, each level is resized to the padded frame
  size and warped as pre-padded input, and the GridNet reads
  [A1, A2, C1L, C1R, …, C5L, C5R].

The reference models use the published key names (``get_kernel.moduleConv1.0.weight``,
``context_synthesis.lateral_init.conv.weight``, …) and random weights, with the
offset heads scaled up so that negative fractional offsets are common.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdesign_adacof import load_published
from sdesign_adacof.checkpoints import (ARCH_KEY, ARCHS, MODE_KEY, convert_checkpoint, guess_arch,
                                        read_checkpoint, save_converted, weights_metadata)
from sdesign_adacof.models.mode import EXACT, PUBLISHED, PUBLISHED_TRAINING, Mode
from sdesign_adacof.models.published import CDFI_UNET_WIDTHS, COMPRESSED_ADACOF_WIDTHS
from sdesign_adacof.ops.warp import adacof_warp, use_backend
from sparsenet_design.plugin_api import CheckpointError, SdesignError

MEAN = (0.4631, 0.4352, 0.3990)


# ---------------------------------------------------------- reference warp
def _corner_values(image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """image (N, C, Hp, Wp), rows/cols (N, H, W) int64 → (N, C, H, W)."""
    return torch.stack([image[n][:, rows[n], cols[n]] for n in range(image.shape[0])])


def _published_samples(image, alpha, beta, k, l, dilation):
    """The four corners and fractions of tap (k, l), integer parts by a C cast."""
    n, _, hp, wp = image.shape
    h, w = alpha.shape[-2:]
    a_int = alpha.to(torch.int64)  # C cast: rounds toward zero
    b_int = beta.to(torch.int64)
    fa, fb = alpha - a_int.to(alpha.dtype), beta - b_int.to(beta.dtype)
    i = torch.arange(h).view(1, h, 1)
    j = torch.arange(w).view(1, 1, w)
    top, left = i + k * dilation + a_int, j + l * dilation + b_int
    r0, r1 = top.clamp(0, hp - 1), (top + 1).clamp(0, hp - 1)
    c0, c1 = left.clamp(0, wp - 1), (left + 1).clamp(0, wp - 1)
    v00, v10 = _corner_values(image, r0, c0), _corner_values(image, r1, c0)
    v01, v11 = _corner_values(image, r0, c1), _corner_values(image, r1, c1)
    return v00, v01, v10, v11, fa.unsqueeze(1), fb.unsqueeze(1)


def published_warp_forward(image, weight, alpha, beta, dilation):
    """The published forward on a pre-padded image (N, C, H + (F-1)d, W + (F-1)d)."""
    size = int(round(math.sqrt(weight.shape[1])))
    out = 0
    for k in range(size):
        for l in range(size):
            t = k * size + l
            v00, v01, v10, v11, fa, fb = _published_samples(image, alpha[:, t], beta[:, t], k, l, dilation)
            bilinear = (v00 * (1 - fa) * (1 - fb) + v10 * fa * (1 - fb)
                        + v01 * (1 - fa) * fb + v11 * fa * fb)
            out = out + weight[:, t:t + 1] * bilinear
    return out


class PublishedWarp(torch.autograd.Function):
    """The published op: forward as above; backward over channels 0-2, none for the input."""

    @staticmethod
    def forward(ctx, image, weight, alpha, beta, dilation):
        ctx.save_for_backward(image, weight, alpha, beta)
        ctx.dilation = dilation
        return published_warp_forward(image, weight, alpha, beta, dilation)

    @staticmethod
    def backward(ctx, grad):
        image, weight, alpha, beta = ctx.saved_tensors
        size = int(round(math.sqrt(weight.shape[1])))
        gw, ga, gb = torch.zeros_like(weight), torch.zeros_like(alpha), torch.zeros_like(beta)
        g = grad[:, :3]
        for k in range(size):
            for l in range(size):
                t = k * size + l
                v00, v01, v10, v11, fa, fb = _published_samples(image[:, :3], alpha[:, t], beta[:, t], k, l,
                                                                ctx.dilation)
                w = weight[:, t:t + 1]
                sample = v00 * (1 - fa) * (1 - fb) + v10 * fa * (1 - fb) + v01 * (1 - fa) * fb + v11 * fa * fb
                gw[:, t] = (g * sample).sum(1)
                ga[:, t] = (g * w * ((v10 - v00) * (1 - fb) + (v11 - v01) * fb)).sum(1)
                gb[:, t] = (g * w * ((v01 - v00) * (1 - fa) + (v11 - v10) * fa)).sum(1)
        return torch.zeros_like(image), gw, ga, gb, None


# ------------------------------------------------------ reference networks
def _conv(c_in, c_out, k=3, padding=1):
    return nn.Conv2d(c_in, c_out, kernel_size=k, stride=1, padding=padding)


def _basic(c_in, widths):
    layers = []
    for c in widths:
        layers += [_conv(c_in, c), nn.ReLU()]
        c_in = c
    return nn.Sequential(*layers)


def _head(c_in, hidden, c_out, final):
    layers = list(_basic(c_in, hidden)) + [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                          _conv(hidden[-1], c_out)]
    return nn.Sequential(*layers, *([final] if final is not None else []))


FULL = {"conv1": 32, "conv2": 64, "conv3": 128, "conv4": 256, "conv5": 512}


class RefKernelEstimation(nn.Module):
    """The published kernel-estimation U-Net, with its module names."""

    def __init__(self, kernel_size, widths, cdfi=False):
        super().__init__()
        taps = kernel_size * kernel_size
        c_in = 6
        for i in range(1, 6):
            setattr(self, f"moduleConv{i}", _basic(c_in, widths[f"conv{i}"]))
            c_in = widths[f"conv{i}"][-1]
        for i in range(5, 1, -1):
            setattr(self, f"moduleDeconv{i}", _basic(c_in, widths[f"deconv{i}"]))
            skip = widths[f"conv{i}"][-1]
            setattr(self, f"moduleUpsample{i}", nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                _conv(widths[f"deconv{i}"][-1], skip), nn.ReLU()))
            c_in = skip
        for name in ("Weight1", "Alpha1", "Beta1", "Weight2", "Alpha2", "Beta2"):
            final = nn.Softmax(dim=1) if name.startswith("Weight") else None
            setattr(self, f"module{name}", _head(c_in, widths[name.lower()][:3], taps, final))
        self.moduleOcclusion = _head(c_in, widths["occlusion"], 1, nn.Sigmoid())
        self.cdfi = cdfi
        if cdfi:
            self.moduleBlend = _head(c_in, widths["occlusion"], 1, nn.Sigmoid())
            for i, c in enumerate((4, 8, 12, 16, 20), 1):
                setattr(self, f"module1by1_{i}", nn.Conv2d(widths[f"conv{i}"][-1], c, kernel_size=1, padding=1))

    def forward(self, x):
        skips = []
        for i in range(1, 6):
            x = getattr(self, f"moduleConv{i}")(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        for i in range(5, 1, -1):
            x = getattr(self, f"moduleUpsample{i}")(getattr(self, f"moduleDeconv{i}")(x)) + skips[i - 1]
        outs = [getattr(self, f"module{n}")(x) for n in ("Weight1", "Alpha1", "Beta1", "Weight2", "Alpha2",
                                                          "Beta2", "Occlusion")]
        if self.cdfi:
            outs.append(self.moduleBlend(x))
            outs += [getattr(self, f"module1by1_{i}")(skips[i - 1]) for i in range(1, 6)]
        return outs


def _prelu_conv(c_in, c_out, stride=1):
    return [nn.PReLU(), nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]


class RefLateral(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.f = nn.Sequential(*_prelu_conv(c_in, c_out), *_prelu_conv(c_out, c_out))
        if c_in != c_out:
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        fx = self.f(x)
        return fx + (self.conv(x) if fx.shape[1] != x.shape[1] else x)


class RefDown(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.f = nn.Sequential(*_prelu_conv(c_in, c_out, 2), *_prelu_conv(c_out, c_out))

    def forward(self, x):
        return self.f(x)


class RefUp(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.f = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                               *_prelu_conv(c_in, c_out), *_prelu_conv(c_out, c_out))

    def forward(self, x):
        return self.f(x)


class RefGridNet(nn.Module):
    """3 rows (32, 64, 96) × 6 columns: three columns going down, three going up."""

    def __init__(self, c_in=126, c_out=3, rows=(32, 64, 96)):
        super().__init__()
        self.lateral_init = RefLateral(c_in, rows[0])
        for r, c in enumerate(rows):
            for col in range(5):
                setattr(self, f"lateral_{r}_{col}", RefLateral(c, c))
        for r in range(2):
            for col in range(3):
                setattr(self, f"down_{r}_{col}", RefDown(rows[r], rows[r + 1]))
                setattr(self, f"up_{r}_{col}", RefUp(rows[r + 1], rows[r]))
        self.lateral_final = RefLateral(rows[0], c_out)

    def forward(self, x):
        grid = [[None] * 6 for _ in range(3)]
        grid[0][0] = self.lateral_init(x)
        grid[1][0] = self.down_0_0(grid[0][0])
        grid[2][0] = self.down_1_0(grid[1][0])
        for col in (1, 2):
            grid[0][col] = getattr(self, f"lateral_0_{col - 1}")(grid[0][col - 1])
            for r in (1, 2):
                grid[r][col] = (getattr(self, f"down_{r - 1}_{col}")(grid[r - 1][col])
                                + getattr(self, f"lateral_{r}_{col - 1}")(grid[r][col - 1]))
        for col in (3, 4, 5):
            grid[2][col] = getattr(self, f"lateral_2_{col - 1}")(grid[2][col - 1])
            for r in (1, 0):
                grid[r][col] = (getattr(self, f"up_{r}_{col - 3}")(grid[r + 1][col])
                                + getattr(self, f"lateral_{r}_{col - 1}")(grid[r][col - 1]))
        return self.lateral_final(grid[0][5])


class RefPublished(nn.Module):
    """The published AdaCoF / compressed AdaCoF / CDFI forward."""

    def __init__(self, kernel_size, dilation, widths, cdfi=False, warp=PublishedWarp.apply):
        super().__init__()
        self.kernel_size, self.dilation, self.cdfi, self.warp_fn = kernel_size, dilation, cdfi, warp
        self.get_kernel = RefKernelEstimation(kernel_size, widths, cdfi)
        if cdfi:
            self.context_synthesis = RefGridNet()

    def forward(self, frame0, frame1):
        h, w = frame0.shape[-2:]
        ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
        frame0 = F.pad(frame0, [0, pw, 0, ph], mode="reflect")
        frame1 = F.pad(frame1, [0, pw, 0, ph], mode="reflect")
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        outs = self.get_kernel(torch.cat([frame0 - mean, frame1 - mean], 1))
        w1, a1, b1, w2, a2, b2, occ = outs[:7]
        p = (self.kernel_size - 1) * self.dilation // 2
        pad = lambda t: F.pad(t, [p, p, p, p], mode="replicate")  # noqa: E731
        warped0 = self.warp_fn(pad(frame0).contiguous(), w1, a1, b1, self.dilation)
        warped1 = self.warp_fn(pad(frame1).contiguous(), w2, a2, b2, self.dilation)
        frame = occ * warped0 + (1 - occ) * warped1
        if self.cdfi:
            blend, feats = outs[7], outs[8:]
            size = pad(frame0).shape[-2:]
            parts = [warped0, warped1]
            for feat in feats:
                level = F.interpolate(feat, size=size, mode="bilinear", align_corners=False).contiguous()
                parts += [self.warp_fn(level, w1, a1, b1, self.dilation),
                          self.warp_fn(level, w2, a2, b2, self.dilation)]
            frame = blend * self.context_synthesis(torch.cat(parts, 1)) + (1 - blend) * frame
        return frame[:, :, :h, :w]


def _widths(arch):
    if arch in ("adacof", "adacof+"):
        widths = {name: (c, c, c) for name, c in FULL.items()}
        widths.update({f"deconv{i}": (c, c, c) for i, c in zip((5, 4, 3, 2), (512, 256, 128, 64))})
        widths.update({n: (64, 64, 0) for n in ("weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2")})
        widths["occlusion"] = (64, 64, 64)
        taps = ARCHS[arch].kernel_size ** 2
        return {k: (v[0], v[1], taps) if v[2] == 0 else v for k, v in widths.items()}
    return CDFI_UNET_WIDTHS if arch == "cdfi" else COMPRESSED_ADACOF_WIDTHS


def reference_model(arch, seed=0, offset_scale=25.0, warp=PublishedWarp.apply):
    spec = ARCHS[arch]
    torch.manual_seed(seed)
    model = RefPublished(spec.kernel_size, spec.dilation, _widths(arch), spec.family == "cdfi", warp)
    with torch.no_grad():  # larger offsets: many negative fractional offsets, several pixels long
        for name in ("Alpha1", "Beta1", "Alpha2", "Beta2"):
            last = getattr(model.get_kernel, f"module{name}")[7]
            last.weight.mul_(offset_scale)
            last.bias.mul_(offset_scale)
    return model.eval()


def frames(h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


# ------------------------------------------------------------------- tests
def test_reference_warp_truncates_and_our_op_matches_it():
    """Negative fractional offsets: the published warp extrapolates; the
    truncating op reproduces it on both PyTorch backends, the default op does not."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 12, 13, generator=g, dtype=torch.float64)
    weight = torch.softmax(torch.randn(2, 9, 12, 13, generator=g, dtype=torch.float64), 1)
    alpha = torch.randn(2, 9, 12, 13, generator=g, dtype=torch.float64) * 3
    beta = torch.randn(2, 9, 12, 13, generator=g, dtype=torch.float64) * 3
    assert ((alpha < 0) & (alpha != alpha.floor())).float().mean() > 0.4
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    expected = published_warp_forward(padded, weight, alpha, beta, 2)
    for backend in ("torch", "reference"):
        with use_backend(backend):
            for image in (x, padded):  # implicit padding and pre-padded input
                got = adacof_warp(image, weight, alpha, beta, 2, truncate=True)
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
            bilinear = adacof_warp(x, weight, alpha, beta, 2)
            assert (bilinear - expected).abs().max() > 1e-2
    positive = alpha.abs(), beta.abs()  # no negative offsets: truncation is floor
    torch.testing.assert_close(adacof_warp(x, weight, *positive, 2, truncate=True),
                               adacof_warp(x, weight, *positive, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("channels", [5, 2])
def test_published_gradients_channels_0_to_2_and_no_input_gradient(backend, channels):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, channels, 14, 15, generator=g, dtype=torch.float64)
    weight = torch.softmax(torch.randn(2, 9, 10, 11, generator=g, dtype=torch.float64), 1)
    alpha = torch.randn(2, 9, 10, 11, generator=g, dtype=torch.float64) * 2
    beta = torch.randn(2, 9, 10, 11, generator=g, dtype=torch.float64) * 2
    upstream = torch.randn(2, channels, 10, 11, generator=g, dtype=torch.float64)
    ref_in = [t.clone().requires_grad_() for t in (x, weight, alpha, beta)]
    out_ref = PublishedWarp.apply(*ref_in, 2)
    expected = torch.autograd.grad(out_ref, ref_in, upstream)
    ours_in = [t.clone().requires_grad_() for t in (x, weight, alpha, beta)]
    with use_backend(backend):
        out = adacof_warp(*ours_in, 2, truncate=True, published_grad=True)
        got = torch.autograd.grad(out, ours_in, upstream)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    assert torch.count_nonzero(got[0]) == 0
    for name, a, e in zip(("weight", "alpha", "beta"), got[1:], expected[1:]):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10, msg=lambda m: f"grad {name}: {m}")
    if channels > 3:  # the exact backward differs: all channels, and the input gets a gradient
        with use_backend(backend):
            exact = torch.autograd.grad(adacof_warp(*ours_in, 2, truncate=True), ours_in, upstream)
        assert torch.count_nonzero(exact[0]) > 0 and (exact[1] - got[1]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", list(ARCHS))
def test_load_published_reproduces_the_published_forward(arch):
    """All five architectures, 64×64 and 50×70 (padded to 64×96), to 1e-5."""
    torch.set_num_threads(1)
    reference = reference_model(arch)
    model = load_published(reference.state_dict(), arch)
    assert not model.training and model.mode == PUBLISHED
    for h, w in ((64, 64), (50, 70)):
        f0, f1 = frames(h, w)
        with torch.no_grad():
            expected = reference(f0, f1)
            got = model(f0, f1)
        assert got.shape == expected.shape == (1, 3, h, w)
        err = (got - expected).abs().max().item()
        assert err < 1e-5, f"{arch} {h}x{w}: max |diff| {err:.2e}"
        if (h, w) == (64, 64):
            model.set_mode(EXACT)  # the same weights through true bilinear sampling differ
            with torch.no_grad():
                assert (model(f0, f1) - expected).abs().max() > 1e-3
            model.set_mode(PUBLISHED)


def test_published_training_mode_reproduces_the_published_backward():
    """CDFI in PUBLISHED_TRAINING: gradients equal the reference's (the 1×1
    pyramid convs get exactly zero, as in the published training run); in the
    exact mode they learn."""
    torch.set_num_threads(1)
    reference = reference_model("cdfi", offset_scale=10.0)
    model = load_published(reference.state_dict(), "cdfi", PUBLISHED_TRAINING)
    f0, f1 = frames(32, 32, seed=5)
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    for net in (reference, model):
        net.zero_grad()
        F.l1_loss(net(f0, f1), target).backward()
    ours = dict(model.named_parameters())
    names = {"get_kernel.module1by1_3.weight": "pyramid.2.weight",
             "get_kernel.moduleAlpha1.7.weight": "unet.alpha1.7.weight",
             "get_kernel.moduleConv2.2.weight": "unet.conv2.2.weight",
             "get_kernel.moduleBlend.0.weight": "blend.0.weight",
             "context_synthesis.down_0_1.f.1.weight": "synthesis.down_0_1.1.weight"}
    ref_params = dict(reference.named_parameters())
    for pub, mine in names.items():
        torch.testing.assert_close(ours[mine].grad, ref_params[pub].grad, rtol=1e-3, atol=1e-6,
                                   msg=lambda m: f"{mine}: {m}")
    for conv in model.pyramid:
        assert torch.count_nonzero(conv.weight.grad) == 0
    model.set_mode(Mode(sampling="truncate", gradients="exact", pyramid="published"))
    model.zero_grad()
    F.l1_loss(model(f0, f1), target).backward()
    assert all(torch.count_nonzero(conv.weight.grad) > 0 for conv in model.pyramid)


def test_key_names_and_gridnet_permutation():
    reference = reference_model("cdfi")
    state = reference.state_dict()
    model = load_published(state, "cdfi")
    ours = model.state_dict()
    assert len(state) == len(ours) == 314
    torch.testing.assert_close(ours["unet.conv1.0.weight"], state["get_kernel.moduleConv1.0.weight"])
    torch.testing.assert_close(ours["unet.weight1.7.bias"], state["get_kernel.moduleWeight1.7.bias"])
    torch.testing.assert_close(ours["pyramid.2.weight"], state["get_kernel.module1by1_3.weight"])
    torch.testing.assert_close(ours["synthesis.down_0_1.1.weight"], state["context_synthesis.down_0_1.f.1.weight"])
    pub = state["context_synthesis.lateral_init.conv.weight"]
    mine = ours["synthesis.lateral_init.shortcut.weight"]
    # ours: A1, A2, C1L (4), C2L (8) …; published: A1, A2, C1L, C1R, C2L, …
    torch.testing.assert_close(mine[:, :6], pub[:, :6])
    torch.testing.assert_close(mine[:, 6:10], pub[:, 6:10])  # C1L
    torch.testing.assert_close(mine[:, 10:18], pub[:, 14:22])  # C2L
    torch.testing.assert_close(mine[:, 66:70], pub[:, 10:14])  # C1R
    assert len(load_published(reference_model("adacof").state_dict(), "adacof").state_dict()) == 118


def test_checkpoint_file_wrappers_and_guess(tmp_path):
    state = reference_model("compressed").state_dict()
    path = tmp_path / "compressed_adacof_F_5_D_1.pth"
    torch.save({"epoch": 50, "state_dict": state}, path)
    assert guess_arch(read_checkpoint(path)) == "compressed"
    model = load_published(path, "compressed")
    torch.testing.assert_close(model.state_dict()["unet.conv3.2.weight"], state["get_kernel.moduleConv3.2.weight"])
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}  # saved from DataParallel
    assert set(read_checkpoint(wrapped)) == set(state)
    for arch, expected in (("adacof", "adacof"), ("adacof+", "adacof+"), ("compressed+", "compressed+"),
                           ("cdfi", "cdfi")):
        assert guess_arch(reference_model(arch).state_dict()) == expected


def test_wrong_arch_names_keys_and_the_arch_to_try():
    state = reference_model("cdfi").state_dict()
    with pytest.raises(CheckpointError) as info:
        load_published(state, "compressed+")
    msg = str(info.value)
    assert "unknown key" in msg and "context_synthesis." in msg and "arch 'cdfi'" in msg
    assert "\n" not in msg
    del state["get_kernel.module1by1_2.bias"]
    with pytest.raises(CheckpointError, match=r"missing \(get_kernel\.module1by1_2\.bias\)"):
        load_published(state, "cdfi")
    small = reference_model("compressed").state_dict()
    with pytest.raises(CheckpointError, match=r"another shape.*try arch='compressed'"):
        load_published(small, "compressed+")
    with pytest.raises(CheckpointError, match="already uses sdesign_adacof's key names"):
        load_published(load_published(small, "compressed").state_dict(), "compressed")
    with pytest.raises(SdesignError, match="Unknown published architecture"):
        load_published(small, "adacof++")


def test_unsafe_or_broken_files_are_refused_clearly(tmp_path):
    import argparse

    path = tmp_path / "pickled.pth"  # e.g. a training script that also saved its argparse options
    torch.save({"state_dict": {}, "args": argparse.Namespace(kernel_size=11)}, path)
    with pytest.raises(CheckpointError, match="never fully unpickled") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a published AdaCoF/CDFI checkpoint"):
        read_checkpoint(tmp_path / "list.pth")


def test_converted_file_carries_arch_and_mode(tmp_path):
    reference = reference_model("compressed+")
    torch.save({"epoch": 1, "state_dict": reference.state_dict()}, tmp_path / "ckpt.pth")
    out = convert_checkpoint(tmp_path / "ckpt.pth", "compressed+", tmp_path / "w.safetensors")
    meta = weights_metadata(out)
    assert meta[ARCH_KEY] == "compressed+" and Mode.from_json(meta[MODE_KEY]) == PUBLISHED
    assert meta["sdesign_adacof.source"] == "ckpt.pth" and len(meta["sdesign_adacof.source_sha256"]) == 64
    from sdesign_adacof.interpolate import load_model

    model = load_model(None, out)  # the architecture and mode come from the file
    assert model.mode == PUBLISHED and model.kernel_size == 11
    f0, f1 = frames(40, 36)
    with torch.no_grad():
        torch.testing.assert_close(model(f0, f1), reference(f0, f1), rtol=0, atol=1e-5)
    assert load_model(None, out, mode="exact").mode == EXACT
    with pytest.raises(SdesignError, match="holds converted 'compressed\\+' weights"):
        load_model("cdfi", out)
    save_converted(model, tmp_path / "exact.safetensors", "compressed+", mode="exact")
    assert load_model("compressed+", tmp_path / "exact.safetensors").mode == EXACT
    with pytest.raises(SdesignError, match="sdesign adacof convert"):
        load_model("compressed+", tmp_path / "ckpt.pth")
