"""One demo creative: its ambiguous ad text and its busy image with a small product among larger distractors."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.demo.artwork import BACKGROUNDS, glyph_tile, text_font
from core.demo.knobs import DemoKnobs
from core.demo.vocab import BRANDS, GROUP_KEYWORDS, SCENE_GLYPHS, SHARED_KEYWORDS, SHARED_KEYWORDS_ZH, SLOGANS, SLOGANS_ZH, CategorySpec


@dataclass
class Creative:
    """A rendered creative: JPEG bytes, their sha256, the ad text and the ground truth."""

    text: str
    lang: str
    jpeg: bytes
    sha256: str
    width: int
    height: int
    truth: dict[str, Any]


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _keywords(rng: np.random.Generator, spec: CategorySpec, zh: bool, knobs: DemoKnobs) -> list[str]:
    own = spec.keywords_zh if zh else spec.keywords
    group = GROUP_KEYWORDS[spec.group][1 if zh else 0]
    shared = SHARED_KEYWORDS_ZH if zh else SHARED_KEYWORDS
    words: list[str] = []
    for _ in range(int(rng.integers(2, 4))):
        source = rng.choice(3, p=np.asarray(knobs.keyword_sources, dtype=float))
        word = _pick(rng, (own, group, shared)[int(source)])
        if word not in words:
            words.append(word)
    return words


def ad_text(rng: np.random.Generator, spec: CategorySpec, brand: str, slogan: str, lang: str,
            knobs: DemoKnobs) -> tuple[str, bool]:
    """The ad text in ``lang`` and whether it names the category.

    Brand and slogan are shared across categories; keywords are drawn from the category's own list, its group's
    list or the global marketing words (``knobs.keyword_sources``); the name appears with ``p_name_in_text``.
    """
    named = bool(rng.random() < knobs.p_name_in_text)
    zh = lang == "zh"
    words = _keywords(rng, spec, zh, knobs)
    if zh:
        head = f"{brand} {spec.name_zh}" if named else brand
        slogan_zh = _pick(rng, SLOGANS_ZH)
        form = int(rng.integers(3))
        body = "、".join(words)
        if form == 0:
            return f"{head}，{slogan_zh}。{body}。", named
        if form == 1:
            return f"{slogan_zh}！{head}：{body}。", named
        return f"{body}，尽在{head}。{slogan_zh}。", named
    head = f"{brand} {spec.name}" if named else brand
    body = ", ".join(words)
    form = int(rng.integers(3))
    if form == 0:
        return f"{head}. {slogan}! {body.capitalize()}.", named
    if form == 1:
        return f"{slogan} with {head}: {body}.", named
    return f"{body.capitalize()} from {head}. {slogan}.", named


def _overlap_fraction(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> float:
    """Largest fraction of ``box`` covered by any one of ``others``."""
    x1, y1, x2, y2 = box
    area = max(1, (x2 - x1) * (y2 - y1))
    worst = 0.0
    for ox1, oy1, ox2, oy2 in others:
        w = min(x2, ox2) - max(x1, ox1)
        h = min(y2, oy2) - max(y1, oy1)
        if w > 0 and h > 0:
            worst = max(worst, w * h / area)
    return worst


def _place(rng: np.random.Generator, tile: Image.Image, area: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    ax1, ay1, ax2, ay2 = area
    x = int(rng.integers(ax1, max(ax1 + 1, ax2 - tile.width + 1)))
    y = int(rng.integers(ay1, max(ay1 + 1, ay2 - tile.height + 1)))
    return x, y, x + tile.width, y + tile.height


def _printed_line(rng: np.random.Generator, brand: str, slogan: str, spec: CategorySpec, knobs: DemoKnobs) -> str:
    line = f"{brand.upper()} - {slogan}"
    if rng.random() < knobs.p_name_printed:
        line = f"{brand.upper()} {spec.name.title()} - {slogan}"
    return line


def render_creative(rng: np.random.Generator, spec: CategorySpec,
                    distractor_pool: list[tuple[str, str]], lang: str, knobs: DemoKnobs) -> Creative:
    """Draw one creative of category ``spec``.

    ``distractor_pool`` holds (glyph, category name) of the other categories' products.
    """
    size = knobs.image_size
    brand = _pick(rng, BRANDS)
    slogan = _pick(rng, SLOGANS)
    text, named = ad_text(rng, spec, brand, slogan, lang, knobs)

    kinds = list(knobs.background_weights)
    weights = np.asarray([knobs.background_weights[k] for k in kinds], dtype=float)
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    canvas = BACKGROUNDS[kind](rng, size).convert("RGBA")

    # the printed slogan band takes the top or bottom strip; objects stay out of it
    printed = _printed_line(rng, brand, slogan, spec, knobs)
    font_px = int(size * rng.uniform(0.05, 0.065))
    font = text_font(font_px)
    while font.getlength(printed) > size * 0.92 and font_px > 10:
        font_px -= 2
        font = text_font(font_px)
    band_h = int(font_px * 1.8)
    at_top = bool(rng.random() < 0.5)
    band = (0, 0, size, band_h) if at_top else (0, size - band_h, size, size)
    free = (0, band_h, size, size) if at_top else (0, 0, size, size - band_h)

    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    n_distractors = int(rng.integers(knobs.n_distractors[0], knobs.n_distractors[1] + 1))
    for _ in range(n_distractors):
        if distractor_pool and rng.random() < knobs.p_distractor_from_category:
            glyph, category = distractor_pool[int(rng.integers(len(distractor_pool)))]
        else:
            glyph, category = _pick(rng, SCENE_GLYPHS), None
        side = int(size * rng.uniform(*knobs.distractor_scale))
        tile = glyph_tile(glyph, side)
        box = _place(rng, tile, free)
        canvas.alpha_composite(tile, (box[0], box[1]))
        boxes.append(box)
        objects.append({"box": list(box), "glyph": glyph, "category": category, "role": "distractor"})

    # the product: small, drawn last (on top), placed where it is least covered by the distractors
    glyph = _pick(rng, spec.glyphs)
    tile = glyph_tile(glyph, int(size * rng.uniform(*knobs.product_scale)))
    candidates = [_place(rng, tile, free) for _ in range(12)]
    product_box = min(candidates, key=lambda b: _overlap_fraction(b, boxes))
    canvas.alpha_composite(tile, (product_box[0], product_box[1]))
    objects.append({"box": list(product_box), "glyph": glyph, "category": spec.name, "role": "product"})

    # the printed line: a translucent band and Latin letters OCR can read
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    dark = bool(rng.random() < 0.5)
    draw.rectangle(band, fill=(20, 20, 20, 190) if dark else (250, 250, 250, 200))
    width = font.getlength(printed)
    tx = int(rng.uniform(0.02 * size, max(0.02 * size + 1, size - width - 0.02 * size)))
    ty = band[1] + (band_h - font_px) // 2 - int(font_px * 0.1)
    draw.text((tx, ty), printed, font=font, fill=(255, 255, 255, 255) if dark else (10, 10, 10, 255))
    canvas.alpha_composite(overlay)
    text_box = [tx, band[1], int(tx + width), band[3]]

    buf = io.BytesIO()
    canvas.convert("RGB").save(buf, format="JPEG", quality=knobs.jpeg_quality)
    data = buf.getvalue()
    truth = {
        "product_box": list(product_box),
        "product_glyph": glyph,
        "objects": objects,
        "printed_text": printed,
        "text_box": text_box,
        "background": kind,
        "name_in_text": named,
        "brand": brand,
    }
    return Creative(text=text, lang=lang, jpeg=data, sha256=hashlib.sha256(data).hexdigest(),
                    width=size, height=size, truth=truth)
