"""A tiny demo catalog with deterministic stand-in region features, and one small trained ION run, for the retrieval tests.

The stand-in "detector" cuts each creative into the full image and its four quadrants and describes each
crop by its 4x4 RGB thumbnail (48-d): cheap, deterministic, and derived from the real pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from core import retrieval
from core.retrieval import RegionData
from core.retrieval import regions as region_reads

FAKE_KEY = "fake-quadrants/1|conf=0.05|iou=0.5|max=50"
_STATE: dict = {}


def fake_image_regions(image: Image.Image) -> RegionData:
    image = image.convert("RGB")
    w, h = image.size
    boxes = np.array([[0, 0, w, h], [0, 0, w / 2, h / 2], [w / 2, 0, w, h / 2], [0, h / 2, w / 2, h], [w / 2, h / 2, w, h]], np.float32)
    feats = np.stack([np.asarray(image.crop(tuple(int(v) for v in b)).resize((4, 4)), np.float32).reshape(-1) / 255.0 for b in boxes])
    conf = np.array([0.9, 0.7, 0.6, 0.5, 0.4], np.float32)
    return RegionData(boxes, conf, feats.astype(np.float32), ["whole", "top-left", "top-right", "bottom-left", "bottom-right"])


def fake_regions_for_ads(ad_ids, image_hashes, detector, *, engine, progress=None):  # noqa: ARG001
    from sqlalchemy import select

    from core.filestore import resolve
    from core.store import Ad, session_scope

    cache = _STATE.setdefault("regions", {})
    with session_scope(engine) as s:
        paths = dict(s.execute(select(Ad.image_hash, Ad.image_path).where(Ad.id.in_(list(ad_ids)))).all())
    for image_hash, rel in paths.items():
        if image_hash not in cache:
            with Image.open(resolve(rel)) as im:
                cache[image_hash] = fake_image_regions(im)
    return FAKE_KEY, 48, {h: cache[h] for h in image_hashes if h in cache}


def fake_regions_for_image(image, detector, key=None):  # noqa: ARG001
    return fake_image_regions(image)


def patch_regions(monkeypatch) -> None:
    monkeypatch.setattr(region_reads, "regions_for_ads", fake_regions_for_ads)  # where every caller looks them up
    monkeypatch.setattr(region_reads, "regions_for_image", fake_regions_for_image)


TINY_ION = {"epochs": 4, "d_model": 32, "layers": 1, "heads": 2, "k1": 5, "k2": 3, "seed": 0}


def world(tmp_root: Path, monkeypatch) -> dict:
    """Build (once per process) the 120-ad demo world and a tiny ION run; point ADLENS_HOME at it."""
    from core.config import get_settings
    from core.offline import network_status

    if "home" not in _STATE:
        _STATE["home"] = tmp_root / "retrieval-home"
    monkeypatch.setenv("ADLENS_HOME", str(_STATE["home"]))
    monkeypatch.delenv("ADLENS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    network_status.cache_clear()
    patch_regions(monkeypatch)
    if "ion" not in _STATE:
        from core.demo import build_world
        from core.store import get_engine

        build_world(n_ads=120, n_users=300, seed=0, engine=get_engine())
        _STATE["ion"] = retrieval.train_run("ion", (), TINY_ION)
    return {"home": _STATE["home"], "ion": _STATE["ion"], "env": {**os.environ}}
