"""Image loading for pages: cached thumbnails and full-size creatives."""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image, ImageOps

from core.filestore import resolve


@st.cache_data(max_entries=4000, show_spinner=False)
def _thumbnail(path: str, size: int) -> bytes | None:
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")  # same orientation as core.images
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=82)
            return buf.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def thumbnail(image_path: str, size: int = 320) -> bytes | None:
    """JPEG bytes of a thumbnail of a stored creative (path relative to home), or None if unreadable.

    Files are content-addressed, so the absolute path is a safe cache key.
    """
    return _thumbnail(str(resolve(image_path)), size)


def load_creative(image_path: str) -> Image.Image | None:
    """The stored creative as RGB, EXIF-rotated through core.images, or None if missing or unreadable."""
    from core.images import ImageError, load_image

    try:
        return load_image(resolve(image_path)).image
    except (ImageError, OSError):
        return None


def placeholder(size: int = 320, text: str = "image missing") -> Image.Image:
    from PIL import ImageDraw

    im = Image.new("RGB", (size, size), (244, 242, 253))
    ImageDraw.Draw(im).text((size // 2, size // 2), text, fill=(120, 110, 160), anchor="mm")
    return im
