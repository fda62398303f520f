"""The AdaCoF warp op: values, all four gradients, both input conventions, backends.

The independent reference is built from torch's own ``grid_sample`` on an
explicitly replication-padded image (``padding_mode="border"``,
``align_corners=True``): clamping the sample coordinate to the padded image
gives the same values and gradients as clamping the bilinear corners, which is
what the op does.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sdesign_adacof.ops import warp_torch
from sdesign_adacof.ops.cupy_kernels import cupy_available
from sdesign_adacof.ops.warp import adacof_warp, use_backend
from sparsenet_design.plugin_api import SdesignError


def reference_warp(x, weight, alpha, beta, dilation):
    """Loop over taps; each tap is one grid_sample of the replication-padded image."""
    b, c, h, w = x.shape
    taps = weight.shape[1]
    k = int(round(taps ** 0.5))
    span = (k - 1) * dilation
    top, left = span // 2, span // 2
    padded = F.pad(x, (left, span - left, top, span - top), mode="replicate")
    hp, wp = padded.shape[-2:]
    rows = torch.arange(h, dtype=x.dtype).view(1, h, 1)
    cols = torch.arange(w, dtype=x.dtype).view(1, 1, w)
    out = 0
    for t in range(taps):
        y = rows + (t // k) * dilation + alpha[:, t]
        xx = cols + (t % k) * dilation + beta[:, t]
        grid = torch.stack((2 * xx / (wp - 1) - 1, 2 * y / (hp - 1) - 1), dim=-1)
        sample = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=True)
        out = out + weight[:, t:t + 1] * sample
    return out


def make_inputs(b=2, c=3, h=9, w=11, k=3, offset_scale=3.0, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=dtype)
    weight = torch.softmax(torch.randn(b, k * k, h, w, generator=g, dtype=dtype), dim=1)
    alpha = torch.randn(b, k * k, h, w, generator=g, dtype=dtype) * offset_scale
    beta = torch.randn(b, k * k, h, w, generator=g, dtype=dtype) * offset_scale
    return [t.to(device).requires_grad_() for t in (x, weight, alpha, beta)]


def grads(fn, tensors, seed=1):
    out = fn(*tensors)
    g = torch.Generator().manual_seed(seed)
    upstream = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    return out, torch.autograd.grad(out, tensors, upstream)


TORCH_BACKENDS = ["torch", "reference"]


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("k,dilation", [(3, 1), (3, 2), (4, 1), (5, 2)])
def test_torch_paths_match_grid_sample_reference(backend, k, dilation):
    tensors = make_inputs(k=k, h=10, w=7, offset_scale=4.0)  # offsets far beyond the border too
    with use_backend(backend):
        out, got = grads(lambda *t: adacof_warp(*t, dilation), tensors)
    ref_out, expected = grads(lambda *t: reference_warp(*t, dilation), tensors)
    torch.testing.assert_close(out, ref_out)
    for name, a, e in zip(("input", "weight", "alpha", "beta"), got, expected):
        torch.testing.assert_close(a, e, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("dilation", [1, 2])
def test_gradcheck_torch_paths(backend, dilation):
    tensors = make_inputs(b=1, c=2, h=7, w=5, k=3, offset_scale=3.0)
    with use_backend(backend):
        assert torch.autograd.gradcheck(lambda *t: adacof_warp(*t, dilation), tensors)


def test_fast_torch_path_matches_reference_float32():
    tensors = make_inputs(b=1, c=4, h=37, w=53, k=11, offset_scale=8.0, dtype=torch.float32)
    with use_backend("torch"):
        fast, fast_grads = grads(lambda *t: adacof_warp(*t, 2), tensors)
    with use_backend("reference"):
        exact, exact_grads = grads(lambda *t: adacof_warp(*t, 2), tensors)
    torch.testing.assert_close(fast, exact, rtol=1e-4, atol=1e-4)
    for a, e in zip(fast_grads, exact_grads):
        torch.testing.assert_close(a, e, rtol=1e-3, atol=1e-3)


def test_prepadded_input_matches_unpadded():
    x, weight, alpha, beta = make_inputs(k=5, h=8, w=9)
    span = 4 * 2
    padded = F.pad(x, (span // 2,) * 4, mode="replicate")
    torch.testing.assert_close(adacof_warp(padded, weight, alpha, beta, 2),
                               adacof_warp(x, weight, alpha, beta, 2))


def test_integer_offsets_shift_the_image():
    x = torch.arange(30, dtype=torch.float64).view(1, 1, 5, 6)
    ones = torch.ones(1, 1, 5, 6, dtype=torch.float64)
    out = adacof_warp(x, ones, ones * 1, ones * -2, 1)  # sample (i+1, j-2), clamped
    rows = torch.arange(5).add(1).clamp(max=4)
    cols = torch.arange(6).sub(2).clamp(min=0)
    torch.testing.assert_close(out[0, 0], x[0, 0][rows][:, cols])


def test_negative_fractional_offsets_interpolate():
    # the published kernel truncates toward zero; true floor interpolates between j-1 and j
    x = torch.tensor([[[[0.0, 10.0, 20.0, 30.0]]]], dtype=torch.float64)
    ones = torch.ones(1, 1, 1, 4, dtype=torch.float64)
    out = adacof_warp(x, ones, ones * 0, ones * -0.25, 1)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 7.5, 17.5, 27.5], dtype=torch.float64))


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_chunked_taps_agree(monkeypatch, backend):
    tensors = make_inputs(k=5, h=6, w=7, dtype=torch.float32)
    with use_backend(backend):
        whole, whole_grads = grads(lambda *t: adacof_warp(*t, 1), tensors)
        monkeypatch.setattr(warp_torch, "_CHUNK_ELEMENTS", 1)  # one tap at a time
        chunked, chunked_grads = grads(lambda *t: adacof_warp(*t, 1), tensors)
    torch.testing.assert_close(chunked, whole)
    for a, e in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, e)


def test_mixed_dtypes_promote_and_grads_keep_dtype():
    x, weight, alpha, beta = make_inputs(dtype=torch.float32)
    half = [t.detach().half().requires_grad_() for t in (weight, alpha, beta)]
    out = adacof_warp(x, *half, 1)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert [t.grad.dtype for t in half] == [torch.float16] * 3
    torch.testing.assert_close(out, adacof_warp(x, *(t.float() for t in half), 1))


@pytest.mark.parametrize("shapes,match", [
    (((1, 3, 8, 8), (1, 8, 8, 8)), "not a square"),
    (((1, 3, 8, 8), (1, 9, 5, 8)), "height"),
    (((2, 3, 8, 8), (1, 9, 8, 8)), "batch"),
])
def test_bad_shapes_raise_clear_errors(shapes, match):
    x = torch.rand(shapes[0])
    w = torch.rand(shapes[1])
    with pytest.raises(SdesignError, match=match):
        adacof_warp(x, w, w, w, 1)


def test_op_is_one_node_for_fx_and_compile():
    import torch.fx as fx

    class Warp(torch.nn.Module):
        def forward(self, x, w, a, b):
            return adacof_warp(x, w, a, b, 2) * 2

    gm = fx.symbolic_trace(Warp())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.sdesign_adacof.adacof_warp.default in targets or \
        torch.ops.sdesign_adacof.adacof_warp in targets
    tensors = [t.detach() for t in make_inputs(k=3, dtype=torch.float32)]
    compiled = torch.compile(Warp(), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*tensors), Warp()(*tensors))
    metas = [t.to("meta") for t in tensors]
    assert Warp()(*metas).shape == tensors[0].shape


def test_cupy_backend_refuses_cpu_tensors_clearly():
    tensors = [t.detach() for t in make_inputs(dtype=torch.float32)]
    with use_backend("cupy"), pytest.raises(SdesignError, match="CuPy"):
        adacof_warp(*tensors, 1)


# ---------------------------------------------------------------- CUDA kernels

needs_cupy = pytest.mark.skipif(not cupy_available(), reason="needs CUDA and CuPy (pip install sdesign-adacof[cuda])")


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("dilation", [1, 2])
def test_gradcheck_cuda_kernels(dilation):
    tensors = make_inputs(b=1, c=5, h=7, w=9, k=3, device="cuda")  # c=5: two channel blocks
    with use_backend("cupy"):
        assert torch.autograd.gradcheck(lambda *t: adacof_warp(*t, dilation), tensors)


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("k,dilation,h,w,c", [(5, 1, 33, 47, 3), (11, 2, 37, 29, 3), (4, 1, 16, 17, 20), (3, 2, 19, 23, 40)])
def test_cuda_kernels_match_torch_path_float32(k, dilation, h, w, c):
    tensors = make_inputs(b=2, c=c, h=h, w=w, k=k, offset_scale=6.0, dtype=torch.float32, device="cuda")
    with use_backend("cupy"):
        out, got = grads(lambda *t: adacof_warp(*t, dilation), tensors)
    with use_backend("reference"):
        ref, expected = grads(lambda *t: adacof_warp(*t, dilation), tensors)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("published_grad", [False, True])
def test_cuda_kernels_truncate_and_published_grad_match_torch_path(published_grad):
    tensors = make_inputs(b=2, c=20, h=21, w=19, k=5, offset_scale=6.0, dtype=torch.float32, device="cuda")
    fn = lambda *t: adacof_warp(*t, 2, truncate=True, published_grad=published_grad)  # noqa: E731
    with use_backend("cupy"):
        out, got = grads(fn, tensors)
    with use_backend("reference"):
        ref, expected = grads(fn, tensors)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-3, atol=1e-3)
    if published_grad:
        assert torch.count_nonzero(got[0]) == 0


@pytest.mark.gpu
@needs_cupy
def test_cuda_kernels_prepadded_and_autocast():
    x, weight, alpha, beta = [t.detach() for t in make_inputs(k=5, h=16, w=20, dtype=torch.float32, device="cuda")]
    padded = F.pad(x, (4,) * 4, mode="replicate")
    with use_backend("cupy"):
        torch.testing.assert_close(adacof_warp(padded, weight, alpha, beta, 2),
                                   adacof_warp(x, weight, alpha, beta, 2))
        with torch.autocast("cuda", dtype=torch.float16):
            out = adacof_warp(x, weight.half(), alpha.half(), beta.half(), 2)
    assert out.dtype == torch.float32


# ------------------------------------- the CUDA source, emulated on the CPU
# No GPU is needed to check the kernels' arithmetic: compiled by g++ with a tiny
# shim (one "thread" walks the grid-stride loop), they must match the PyTorch path.

_SHIM = r"""
#include <cmath>
using std::floor; using std::fmin; using std::fmax;
#define __global__
#define __device__
#define __forceinline__ inline
struct Dim3 { unsigned x; };
static const Dim3 blockIdx{0}, threadIdx{0}, blockDim{1}, gridDim{1};
template <typename T> inline T atomicAdd(T* p, T v) { T old = *p; *p += v; return old; }
#include "KERNELS"
extern "C" void forward4(const double* x, const double* w, const double* a, const double* b, double* out,
                         const int* s) {
    adacof_forward<double, 4>(x, w, a, b, out, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]);
}
extern "C" void forward16(const double* x, const double* w, const double* a, const double* b, double* out,
                          const int* s) {
    adacof_forward<double, 16>(x, w, a, b, out, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]);
}
extern "C" void backward(const double* go, const double* x, const double* w, const double* a, const double* b,
                         double* gx, double* gw, double* ga, double* gb, const int* s) {
    adacof_backward<double>(go, x, w, a, b, gx, gw, ga, gb,
                            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], 1, s[10]);
}
"""


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory):
    import ctypes
    import shutil
    import subprocess
    from pathlib import Path

    import sdesign_adacof.ops as ops

    if shutil.which("g++") is None:
        pytest.skip("g++ not found; cannot emulate the CUDA kernels on the CPU")
    folder = tmp_path_factory.mktemp("kernels")
    source = Path(ops.__file__).with_name("adacof_kernels.cu")
    (folder / "shim.cpp").write_text(_SHIM.replace("KERNELS", str(source)))
    lib = folder / "libadacof_emulated.so"
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-w", "-o", str(lib), str(folder / "shim.cpp")], check=True)
    return ctypes.CDLL(str(lib))


@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("k,dilation,prepad", [(3, 2, False), (4, 1, False), (5, 1, True)])
def test_cuda_source_emulated_on_cpu_matches_torch_path(emulated_kernels, k, dilation, prepad, truncate):
    """Both samplings: floor (true bilinear) and the published truncation toward zero."""
    import ctypes

    from sdesign_adacof.ops.geometry import warp_geometry

    x, weight, alpha, beta = [t.detach() for t in make_inputs(b=2, c=5, h=7, w=6, k=k, offset_scale=4.0)]
    if prepad:
        x = F.pad(x, (2 * dilation,) * 4, mode="replicate")
    geo = warp_geometry(x, weight, alpha, beta, dilation)
    sizes = (ctypes.c_int * 11)(geo.batch, geo.channels, geo.in_height, geo.in_width, geo.height,
                                geo.width, geo.kernel_size, geo.dilation, geo.shift_y, geo.shift_x, int(truncate))
    p = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
    out = torch.zeros(geo.batch, geo.channels, geo.height, geo.width, dtype=torch.float64)
    expected_out = warp_torch.warp_forward_reference(x, weight, alpha, beta, dilation, truncate)
    if truncate:  # truncation matters here: it differs from floor sampling
        assert (expected_out - warp_torch.warp_forward_reference(x, weight, alpha, beta, dilation)).abs().max() > 1e-2
    for forward in (emulated_kernels.forward4, emulated_kernels.forward16):  # 2 blocks of 4, 1 of 16
        out.zero_()
        forward(p(x), p(weight), p(alpha), p(beta), p(out), sizes)
        torch.testing.assert_close(out, expected_out)

    go = torch.randn_like(out)
    got = [torch.zeros_like(t) for t in (x, weight, alpha, beta)]
    emulated_kernels.backward(p(go), p(x), p(weight), p(alpha), p(beta), *map(p, got), sizes)
    expected = warp_torch.warp_backward_reference(go, x, weight, alpha, beta, dilation, True, truncate)
    for name, a, e in zip(("input", "weight", "alpha", "beta"), got, expected):
        torch.testing.assert_close(a, e, msg=lambda m: f"grad {name}: {m}")
