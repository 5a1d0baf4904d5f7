"""Issue 14 follow-up: a damaged image-vector cache entry (core.matching.features) is recomputed, not refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def fake_backbone(home, monkeypatch):
    """EfficientNet stand-in: each image's vector is its mean colour, repeated; counts the images it embeds."""
    import core.embed.baselines as baselines

    calls: list[int] = []

    def embed(images, device="cpu", **_kw):
        calls.append(len(images))
        return np.stack([np.repeat(np.asarray(im, np.float32).mean((0, 1)) / 255.0, 4) for im in images])

    monkeypatch.setattr(baselines, "image_embeddings", embed)
    return calls


def _cache_file(image_hash: str):
    from core.filestore import resolve
    from core.matching.features import _image_vec_key

    key = _image_vec_key(image_hash)
    return resolve(f"matching/{key[:2]}/{key}.npy")


IMAGES = {"a" * 64: Image.new("RGB", (8, 8), (255, 0, 0)), "b" * 64: Image.new("RGB", (8, 8), (0, 0, 255))}
RED = np.repeat(np.array([1.0, 0.0, 0.0], np.float32), 4)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _wrong_shape(path):
    from core.filestore import seal

    np.save(path, np.zeros((2, 2), np.float32))  # a readable, sealed array that is not a vector
    seal(path)


def _not_finite(path):
    from core.filestore import seal

    np.save(path, np.full(12, np.nan, np.float32))
    seal(path)


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _wrong_shape, _not_finite])
def test_a_damaged_entry_is_recomputed_and_rewritten(fake_backbone, damage):
    from core.filestore import check_sealed, forget_verified
    from core.matching.features import image_vectors

    first = image_vectors(dict(IMAGES))
    assert fake_backbone == [2] and np.allclose(first["a" * 64], RED)
    again = image_vectors(dict(IMAGES))
    assert fake_backbone == [2] and np.allclose(again["a" * 64], RED)  # both from the cache
    path = _cache_file("a" * 64)
    damage(path)
    forget_verified()
    healed = image_vectors(dict(IMAGES))
    assert fake_backbone == [2, 1]  # only the damaged entry was computed again
    assert np.allclose(healed["a" * 64], RED) and np.allclose(healed["b" * 64], first["b" * 64])
    check_sealed(path, "the rewritten entry", "-")  # sealed again, and it matches its seal
    assert np.allclose(np.load(path), RED)
    image_vectors(dict(IMAGES))
    assert fake_backbone == [2, 1]  # and read from the cache from then on
