"""Evaluation numbers against hand-computed cases: AUC, bootstrap interval, ROC, MAP@10, NDCG@10, calibration, Platt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.matching.base import platt_fit
from core.matching.evaluate import (
    auc,
    average_precision_at_k,
    bootstrap_auc,
    evaluate_scores,
    ndcg_at_k,
    per_phrase_ranking,
    reliability,
    roc_curve,
)


def test_auc_known_cases():
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, 0.1) win, (0.8, 0.4) win -> 3/4
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # ties count one half: pos 0.5 vs neg 0.5 (1/2), pos 0.5 vs neg 0.2 (1) -> 0.75
    assert auc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive and one negative"):
        auc([0.1, 0.2], [1, 1])


def test_bootstrap_interval():
    low, high = bootstrap_auc([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1], n_boot=200)
    assert (low, high) == (1.0, 1.0)  # perfectly separated: every resample too
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = y * 0.5 + rng.standard_normal(400)
    value = auc(s, y)
    low, high = bootstrap_auc(s, y, n_boot=300, seed=1)
    assert low < value < high
    assert 0.03 < high - low < 0.2
    assert bootstrap_auc(s, y, n_boot=300, seed=1) == (low, high)  # deterministic for a seed


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)
    assert thr[1] == 0.8


def test_ranking_metrics_hand_computed():
    # relevant at ranks 1 and 3 of 2 relevant: AP = (1/1 + 2/3) / 2
    assert average_precision_at_k([1, 0, 1, 0], k=10) == pytest.approx((1 + 2 / 3) / 2)
    # NDCG: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3)
    assert ndcg_at_k([1, 0, 1, 0], k=10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k([0, 0, 0], k=10) == 0.0
    out = per_phrase_ranking(["a", "a", "a", "b", "b", "c"], [0.9, 0.5, 0.7, 0.2, 0.8, 0.3], [1, 1, 0, 1, 0, 0])
    # phrase a ranks 1, 0, 1 -> AP (1 + 2/3)/2; phrase b ranks 0, 1 -> AP 1/2; c has no positive (skipped)
    assert out["phrases"] == 2
    assert out["map@10"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    # constant scores: ties rank irrelevant creatives first, whatever the input order
    flat = per_phrase_ranking(["a"] * 4, [0.5] * 4, [1, 1, 0, 0])
    assert flat["map@10"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_reliability_and_ece():
    rel = reliability([0.05, 0.05, 0.95, 0.95], [0, 0, 1, 0], bins=10)
    # bin 0: conf .05, freq 0 -> |0 - .05|; bin 9: conf .95, freq .5 -> .45; weights 1/2 each
    assert rel["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.45)
    assert [b["bin"] for b in rel["curve"]] == [0, 9]


def test_platt_fit_recovers_a_logistic_model():
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(4 * s - 1)))).astype(int)
    a, b = platt_fit(s, y)
    assert a == pytest.approx(4, abs=0.25) and b == pytest.approx(-1, abs=0.15)


def test_evaluate_scores_bundle():
    out = evaluate_scores(["p"] * 4, [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_boot=100)
    assert out["auc"] == 0.75 and out["auc_low"] <= 0.75 <= out["auc_high"]
    assert out["roc"]["fpr"][0] == 0 and out["roc"]["tpr"][-1] == 1
    assert out["positives"] == 2 and out["n"] == 4
