"""OCR (RapidOCR, models in the wheel) reads large clear words rendered on a creative."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from core.regions.ocr import OcrLine, ocr_words, read_text


def test_ocr_reads_rendered_words():
    img = Image.new("RGB", (720, 360), (250, 240, 200))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=64)
    draw.text((40, 40), "SUMMER SALE", font=font, fill=(20, 20, 120))
    draw.text((40, 200), "Fresh Coffee", font=font, fill=(120, 20, 20))
    lines = read_text(img)
    words = " ".join(line.text for line in lines).lower()
    assert "summer" in words and "sale" in words and "coffee" in words
    coffee = next(line for line in lines if "coffee" in line.text.lower())
    x1, y1, x2, y2 = coffee.box
    assert 20 <= x1 < x2 <= 720 and 180 <= y1 < y2 <= 300  # the box sits on the second line
    assert 0.5 <= coffee.score <= 1.0


def test_ocr_on_blank_and_tiny_images():
    assert read_text(Image.new("RGB", (300, 200), (255, 255, 255))) == []
    assert read_text(Image.new("RGB", (8, 8), (0, 0, 0))) == []


def test_ocr_words_split_what_ocr_ran_together():
    lines = [OcrLine("MIRABELCandles-Simplybetter", (0, 0, 10, 10), 0.9), OcrLine("Fresh  Coffee", (0, 0, 1, 1), 0.8)]
    assert ocr_words(lines) == ["MIRABEL", "Candles", "Simplybetter", "Fresh", "Coffee"]
    assert ocr_words([{"text": "iPhone"}]) == ["i", "Phone"]
    assert ocr_words([]) == []
