"""CuPy launchers for the AdaCoF CUDA kernels (``adacof_kernels.cu``).

CuPy is an optional extra (``pip install sdesign-adacof[cuda]``). Nothing here
imports it until a CUDA tensor is warped; :func:`cupy_available` tells whether
the kernels can run. The kernels are compiled once per process (CuPy caches
the binary on disk too) for float32 and float64.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .geometry import WarpGeometry

_SOURCE = Path(__file__).with_name("adacof_kernels.cu")
_TYPES = {torch.float32: "float", torch.float64: "double"}
_THREADS = 256
CHANNEL_BLOCKS = (4, 16, 32)  # forward kernel variants (32: 96 registers, no spills on sm_90)


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy  # noqa: F401
        return torch.cuda.is_available() and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or a CuPy built for another CUDA
        return False


def supports(t: torch.Tensor) -> bool:
    """Whether the CUDA kernels handle this tensor (CUDA, float32/float64, CuPy present)."""
    return t.is_cuda and t.dtype in _TYPES and cupy_available()


@functools.lru_cache(maxsize=None)
def _module(device_index: int):
    import cupy

    names = [f"adacof_forward<{ctype}, {block}>" for ctype in _TYPES.values() for block in CHANNEL_BLOCKS]
    names += [f"adacof_backward<{ctype}>" for ctype in _TYPES.values()]
    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=_SOURCE.read_text(), options=("--std=c++14",), name_expressions=names)
        module.compile()
    return module


def _kernel(name: str, device: torch.device):
    return _module(device.index if device.index is not None else torch.cuda.current_device()).get_function(name)


def channel_block(channels: int) -> int:
    """The narrowest compiled channel block that holds all channels (or the widest)."""
    return next((b for b in CHANNEL_BLOCKS if b >= channels), CHANNEL_BLOCKS[-1])


def _launch(kernel, total: int, device: torch.device, args: tuple) -> None:
    import cupy

    blocks = max(1, min((total + _THREADS - 1) // _THREADS, 2**31 - 1))
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index if device.index is not None else torch.cuda.current_device()):
        with cupy.cuda.ExternalStream(stream.cuda_stream):
            kernel((blocks,), (_THREADS,), args)


def _ptr(t: torch.Tensor):
    import numpy as np

    return np.uint64(t.data_ptr())


def _sizes(geo: WarpGeometry) -> tuple:
    import numpy as np

    return tuple(np.int32(v) for v in (
        geo.batch, geo.channels, geo.in_height, geo.in_width, geo.height, geo.width,
        geo.kernel_size, geo.dilation, geo.shift_y, geo.shift_x))


def forward_cuda(geo: WarpGeometry, input: torch.Tensor, weight: torch.Tensor,
                 alpha: torch.Tensor, beta: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    """Warp on the GPU. All tensors contiguous, same dtype (float32/float64), same device.
    ``truncate``: the published kernels' sampling (offsets rounded toward zero)."""
    import numpy as np

    out = input.new_empty(geo.batch, geo.channels, geo.height, geo.width)
    block = channel_block(geo.channels)
    total = geo.batch * -(-geo.channels // block) * geo.height * geo.width
    if total:
        kernel = _kernel(f"adacof_forward<{_TYPES[input.dtype]}, {block}>", input.device)
        _launch(kernel, total, input.device,
                (_ptr(input), _ptr(weight), _ptr(alpha), _ptr(beta), _ptr(out)) + _sizes(geo)
                + (np.int32(1 if truncate else 0),))
    return out


def backward_cuda(geo: WarpGeometry, grad_output: torch.Tensor, input: torch.Tensor,
                  weight: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                  input_grad: bool, truncate: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    import numpy as np

    grad_input = torch.zeros_like(input)
    grad_weight = torch.empty_like(weight)
    grad_alpha = torch.empty_like(alpha)
    grad_beta = torch.empty_like(beta)
    total = geo.batch * geo.taps * geo.height * geo.width
    if total:
        kernel = _kernel(f"adacof_backward<{_TYPES[input.dtype]}>", input.device)
        args = (_ptr(grad_output), _ptr(input), _ptr(weight), _ptr(alpha), _ptr(beta),
                _ptr(grad_input), _ptr(grad_weight), _ptr(grad_alpha), _ptr(grad_beta))
        _launch(kernel, total, input.device, args + _sizes(geo)
                + (np.int32(1 if input_grad else 0), np.int32(1 if truncate else 0)))
    return grad_input, grad_weight, grad_alpha, grad_beta
