"""Reading and writing 8-bit images and videos.

Images are handled as float tensors (3, H, W) in [0, 1]; on disk they are 8-bit
RGB. Videos are read and written with PyAV (``av``), falling back to imageio's
ffmpeg plugin; a folder of image files works wherever a video does.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparsenet_design.plugin_api import SdesignError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


class MediaError(SdesignError):
    """An image or video cannot be read or written."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_uint8(path: str | os.PathLike) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array (grey and RGBA become RGB)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise MediaError(f"cannot read {path} as an image: {exc}") from exc


def uint8_to_tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(array, copy=not array.flags.writeable, order="C")).permute(2, 0, 1).to(dtype) / 255


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) uint8 as ``torchvision.utils.save_image``
    rounds (``floor(x·255 + 0.5)``, halves up), so a saved PNG scores exactly as
    the in-memory frame (see :func:`sdesign_adacof.metrics.quantize_8bit`)."""
    from .metrics import quantize_8bit

    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError("tensor_to_uint8 takes one image, not a batch")
        image = image[0]
    q = (quantize_8bit(image) * 255).round().to(torch.uint8)  # exact: quantize_8bit gives k/255
    return q.permute(1, 2, 0).cpu().numpy()


def read_image(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An image file as a (3, H, W) tensor in [0, 1]."""
    return uint8_to_tensor(read_uint8(path), dtype)


def write_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> Path:
    """Save a (3, H, W) [0, 1] tensor or an (H, W, 3) uint8 array as 8-bit RGB."""
    path = Path(path)
    array = tensor_to_uint8(image) if isinstance(image, torch.Tensor) else image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------- video
@dataclass
class FrameSource:
    """Frames of a video file or a folder of images, read lazily."""

    path: Path
    fps: float
    count: int | None
    size: tuple[int, int] | None  # (H, W) of the first frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.path.is_dir():
            for f in image_files(self.path):
                yield read_uint8(f)
        else:
            yield from _read_video(self.path)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """A video file or a folder of frames (sorted by name) as a FrameSource."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        if len(files) < 2:
            raise MediaError(f"folder {path} holds {len(files)} image file(s); interpolation needs at least "
                             f"two frames ({', '.join(IMAGE_SUFFIXES)}), sorted by name")
        h, w = read_uint8(files[0]).shape[:2]
        return FrameSource(path, fps or 25.0, len(files), (h, w))
    if not path.is_file():
        raise MediaError(f"{path} is neither a video file nor a folder of frames")
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else 25.0
                count = stream.frames or None
                size = (stream.codec_context.height, stream.codec_context.width)
        except Exception as exc:
            raise MediaError(f"cannot open {path} as a video: {exc}") from exc
        return FrameSource(path, fps or rate, count, size)
    return FrameSource(path, fps or 25.0, None, None)


def _read_video(path: Path) -> Iterator[np.ndarray]:
    try:
        import av
    except ImportError:
        import imageio.v3 as iio

        for frame in iio.imiter(path, plugin="FFMPEG"):
            yield np.asarray(frame)[..., :3]
        return
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


class FrameSink:
    """Writes frames to a folder of PNGs (when ``path`` has no video suffix) or to
    a video file (H.264 via PyAV). Use as a context manager."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.count = 0
        self._container = None
        self._stream = None
        self.is_video = self.path.suffix.lower() in VIDEO_SUFFIXES

    def __enter__(self) -> "FrameSink":
        if self.is_video:
            import av
            from fractions import Fraction

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
            codec = "gif" if self.path.suffix.lower() == ".gif" else "libx264"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            if codec == "libx264":
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = {"crf": "18"}
        else:
            self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frame: np.ndarray) -> None:
        if self.is_video:
            import av

            if self._stream.width in (None, 0) or self.count == 0:
                h, w = frame.shape[:2]
                # yuv420p needs even sizes: pad by one replicated row/column
                if self._stream.pix_fmt == "yuv420p":
                    h, w = h + h % 2, w + w % 2
                self._stream.width, self._stream.height = w, h
            if self._stream.pix_fmt == "yuv420p" and (frame.shape[0] % 2 or frame.shape[1] % 2):
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._container.mux(packet)
        else:
            write_image(self.path / f"{self.count:06d}.png", frame)
        self.count += 1

    def __exit__(self, *exc) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
