"""Draw ground-truth boxes on a creative (pure Pillow, no Streamlit; used by the detail views)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

PRODUCT_COLOR = (22, 163, 74)  # green: the product the ad sells
DISTRACTOR_COLOR = (249, 115, 22)  # orange: other objects drawn on the creative
HALO_COLOR = (255, 255, 255)


def truth_boxes(truth: dict[str, Any] | None) -> list[tuple[list[float], str]]:
    """[(box, role)] from Ad.truth: the product box, then each distractor object's box."""
    truth = truth or {}
    out: list[tuple[list[float], str]] = []
    product = truth.get("product_box")
    if _is_box(product):
        out.append(([float(v) for v in product], "product"))
    for obj in truth.get("objects") or []:
        if not isinstance(obj, dict) or not _is_box(obj.get("box")):
            continue
        box = [float(v) for v in obj["box"]]
        if obj.get("role") == "product" or (out and out[0][1] == "product" and box == out[0][0]):
            continue  # the product is drawn once, from product_box
        out.append((box, "distractor"))
    return out


def _is_box(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 4 and all(
        isinstance(v, int | float) for v in value)


def draw_boxes(image: Image.Image, boxes: list[tuple[list[float], str]], width: int | None = None) -> Image.Image:
    """A copy of ``image`` (RGB) with each (box [x1, y1, x2, y2] in pixels, role) outlined.

    The product is a green frame; distractors a thinner orange frame; each has a white halo just
    outside it. Boxes partly outside the image are clipped; empty ones are skipped.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    line = width or max(2, round(min(w, h) / 160))
    for box, role in sorted(boxes, key=lambda b: b[1] == "product"):  # product on top
        x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(w - 1), box[2]), min(float(h - 1), box[3])
        if x2 <= x1 or y2 <= y1:
            continue
        color = PRODUCT_COLOR if role == "product" else DISTRACTOR_COLOR
        stroke = line + 1 if role == "product" else line
        # a white halo outside the frame keeps it visible on any background
        draw.rectangle([x1 - 1, y1 - 1, x2 + 1, y2 + 1], outline=HALO_COLOR, width=stroke + 2)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=stroke)
    return out
