"""Single images: loading, saving and normalising anything image-like to [H, W, 3] uint8 RGB, and
`I420Image`, a frame kept in the planes it was decoded to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


class ImageError(RuntimeError):
    """An image file could not be read or written; the message names the path and the cause."""


# Limited-range luma (16..235) -> full-range gray (0..255).
_LUMA_TO_GRAY = np.clip(np.rint((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


class I420Image:
    """A frame in the planes H.264 decodes to and encodes from: FFmpeg's yuv420p, OpenCV's I420 (BT.601,
    limited range), one array [H * 3 / 2, W] uint8 (Y [H, W], then U and V [H / 2, W / 2]). A stream
    that reads and writes these skips two colour conversions per frame, and its full-resolution passes
    touch half the bytes of RGB's (chroma at a quarter of the pixels). Converted to RGB on first use."""

    __slots__ = ("_rgb", "height", "planes", "width")

    def __init__(self, planes: np.ndarray):
        rows, width = planes.shape
        if planes.dtype != np.uint8 or rows % 3 or width % 2 or (rows * 2 // 3) % 2:
            raise ValueError(f"I420 planes are [H * 3 / 2, W] uint8 with H and W even, got {planes.shape}")
        self.planes = np.ascontiguousarray(planes)
        self.height, self.width = rows * 2 // 3, width
        self._rgb: np.ndarray | None = None

    @classmethod
    def from_rgb(cls, image: np.ndarray) -> I420Image:
        """[H, W, 3] uint8 RGB with even sides -> its planes (OpenCV's conversion)."""
        return cls(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420))

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def luma(self) -> np.ndarray:
        return self.planes[: self.height]  # [H, W] view

    @property
    def chroma(self) -> tuple[np.ndarray, np.ndarray]:
        """(U, V) [H / 2, W / 2] views into the planes."""
        area, quarter = self.height * self.width, self.height * self.width // 4
        flat = self.planes.reshape(-1)
        shape = (self.height // 2, self.width // 2)
        return flat[area : area + quarter].reshape(shape), flat[area + quarter :].reshape(shape)

    def gray(self) -> np.ndarray:
        """[H, W] uint8: the gray of the frame's RGB (OpenCV's RGB -> gray) from the luma alone, where
        the chroma terms cancel; within a level of it except where the RGB saturates."""
        return cv2.LUT(self.luma, _LUMA_TO_GRAY)

    def rgb(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB (converted once; treat as read-only)."""
        if self._rgb is None:
            self._rgb = cv2.cvtColor(self.planes, cv2.COLOR_YUV2RGB_I420)
        return self._rgb

    def rgb_at(self, size: tuple[int, int]) -> np.ndarray:
        """The frame at ``size`` (width, height) as RGB [h, w, 3] uint8, resized in its planes first (area
        averaging), so that a small copy costs a small conversion."""
        width, height = size
        if (height, width) == self.size:
            return self.rgb()
        even = (width + width % 2, height + height % 2)
        u, v = self.chroma
        small = np.empty((even[1] * 3 // 2, even[0]), np.uint8)
        flat, area = small.reshape(-1), even[0] * even[1]
        half = (even[0] // 2, even[1] // 2)
        small[: even[1]] = cv2.resize(self.luma, even, interpolation=cv2.INTER_AREA)
        flat[area : area + area // 4] = cv2.resize(u, half, interpolation=cv2.INTER_AREA).reshape(-1)
        flat[area + area // 4 :] = cv2.resize(v, half, interpolation=cv2.INTER_AREA).reshape(-1)
        rgb = cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420)
        return rgb if even == size else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    def copy(self) -> I420Image:
        return I420Image(self.planes.copy())


Picture = np.ndarray | I420Image  # a frame as the runtime takes it: RGB [H, W, 3] uint8, or its planes


def picture_size(image: Picture) -> tuple[int, int]:
    """(height, width) of an RGB array or of I420 planes."""
    return image.size if isinstance(image, I420Image) else image.shape[:2]  # type: ignore[return-value]


def rgb_at(image: Picture, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (width, height) by area averaging, as RGB [h, w, 3] uint8."""
    if isinstance(image, I420Image):
        return image.rgb_at(size)
    if image.shape[1::-1] == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def is_image_file(path: str | Path) -> bool:
    """True for a file whose extension (any case) is one of IMAGE_EXTENSIONS."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_sort_key(path: Path) -> list[Any]:
    """Sort key that puts frame2.png before frame10.png (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", path.name)
    return [(0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in parts]


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as [H, W, 3] uint8 RGB, honouring EXIF orientation; raises ImageError."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image not found" if not path.exists() else f"{path}: not a file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()  # decode now so a truncated file fails here, not later
            return to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or an unsupported image format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: cannot read image: {error}") from error


def save_image(path: str | Path, array: Any) -> None:
    """Write an image (anything to_rgb accepts) as RGB; the format follows the file extension."""
    path = Path(path)
    rgb = to_rgb(array)
    options = {"quality": 95} if path.suffix.lower() in {".jpg", ".jpeg"} else {}
    try:
        Image.fromarray(rgb).save(path, **options)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"{path}: cannot write image: {error}") from error


def encode_image(image: np.ndarray, extension: str = ".jpg", quality: int = 85) -> bytes:
    """An RGB [H, W, 3], RGBA [H, W, 4] (``.png``, ``.webp``) or grayscale [H, W] uint8 image as the
    bytes of a ``.jpg``, ``.png`` or ``.webp`` file (for the network: the MJPEG preview, the studio).
    Raises ValueError if OpenCV cannot encode it."""
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        pixels = cv2.cvtColor(image, code)
    else:
        pixels = image
    qualities = {".jpg": cv2.IMWRITE_JPEG_QUALITY, ".webp": cv2.IMWRITE_WEBP_QUALITY}
    options = [qualities[extension], quality] if extension in qualities else []
    ok, data = cv2.imencode(extension, pixels, options)
    if not ok:
        raise ValueError(f"encoding a {image.shape} image as {extension} failed")
    return data.tobytes()


def decode_image(data: bytes) -> np.ndarray | None:
    """[H, W, 3] uint8 RGB from the bytes of an image file, or None when they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_rgb(image: Any) -> np.ndarray:
    """Turn an image into a contiguous [H, W, 3] uint8 RGB array.

    Accepts numpy arrays [H, W], [H, W, 1] (grayscale), [H, W, 2] (grayscale + alpha), [H, W, 3]
    (RGB), [H, W, 4] (RGBA: alpha is dropped, not composited); uint8, or uint16 (scaled down to
    8 bits). Also accepts PIL images of any mode, av.VideoFrame and `I420Image`. An RGB uint8 array
    comes back as is (no copy when already contiguous). Raises TypeError for other types and dtypes,
    ValueError for other shapes.
    """
    if isinstance(image, av.VideoFrame):
        return image.to_ndarray(format="rgb24")
    if isinstance(image, I420Image):
        return image.rgb()
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"to_rgb: expected a numpy array, PIL image or av.VideoFrame, got {type(image)}")
    return _array_to_rgb(image)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in {"L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"}:
        return _array_to_rgb(np.asarray(image))
    if image.mode == "I":  # 32-bit integer mode, which Pillow uses for 16-bit PNGs
        return _array_to_rgb(np.clip(np.asarray(image), 0, 65535).astype(np.uint16))
    return np.asarray(image.convert("RGB"))  # palette, CMYK, YCbCr, 1-bit, float…


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    array = _to_uint8(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"to_rgb: expected shape [H, W] or [H, W, C] with C in 1..4, got {list(array.shape)}"
        )
    channels = array.shape[2]
    if channels <= 2:  # gray, or gray + alpha
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif channels == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # uint16 in either byte order
        return (array.astype(np.uint16) >> 8).astype(np.uint8)
    raise TypeError(
        f"to_rgb: expected a uint8 (or uint16) image, got dtype {array.dtype}; "
        "convert float images first, e.g. (x * 255).round().clip(0, 255).astype(np.uint8)"
    )
