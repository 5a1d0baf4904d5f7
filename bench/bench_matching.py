"""Creative selection speed: scoring 100 creatives for one phrase, per scorer (target < 0.2 s on CPU).

Regions and image vectors are taken as cached (the Creative objects hold them, as core.matching.features
loads them from the caches): 10 regions of 1280-d features per creative (the offline detector's size).
The models have their production sizes (LXMERT-small: hidden 384, 3/1/1 layers; CLIP-style heads over regions;
the early-fusion sequence Transformer over regions; ION at the paper's sizes) with untrained weights: scoring costs
the same as with trained ones.
The phrase is encoded inside the timed call (MiniLM for CLIP / early fusion, WordPieces for LXMERT, ION text).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

TARGET_SECONDS = 0.2


def _creatives(n: int, region_dim: int = 1280, seed: int = 0):
    from core.matching.features import Creative

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        boxes = np.sort(rng.random((10, 4)).astype(np.float32).reshape(10, 2, 2), axis=1).reshape(10, 4)[:, [0, 2, 1, 3]]
        vec = rng.standard_normal(1280).astype(np.float32)
        out.append(Creative(f"bench-{i}", vec / np.linalg.norm(vec), rng.random((10, region_dim)).astype(np.float32), boxes,
                            np.sort(rng.random(10).astype(np.float32))[::-1].copy(), text="fresh espresso beans, morning coffee",
                            boxes_px=boxes * 512, labels=["region"] * 10, width=512, height=512))
    return out


def _scorers(region_dim: int = 1280) -> dict[str, Any]:
    import torch

    from core.embed.ion import ION, IONConfig
    from core.embed.text import Vocabulary
    from core.matching.clip import ClipScorer
    from core.matching.early_fusion import EarlyFusionScorer
    from core.matching.ion_scorer import IonScorer
    from core.matching.lxmert import LxmertScorer

    torch.manual_seed(0)
    vocab = Vocabulary.build([["fresh", "espresso", "beans", "morning", "coffee"]])
    return {"lxmert": LxmertScorer(region_dim), "clip": ClipScorer("offline"), "early": EarlyFusionScorer(),
            "ion": IonScorer(ION(IONConfig(vocab_size=len(vocab), region_dim=region_dim)), vocab, source="bench")}


def run(quick: bool = False) -> dict[str, Any]:
    from core.device import resolve_device
    from core.matching.base import phrase_vectors

    device = resolve_device()
    n, repeats = 100, 2 if quick else 5
    creatives = _creatives(n)
    phrase_vectors(["warm-up"])  # load MiniLM once (a server keeps it loaded)
    results: dict[str, Any] = {"creatives": n, "device": device.name, "target_seconds": TARGET_SECONDS, "scorers": {}}
    for name, scorer in _scorers().items():
        scorer.to(device.name).eval()
        scorer.score(["warm up phrase"], creatives[:4])
        times = []
        for r in range(repeats):
            for c in creatives:
                c.extra.pop("ion", None)  # ION embeds the creatives too, every time
            t = time.perf_counter()
            probs = scorer.score([f"espresso coffee {r}"], creatives)
            times.append(time.perf_counter() - t)
        assert probs.shape == (1, n)
        p50 = statistics.median(times)
        results["scorers"][name] = {"p50_seconds": round(p50, 4), "max_seconds": round(max(times), 4), "under_target": p50 < TARGET_SECONDS}
    return results


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    return [(f"scoring {result['creatives']} creatives for one phrase: {name} (regions cached, {result['device']})",
             f"p50 {s['p50_seconds']:.3f} s (target {result['target_seconds']} s)") for name, s in result["scorers"].items()]


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=2))
