"""Hostile images: thread-safe decoding with per-call limits, decompression bombs, oversized uploads, fuzzed bytes."""

from __future__ import annotations

import io
import random
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_data import bomb_png, png_bytes
from PIL import Image

from core.config import get_settings
from core.images import DecodedImage, ImageError, decode_image


def _jpeg(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "teal").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def test_concurrent_decodes_each_use_their_own_limit_and_leave_globals_alone():
    """Threads with different limits decode at once: every answer follows that call's limit, nothing global moves.

    The old code set Image.MAX_IMAGE_PIXELS per call: a thread with a small limit made Pillow refuse another
    thread's image that its own, larger limit allowed (and the warnings filters could be left changed).
    """
    sizes = {"small": (50, 40), "medium": (120, 100), "large": (260, 200)}  # 2,000 / 12,000 / 52,000 pixels
    images = {k: png_bytes(v, seed=i) for i, (k, v) in enumerate(sizes.items())}
    limits = [1_000, 3_000, 5_000, 12_000, 20_000, 60_000]
    jobs = [(name, limit) for name in images for limit in limits] * 12
    random.Random(7).shuffle(jobs)
    before_pixels, before_filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    start = threading.Barrier(8)

    def work(job: tuple[str, int]) -> tuple[str, int, bool]:
        name, limit = job
        if start.n_waiting < 8 and not start.broken:
            try:
                start.wait(timeout=0.5)
            except threading.BrokenBarrierError:
                pass
        try:
            decoded = decode_image(images[name], name=name, max_pixels=limit)
        except ImageError as exc:
            assert "more than" in str(exc) and f"{limit:,}" in str(exc), str(exc)
            return name, limit, False
        assert decoded.size == sizes[name]
        return name, limit, True

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs))
    wrong = [(n, lim, ok) for n, lim, ok in results if ok != (sizes[n][0] * sizes[n][1] <= lim)]
    assert wrong == []
    assert len(results) == len(jobs) and sum(ok for *_, ok in results) == 12 * 9  # 9 (image, limit) pairs fit
    assert Image.MAX_IMAGE_PIXELS == before_pixels
    assert list(warnings.filters) == before_filters


def test_decode_does_not_touch_pillow_limit_or_warning_filters():
    before_pixels, before_filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    decode_image(png_bytes((30, 20)), max_pixels=10_000)
    with pytest.raises(ImageError):
        decode_image(png_bytes((300, 200)), max_pixels=10_000)
    with pytest.raises(ImageError):
        decode_image(bomb_png())
    assert Image.MAX_IMAGE_PIXELS == before_pixels and list(warnings.filters) == before_filters


def test_decompression_bomb_is_refused_with_its_size_and_the_limit():
    data = bomb_png(20000, 20000)
    assert len(data) < 100_000  # a tiny file ...
    with pytest.raises(ImageError) as info:
        decode_image(data, name="bomb.png")  # ... claiming 400 million pixels, over the 50 million default
    msg = str(info.value)
    assert msg.startswith("bomb.png:") and "400,000,000 pixels" in msg and f"{get_settings().max_image_pixels:,}" in msg


def test_pillow_own_bomb_guard_is_reported_as_image_error(monkeypatch):
    """Above twice Pillow's MAX_IMAGE_PIXELS Pillow itself raises at open; a generous per-call limit cannot lift that."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageError, match="too large.*decompression bomb"):
        decode_image(png_bytes((300, 200)), name="x.png", max_pixels=10**9)


def test_bomb_warning_made_an_error_by_the_process_is_still_a_clear_image_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # 6,000 pixels: Pillow warns (not over 2x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="too large"):
            decode_image(png_bytes((100, 60)), name="w.png", max_pixels=10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert decode_image(png_bytes((100, 60)), max_pixels=10**6).size == (100, 60)


def test_upload_over_the_size_limit_is_refused_naming_the_limit(monkeypatch):
    monkeypatch.setenv("ADLENS_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    try:
        big = png_bytes((20, 20)) + b"\0" * (1024 * 1024)
        with pytest.raises(ImageError) as info:
            decode_image(big, name="huge.png")
        assert "huge.png is too large" in str(info.value) and "limit of 1 MB" in str(info.value)
        assert decode_image(png_bytes((20, 20))).size == (20, 20)
    finally:
        monkeypatch.delenv("ADLENS_MAX_UPLOAD_MB")
        get_settings.cache_clear()


VALID = [png_bytes((24, 18), seed=3), _jpeg()]


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), mutated_image()))
def test_decoder_returns_rgb_or_image_error_for_any_bytes(data):
    try:
        decoded = decode_image(data, name="fuzz", max_pixels=1_000_000)
    except ImageError as exc:
        assert str(exc).startswith("fuzz")
        return
    assert isinstance(decoded, DecodedImage) and decoded.image.mode == "RGB"
    assert decoded.size[0] >= 1 and decoded.size[1] >= 1 and decoded.size[0] * decoded.size[1] <= 1_000_000
