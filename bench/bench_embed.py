"""Ad embedding speed: ads per second with ION at the paper's sizes, regions cached and end to end from raw images.

* cached: the regions' features are already stored (the usual case: the detector ran at import); the
  ION forward pass over tokenized texts (16 words) and k1 = 20 regions of the offline detector's
  1280-d features, batches of 256, random weights (speed does not depend on them).
* end to end: decode a 1024x1024 creative, run the offline detector (selective search + EfficientNet-Lite0),
  then embed. The paper embedded 1M ads in 3.8 h (73 ads/s) on one machine.
Device: the configured one (CPU on the build machines; CUDA when present).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _ion(region_dim: int, device: str):
    import torch

    from core.embed.ion import ION, IONConfig

    torch.manual_seed(0)
    return ION(IONConfig(vocab_size=5000, region_dim=region_dim, max_words=16)).eval().to(device)


def _dataset(n: int, region_dim: int, seed: int = 0):
    import torch

    from core.embed.data import EmbedDataset

    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(rng.integers(2, 5000, size=(n, 16))).long()
    mask = torch.ones(n, 16, dtype=torch.bool)
    regions = torch.from_numpy(rng.standard_normal((n, 20, region_dim)).astype(np.float32))
    conf = torch.from_numpy(np.sort(rng.random((n, 20)).astype(np.float32), axis=1)[:, ::-1].copy())
    return EmbedDataset(tokens, mask, torch.full((n, 16), -100), regions, torch.ones(n, 20, dtype=torch.bool), conf,
                        torch.zeros(n, dtype=torch.long))


def _region_bench():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("adlens_bench_regions_for_embed", Path(__file__).with_name("bench_regions.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from core.device import resolve_device
    from core.embed.pipeline import embed_ads
    from core.embed.text import Vocabulary
    from core.embed.train import embed
    from core.regions.offline import FEATURE_DIM, OfflineDetector

    if not torch.cuda.is_available():
        torch.set_flush_denormal(True)
    device = resolve_device().name
    model = _ion(FEATURE_DIM, device)
    n = 512 if quick else 4096
    ds = _dataset(n, FEATURE_DIM)
    embed(model, ds.subset(list(range(32))), device=device)  # warm-up
    started = time.perf_counter()
    vectors = embed(model, ds, batch_size=256, device=device)
    cached_s = time.perf_counter() - started
    cached_rate = n / cached_s

    creative = _region_bench().creative  # the same 1024x1024 test creative as the region benchmark
    n_images = 2 if quick else 8
    images = [creative(seed) for seed in range(n_images)]
    detector = OfflineDetector(device)
    detector.detect(images[:1])  # warm-up
    vocab = Vocabulary.build([["fresh", "espresso", "coffee"]])
    started = time.perf_counter()
    results = [detector.detect([img])[0] for img in images]
    detect_s = time.perf_counter() - started
    e2e = embed_ads(model, vocab, ["Fresh espresso, roasted today"] * n_images, [r.features for r in results],
                    [r.confidences for r in results], device=device)
    e2e_s = time.perf_counter() - started
    return {
        "device": device, "model": "ION (d_model 128, 4 layers, 4 heads, k1 20, k2 10, 16 words, 1280-d regions)",
        "cached": {"ads": n, "seconds": round(cached_s, 3), "ads_per_s": round(cached_rate, 1),
                   "hours_per_1m_ads": round(1e6 / cached_rate / 3600, 2), "dim": int(vectors.shape[1])},
        "end_to_end": {"ads": n_images, "seconds": round(e2e_s, 3), "ads_per_s": round(n_images / e2e_s, 2),
                       "detect_s_per_ad": round(detect_s / n_images, 3), "hours_per_1m_ads": round(1e6 / (n_images / e2e_s) / 3600, 1),
                       "dim": int(e2e.shape[1])},
        "paper": {"ads_per_s": round(1e6 / (3.8 * 3600), 1), "note": "1M ads in 3.8 h on one machine (ION section 4.6)"},
    }


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    c, e = result["cached"], result["end_to_end"]
    return [(f"ION embedding, regions cached ({c['ads']:,} ads, {result['device']})",
             f"{c['ads_per_s']:,} ads/s (1M ads in {c['hours_per_1m_ads']} h; paper: 3.8 h)"),
            ("ION embedding from raw images (offline detector)", f"{e['ads_per_s']} ads/s ({e['detect_s_per_ad']} s detection per ad)")]
