"""The visible-category oracle and the per-group AUCs (core.matching.ceiling), on hand-built pairs."""

from __future__ import annotations

import numpy as np
import pytest

from core.ingest.adrows import detect_lang
from core.matching.ceiling import group_masks, grouped_auc, oracle_scores
from core.matching.triples import Triple

# three creatives: a sells apples and shows a tie; b sells boots and shows grapes; c sells grapes (held-out) alone
VISIBLE = {"a": {"apples", "ties"}, "b": {"boots", "grapes"}, "c": {"grapes"}}
PHRASE_CATS = {"apples": {"apples"}, "ties": {"ties"}, "boots": {"boots"}, "grapes": {"grapes"}, "葡萄": {"grapes"},
               "sneakers": {"sneakers"}}
HELDOUT = {"grapes"}
# the judgement-set pattern: product (relevant), distractor (visible, irrelevant), absent (irrelevant)
TRIPLES = [
    Triple("apples", "a", 1), Triple("ties", "a", 0), Triple("sneakers", "a", 0),
    Triple("boots", "b", 1), Triple("grapes", "b", 0), Triple("apples", "b", 0),
    Triple("grapes", "c", 1), Triple("葡萄", "c", 1), Triple("boots", "c", 0),
]


def test_oracle_scores_visibility_and_unknowns():
    scores = oracle_scores(TRIPLES + [Triple("unknown phrase", "a", 0), Triple("apples", "no-truth", 0)], PHRASE_CATS, VISIBLE)
    assert scores[:9].tolist() == [1, 1, 0, 1, 1, 0, 1, 1, 0]
    assert np.isnan(scores[9]) and np.isnan(scores[10])


def test_ceiling_is_perfect_on_absent_and_half_on_visible_negatives():
    labels = np.array([t.label for t in TRIPLES])
    masks = group_masks(TRIPLES, PHRASE_CATS, HELDOUT, VISIBLE)
    assert masks["absent"].tolist() == [True, False, True, True, False, True, True, True, True]
    assert masks["visible"].tolist() == [True, True, False, True, True, False, True, True, False]
    assert masks["held-out"].tolist() == [False, False, False, False, True, False, True, True, False]
    assert masks["zh"].tolist() == [False] * 7 + [True, False]
    ceiling = grouped_auc(oracle_scores(TRIPLES, PHRASE_CATS, VISIBLE), labels, masks)
    assert ceiling["absent"]["auc"] == 1.0
    assert ceiling["visible"]["auc"] == 0.5  # every visible negative ties with every positive
    # all: 4 positives x 5 negatives; the 3 absent negatives rank below every positive, the 2 visible ones tie with
    # all 4 positives -> (12 + 0.5 * 8) / 20
    assert ceiling["all"]["auc"] == pytest.approx(0.8)
    assert ceiling["all"]["positives"] == 4 and ceiling["all"]["negatives"] == 5
    assert ceiling["zh"]["auc"] is None  # one class only
    # a scorer that ranks by the wrong signal scores below the oracle on the absent pairs
    anti = grouped_auc(1.0 - oracle_scores(TRIPLES, PHRASE_CATS, VISIBLE), labels, masks)
    assert anti["absent"]["auc"] == 0.0


def test_without_ground_truth_only_phrase_groups():
    masks = group_masks(TRIPLES, PHRASE_CATS, HELDOUT, {})
    assert "absent" not in masks and "visible" not in masks
    assert {"all", "seen", "held-out", "en", "zh", "en seen", "en held-out"} <= set(masks)


def test_language_of_a_phrase():  # the groups' en / zh split
    assert detect_lang("running shoes") == "en" and detect_lang("咖啡") == "zh" and detect_lang("iPhone 手机") == "zh"
