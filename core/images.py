"""Safe image decoding shared by importers, detectors and pages.

Every image that enters AdLens goes through :func:`decode_image`: it refuses non-images,
truncated files and decompression bombs with a clear :class:`ImageError`, applies the EXIF
orientation (so boxes land on the picture the user sees), takes the first frame of animations,
and converts 16-bit, CMYK, palette, alpha and grayscale images to 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import get_settings
from core.uploads import UploadTooLarge, check_upload_size


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


def _too_large(name: str, limit: int, exc: BaseException) -> ImageError:
    """Pillow's own refusal (its message holds the pixel count) as a clear ImageError."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    claimed = f"it claims {int(found.group(1)):,} pixels, " if found else ""
    return ImageError(f"{name}: image is too large ({claimed}more than {limit:,} pixels; possible decompression bomb)")


def decode_image(data: bytes, *, name: str = "image", max_pixels: int | None = None) -> DecodedImage:
    """Decode ``data`` into an RGB image, or raise :class:`ImageError` saying why not.

    Thread-safe: the pixel limit is checked against the header's width x height right after
    ``Image.open`` (before any pixel is decoded), per call; no process-wide setting of Pillow
    (``Image.MAX_IMAGE_PIXELS``) and no warnings filter is changed. Pillow's own bomb guard still
    applies on top (it raises above twice its ``MAX_IMAGE_PIXELS``), and is reported the same way.
    """
    limit = max_pixels or get_settings().max_image_pixels
    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        check_upload_size(name, len(data))
    except UploadTooLarge as exc:
        raise ImageError(str(exc)) from None
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, ImportError):
        # ImportError: some libraries (ultralytics) wrap Image.open and try to import optional
        # format plugins for unknown bytes; the bytes are still not an image we can read
        raise ImageError(f"{name}: not an image (unrecognised file format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # the warning is an exception only where the process (not this function) made it one
        raise _too_large(name, limit, exc) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise ImageError(f"{name}: image header is damaged ({exc})") from None
    with img:
        width, height = img.size
        if width * height > limit:
            raise ImageError(f"{name}: image is {width}x{height}, more than {limit:,} pixels (possible decompression bomb)")
        if width < 1 or height < 1:
            raise ImageError(f"{name}: image has no pixels")
        fmt = img.format or "unknown"
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
            img.seek(0)
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(name, limit, exc) from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, MemoryError) as exc:
            raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from None
        try:
            oriented = ImageOps.exif_transpose(img) or img
        except Exception:  # a broken EXIF block must not lose the picture
            oriented = img
        try:
            rgb = _to_rgb(oriented)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{name}: image could not be converted to RGB ({exc})") from None
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
