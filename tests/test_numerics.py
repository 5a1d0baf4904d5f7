"""The library-backed numerics against references written out here: AUC / ROC (scikit-learn), the bootstrap interval
(scipy), Platt scaling (scikit-learn LogisticRegression), the word-vector PCA (scikit-learn) and the users' one-hot
encoding (pandas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.matching.evaluate import _mann_whitney_auc, auc, bootstrap_auc, evaluate_scores, roc_curve, thinned_roc


def _pairwise_auc(scores, labels) -> float:
    """P(positive > negative) + 1/2 P(tie), over every (positive, negative) pair."""
    s, y = np.asarray(scores, float), np.asarray(labels).astype(bool)
    diff = s[y][:, None] - s[~y][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _scored(n: int, seed: int, decimals: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    s = y * 0.7 + rng.standard_normal(n)
    return (np.round(s, decimals) if decimals is not None else s), y  # rounded: many ties


@pytest.mark.parametrize("seed", range(4))
def test_auc_and_the_bootstrap_statistic_equal_the_pairwise_definition(seed):
    s, y = _scored(300, seed)
    expected = _pairwise_auc(s, y)
    assert auc(s, y) == pytest.approx(expected, abs=1e-12)
    y = y.astype(bool)
    assert float(_mann_whitney_auc(s[y], s[~y])) == pytest.approx(expected, abs=1e-12)
    # vectorised over resamples, as scipy.stats.bootstrap calls it
    rng = np.random.default_rng(seed)
    pos = rng.choice(s[y], (5, y.sum()))
    neg = rng.choice(s[~y], (5, (~y).sum()))
    got = _mann_whitney_auc(pos, neg, axis=-1)
    assert got.shape == (5,)
    one_by_one = [auc(np.r_[p, n], np.r_[np.ones(len(p)), np.zeros(len(n))]) for p, n in zip(pos, neg, strict=True)]
    assert got == pytest.approx(one_by_one, abs=1e-12)


def test_roc_curve_and_its_thinned_form():
    s, y = _scored(2000, 0, decimals=None)
    fpr, tpr, thr = roc_curve(s, y)
    assert len(fpr) == len(np.unique(s)) + 1 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(s, y), abs=1e-12)
    # dropping collinear points keeps the polyline (same area)
    f2, t2, _ = roc_curve(s, y, drop_intermediate=True)
    assert len(f2) < len(fpr) and np.trapezoid(t2, f2) == pytest.approx(auc(s, y), abs=1e-12)
    thin_f, thin_t = thinned_roc(s, y, 101)
    assert len(thin_f) <= 101 and (thin_f[0], thin_t[0], thin_f[-1], thin_t[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(thin_t, thin_f) == pytest.approx(auc(s, y), abs=0.01)
    small_f, small_t = thinned_roc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 101)  # fewer corners than the limit: all kept
    assert small_f.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0] and small_t.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_audience_metrics_use_the_same_auc_and_curve():
    from core.audience.metrics import auc_and_roc

    s, y = _scored(5000, 1, decimals=None)
    value, roc = auc_and_roc(y, s, max_points=200)
    assert value == auc(s, y)
    f, t = thinned_roc(s, y, 200)
    assert roc["fpr"] == [round(float(v), 5) for v in f] and roc["tpr"] == [round(float(v), 5) for v in t]
    assert len(roc["fpr"]) == 200


def test_bootstrap_interval_properties():
    s, y = _scored(400, 2)
    value = auc(s, y)
    low, high = bootstrap_auc(s, y, n_boot=500, seed=3)
    assert low < value < high and 0.05 < high - low < 0.2
    low90, high90 = bootstrap_auc(s, y, n_boot=500, seed=3, level=0.90)
    assert low <= low90 < high90 <= high  # same resamples (same seed), narrower level
    assert bootstrap_auc(s, y, n_boot=500, seed=4) != (low, high)  # another seed, other resamples
    # the interval's width shrinks like 1 / sqrt(n): 4x the data, about half the width
    s4, y4 = _scored(1600, 2)
    low4, high4 = bootstrap_auc(s4, y4, n_boot=500, seed=3)
    assert 0.35 < (high4 - low4) / (high - low) < 0.65


def test_bootstrap_degenerate_cases_are_defined():
    # all scores equal: every resample's AUC is 1/2 (BCa would be NaN here)
    assert bootstrap_auc([0.3] * 6, [1, 1, 1, 0, 0, 0], n_boot=100) == (0.5, 0.5)
    # one positive: it is in every resample, the negatives are resampled
    s, y = [0.5, 0.1, 0.7, 0.3, 0.9], [1, 0, 0, 0, 0]
    low, high = bootstrap_auc(s, y, n_boot=400)
    assert 0.0 <= low < auc(s, y) < high <= 1.0 and math.isfinite(low)
    # one negative, likewise; with one of each the interval is the AUC itself
    assert bootstrap_auc([0.5, 0.1, 0.7, 0.3], [0, 1, 1, 1], n_boot=400) == pytest.approx((0.0, 1.0))
    assert bootstrap_auc([0.2, 0.8], [0, 1]) == (1.0, 1.0)
    assert bootstrap_auc([0.2, 0.2], [0, 1]) == (0.5, 0.5)
    for labels in ([1, 1, 1], [0, 0, 0], []):
        with pytest.raises(ValueError, match="at least one positive and one negative"):
            bootstrap_auc([0.1, 0.2, 0.3][:len(labels)], labels)
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        auc([0.1, 0.2, 0.3], [0, 1])


def test_evaluate_scores_interval_and_curve():
    s, y = _scored(300, 5)
    out = evaluate_scores([f"p{i % 7}" for i in range(len(s))], s, y, n_boot=200, seed=1)
    low, high = bootstrap_auc(s, y, n_boot=200, seed=1)
    assert (out["auc"], out["auc_low"], out["auc_high"]) == (round(auc(s, y), 4), round(low, 4), round(high, 4))
    assert len(out["roc"]["fpr"]) <= 101 and out["roc"]["fpr"][-1] == 1 and out["roc"]["tpr"][0] == 0


# -- Platt scaling ---------------------------------------------------------------------------------
def _platt_targets(y: np.ndarray) -> np.ndarray:
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    return np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


@pytest.mark.parametrize("n, slope, shift", [(40, 6.0, -3.0), (500, 2.0, 0.5), (5000, 10.0, -8.0)])
def test_platt_fit_solves_the_likelihood_equations(n, slope, shift):
    from core.matching.base import platt_fit

    rng = np.random.default_rng(n)
    s = rng.uniform(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(slope * s + shift)))).astype(int)
    a, b = platt_fit(s, y)
    residual = 1 / (1 + np.exp(-(a * s + b))) - _platt_targets(y)
    assert abs(residual.sum()) < 1e-6 and abs((residual * s).sum()) < 1e-6  # gradient of the log-likelihood = 0


def test_platt_fit_separable_and_degenerate_inputs():
    from core.matching.base import platt_fit

    # separable: Platt's smoothed targets keep (a, b) finite (plain maximum likelihood would diverge)
    s, y = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), np.array([0, 0, 0, 1, 1, 1])
    a, b = platt_fit(s, y)
    p = 1 / (1 + np.exp(-(a * s + b)))
    assert a > 0 and 0.1 < p.min() < 0.2 and 0.8 < p.max() < 0.9  # targets t+ = 4/5, t- = 1/5: far from 0 and 1
    assert p == pytest.approx(1 - p[::-1], abs=1e-6)  # symmetric data, symmetric fit
    assert abs((p - _platt_targets(y)).sum()) < 1e-6 and abs(((p - _platt_targets(y)) * s).sum()) < 1e-6
    # every score equal: the score carries nothing, the probability is the mean target
    a, b = platt_fit(np.full(10, 0.3), np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]))
    mean_t = (3 * 4 / 5 + 7 * 1 / 9) / 10
    assert a == 0.0 and b == pytest.approx(math.log(mean_t / (1 - mean_t)))
    assert platt_fit(np.array([0.2, 0.8]), np.array([1, 1])) == (1.0, 0.0)
    assert platt_fit(np.zeros(0), np.zeros(0)) == (1.0, 0.0)


# -- word-vector PCA -------------------------------------------------------------------------------
def _word_like(v: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((v, d)) * np.linspace(3, 0.1, d)) @ rng.standard_normal((d, d))).astype(np.float32)


def test_project_is_the_standardised_principal_projection():
    from core.embed.word_vectors import project

    x = _word_like(600, 48)
    y = project(x, 16)
    assert y.shape == (600, 16) and y.dtype == np.float32
    assert y.mean(0) == pytest.approx(np.zeros(16), abs=1e-5)
    cov = np.cov(y.astype(np.float64), rowvar=False, bias=True)
    assert cov == pytest.approx(np.eye(16), abs=1e-4)  # unit variance, decorrelated
    # reference: the top right-singular vectors of the centred data, up to one sign per direction
    xc = x.astype(np.float64) - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ref = xc @ vt[:16].T
    ref /= ref.std(0)
    signs = np.sign((ref * y).sum(0))
    assert np.abs(ref * signs - y).max() < 1e-4


def test_project_sign_is_deterministic_and_row_order_free():
    from core.embed.word_vectors import project

    x = _word_like(300, 32, seed=1)
    y = project(x, 8)
    assert np.array_equal(project(x.copy(), 8), y)
    perm = np.random.default_rng(0).permutation(len(x))
    assert np.abs(project(x[perm], 8) - y[perm]).max() < 1e-4  # the signs follow the directions, not the rows


def test_project_pads_when_there_are_fewer_directions_than_dims():
    from core.embed.word_vectors import project

    y = project(_word_like(5, 12), 20)
    assert y.shape == (5, 20)
    assert np.all(y[:, 12:] == 0)  # D = 12 < 20: padding
    y = project(_word_like(5, 12)[:, :3], 4)
    assert np.all(y[:, 3:] == 0) and y[:, :3].std(0) == pytest.approx(np.ones(3), abs=1e-5)
    # 5 centred points span 4 directions: the 5th has no variance and is left at zero, not scaled up
    y = project(_word_like(5, 12), 8)
    assert y[:, :4].std(0) == pytest.approx(np.ones(4), abs=1e-5) and np.abs(y[:, 4:]).max() < 1e-6


def test_init_word_embeddings_rows():
    import torch

    from core.embed.text import PAD_ID
    from core.embed.word_vectors import init_word_embeddings

    emb = torch.nn.Embedding(8, 4)
    torch.manual_seed(0)
    init_word_embeddings(emb, ["<pad>", "<unk>", "tea", "coffee", "shoes", "boots", "apple", "pear"])
    w = emb.weight.detach().numpy()
    assert np.all(w[PAD_ID] == 0)
    assert w[2:].std(0) == pytest.approx(np.ones(4), abs=1e-5)
    assert np.corrcoef(w[2:], rowvar=False) == pytest.approx(np.eye(4), abs=1e-4)


# -- one-hot user features -------------------------------------------------------------------------
def test_one_hot_columns_order_and_values():
    from core.audience.features import encode_features

    fm = encode_features(
        ["a", "b", "c", "d"],
        [{"size": 3, "city": "x", "vip": True, "spend": 1.5}, {"size": 3.0, "city": "y", "spend": float("nan")},
         {"size": "3", "vip": False, "spend": 2.5}, {"size": 10, "city": "x", "spend": 4.0}],
        max_categories=2,
    )
    # columns by sorted name; values sorted within a column; 3, 3.0 and "3" one category; "spend" has 3 distinct
    # numbers > max_categories=2: numeric (NaN where missing)
    assert fm.columns == ["city=x", "city=y", "size=10", "size=3", "spend", "vip=False", "vip=True"]
    np.testing.assert_array_equal(fm.X, np.array([[1, 0, 0, 1, 1.5, 0, 1], [0, 1, 0, 1, np.nan, 0, 0],
                                                  [0, 0, 0, 1, 2.5, 1, 0], [1, 0, 1, 0, 4.0, 0, 0]], np.float32))
    assert fm.X.dtype == np.float32 and fm.X.flags["C_CONTIGUOUS"]


def test_one_hot_matches_the_demo_population_columns():
    from core.audience.features import encode_features
    from core.demo.population import COLUMNS, feature_names

    users = [{col: values[(i + j) % len(values)] for j, (col, values) in enumerate(COLUMNS.items())} for i in range(12)]
    fm = encode_features([f"u{i}" for i in range(12)], users)
    assert fm.columns == [f"{col}={value}" for col in sorted(COLUMNS) for value in sorted(COLUMNS[col])]
    assert sorted(fm.columns) == sorted(feature_names())
    assert np.all(fm.X.sum(1) == len(COLUMNS))  # one hot per column
    index = {name: j for j, name in enumerate(fm.columns)}
    for i, user in enumerate(users):
        assert all(fm.X[i, index[f"{col}={value}"]] == 1 for col, value in user.items())
