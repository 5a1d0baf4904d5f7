"""Words printed on a creative, read with RapidOCR (PP-OCRv4 ONNX models shipped in the wheel)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from core.loaders import load_once


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels (bounding box of the text quad)
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


JOINS = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|[-_/|·•]+")


def ocr_words(lines: list[OcrLine] | list[dict]) -> list[str]:
    """The words of OCR lines, with the words OCR runs together split again ("MIRABELCandles-Simply" -> MIRABEL Candles Simply)."""
    texts = [line["text"] if isinstance(line, dict) else line.text for line in lines]
    return [word for text in texts for part in JOINS.split(text) for word in part.split() if word]


@load_once(maxsize=1)
def _engine():
    import logging

    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return engine


def read_text(image: Image.Image, *, min_score: float = 0.5, max_side: int = 1600) -> list[OcrLine]:
    """The text lines on ``image`` (reading order as the OCR returns it), each with its box and score."""
    scale = 1.0
    if max(image.size) > max_side:  # OCR cost grows with pixels; creatives rarely need more
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    if min(image.size) < 8:
        return []
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    result, _ = _engine()(bgr)
    lines = []
    for quad, text, score in result or []:
        pts = np.asarray(quad, dtype=np.float64) / scale
        if float(score) < min_score or not str(text).strip():
            continue
        box = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
        lines.append(OcrLine(text=str(text).strip(), box=box, score=round(float(score), 4)))
    return lines
