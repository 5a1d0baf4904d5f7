"""Safe image decoding shared by importers, detectors and pages.

Every image that enters AdLens goes through :func:`decode_image`: it refuses non-images,
truncated files and decompression bombs with a clear :class:`ImageError`, applies the EXIF
orientation (so boxes land on the picture the user sees), takes the first frame of animations,
and converts 16-bit, CMYK, palette, alpha and grayscale images to 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import get_settings


class ImageError(ValueError):
    """An image that cannot be used, with a message a person can act on."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF-rotated
    sha256: str  # of the original bytes
    format: str
    frames: int

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255.0).clip(0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        rgba = img.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode_image(data: bytes, *, name: str = "image", max_pixels: int | None = None) -> DecodedImage:
    """Decode ``data`` into an RGB image, or raise :class:`ImageError` saying why not."""
    limit = max_pixels or get_settings().max_image_pixels
    if not data:
        raise ImageError(f"{name}: the file is empty")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data))
            except (UnidentifiedImageError, ImportError):
                # ImportError: some libraries (ultralytics) wrap Image.open and try to import optional
                # format plugins for unknown bytes; the bytes are still not an image we can read
                raise ImageError(f"{name}: not an image (unrecognised file format)") from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ImageError(f"{name}: image is too large (more than {limit:,} pixels; possible decompression bomb)") from None
            width, height = img.size
            if width * height > limit:
                raise ImageError(f"{name}: image is {width}x{height}, more than {limit:,} pixels")
            if width < 1 or height < 1:
                raise ImageError(f"{name}: image has no pixels")
            fmt = img.format or "unknown"
            frames = int(getattr(img, "n_frames", 1) or 1)
            try:
                img.seek(0)
                img.load()
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ImageError(f"{name}: image is too large (possible decompression bomb)") from None
            try:
                img = ImageOps.exif_transpose(img) or img
            except Exception:  # a broken EXIF block must not lose the picture
                pass
            rgb = _to_rgb(img)
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return DecodedImage(image=rgb, sha256=sha256_bytes(data), format=fmt, frames=frames)


def load_image(path: str | Path, **kwargs) -> DecodedImage:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    return decode_image(data, name=kwargs.pop("name", path.name), **kwargs)


def thumbnail(img: Image.Image, size: int = 256) -> Image.Image:
    thumb = img.copy()
    thumb.thumbnail((size, size))
    return thumb
