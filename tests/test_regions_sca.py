"""Semantic-clue re-weighting: k1/k2 bookkeeping, ordering, the zero-shot MiniLM scorer, keywords."""

from __future__ import annotations

import numpy as np
import pytest

from core.regions.base import DetectionResult
from core.regions.clues import ClueScorer, ZeroShotClueScorer, rerank
from core.regions.keywords import has_words, keywords


def _dets(labels: list[str], conf: list[float]) -> DetectionResult:
    n = len(labels)
    boxes = np.array([[i, i, i + 10, i + 10] for i in range(n)], np.float32)
    feats = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return DetectionResult(boxes=boxes, confidences=np.array(conf, np.float32), labels=labels, features=feats,
                           image_size=(100, 100), detector="test", backend="test", device="cpu")


class LabelLengthScorer:
    """A deterministic scorer for the bookkeeping tests: longer label = more relevant."""

    name = "label length"

    def score(self, text: str, detections: DetectionResult) -> np.ndarray:  # noqa: ARG002
        return np.array([len(label) for label in detections.labels], np.float32)


def test_rerank_keeps_k2_of_k1_in_clue_order():
    labels = ["a" * (i % 7 + 1) + str(i) for i in range(30)]
    conf = list(np.linspace(0.9, 0.1, 30)[np.random.default_rng(1).permutation(30)])
    dets = _dets(labels, conf)
    assert isinstance(LabelLengthScorer(), ClueScorer)
    sca = rerank(dets, "anything", k1=20, k2=10, scorer=LabelLengthScorer())
    assert len(sca.regions) == 30
    by_conf = np.argsort(-np.array(conf), kind="stable")
    assert [r.label for r in sca.regions] == [labels[i] for i in by_conf]  # detector order = confidence order
    scored = [r for r in sca.regions if r.rank_after is not None]
    assert len(scored) == 20 and all(r.rank_before < 20 for r in scored)
    assert all(r.clue is None and not r.kept for r in sca.regions[20:])
    assert sorted(r.rank_after for r in scored) == list(range(20))
    kept = sca.kept()
    assert len(kept) == 10 and [r.rank_after for r in kept] == list(range(10))
    clues = [r.clue for r in sca.after()]
    assert clues == sorted(clues, reverse=True)
    # ties keep the detector order
    for a, b in zip(sca.after(), sca.after()[1:], strict=False):
        if a.clue == b.clue:
            assert a.rank_before < b.rank_before
    assert sum(r.change for r in scored) == 0
    assert sca.to_dict()["regions"][0]["change"] == sca.regions[0].rank_before - sca.regions[0].rank_after


def test_rerank_with_fewer_boxes_than_k1_and_bad_k():
    dets = _dets(["x", "yyy", "zz"], [0.9, 0.5, 0.7])
    sca = rerank(dets, "t", k1=20, k2=2, scorer=LabelLengthScorer())
    assert [r.label for r in sca.after()] == ["yyy", "zz", "x"]
    assert [r.label for r in sca.kept()] == ["yyy", "zz"]
    # confidence order x (0.9), zz (0.7), yyy (0.5); clue order yyy, zz, x
    assert [r.label for r in sca.regions] == ["x", "zz", "yyy"]
    assert [r.change for r in sca.regions] == [-2, 0, 2]
    with pytest.raises(ValueError):
        rerank(dets, "t", k1=0, k2=1, scorer=LabelLengthScorer())


def test_zero_shot_scorer_prefers_the_named_object():
    dets = _dets(["football helmet", "coffee mug", "Egyptian cat", "space shuttle", "backpack"], [0.9, 0.8, 0.7, 0.6, 0.5])
    scorer = ZeroShotClueScorer()
    s = scorer.score("A fresh cup of coffee every morning", dets)
    assert s.shape == (5,) and s.dtype == np.float32
    assert int(np.argmax(s)) == 1
    s = scorer.score("Toy rocket launch kit for kids", dets)
    assert int(np.argmax(s)) == 3
    sca = rerank(dets, "cute kitten food", k1=5, k2=2, scorer=scorer)
    assert sca.kept()[0].label == "Egyptian cat" and sca.kept()[0].change == 2
    # no words: all scores 0, the detector order stays
    assert not scorer.score("🎉🎉 !!! 2024", dets).any()
    assert [r.rank_after for r in rerank(dets, "🎉", k1=5, k2=3, scorer=scorer).regions] == [0, 1, 2, 3, 4]


def test_keywords():
    assert keywords("Buy the new Spark bracelet for your wrist now! 🎉 50% off") == ["spark", "bracelet", "wrist"]
    assert keywords("Coffee, coffee and COFFEE beans") == ["coffee", "beans"]
    zh = keywords("闪耀手链，点亮你的手腕")
    assert "手链" in zh and "手腕" in zh and "你" not in zh
    assert keywords("") == [] and keywords("🎉🔥 123 !!") == []
    assert has_words("Tea 🍵") and has_words("茶") and not has_words("🎉 123 !!")
