"""Weakly labelled triples (splits by phrase, 1:n, hard negatives) and the judgement CSV import."""

from __future__ import annotations

import pytest

from core.ingest.report import ImportRejected
from core.matching.triples import build_weak_triples, read_judgements, similar_categories
from tests.matching_world import CATEGORIES, build_catalog


@pytest.fixture
def catalog(engine):
    build_catalog(engine)
    return engine


def _category(ad_id: str) -> str:
    return ad_id.rsplit("-", 1)[0]


def test_no_phrase_leaks_across_splits_and_test_uses_test_ads(catalog):
    ts = build_weak_triples(catalog, n_pos=8, n_neg=3, n_hard=3, seed=1)
    splits_of: dict[str, set[str]] = {}
    for t in ts.triples:
        splits_of.setdefault(t.phrase, set()).add(t.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {t.split for t in ts.triples} >= {"train", "test"}
    train_phrases = {t.phrase for t in ts.part("train", "val")}
    assert not train_phrases & {t.phrase for t in ts.part("test")}
    test_ads = {f"{c}-{i}" for c in CATEGORIES for i in range(6) if CATEGORIES[c][5] or i >= 4}
    assert all(t.ad_id in test_ads for t in ts.part("test"))
    assert all(t.ad_id not in test_ads for t in ts.part("train", "val"))
    # every phrase naming the held-out category is a test phrase
    for phrase in ("grapes", "葡萄", "vineyard"):
        assert ts.phrase_split[phrase] == "test"
    assert ts.summary()["triples"] == len(ts.triples)


def test_validation_pairs_new_phrases_with_new_creatives(catalog):
    """Validation phrases meet validation creatives only, training never shows one, and the test triples do not move."""
    val_ads = {f"{c}-3" for c in CATEGORIES if not CATEGORIES[c][5]}  # matching_world: creative 3 of a seen category
    for seed in range(4):
        ts = build_weak_triples(catalog, seed=seed)
        old = build_weak_triples(catalog, seed=seed, val_creatives=False)
        assert ts.part("test") == old.part("test")
        assert not {t.ad_id for t in ts.part("train")} & val_ads
        assert {t.ad_id for t in ts.part("val")} <= val_ads
        assert {t.phrase for t in ts.part("val")} <= {t.phrase for t in old.part("val")}
        if old.part("val"):
            assert any(t.ad_id not in val_ads for t in old.part("val"))  # before: validation met training creatives


def test_one_phrase_many_creatives_and_hard_negatives(catalog):
    ts = build_weak_triples(catalog, n_pos=20, n_neg=2, n_hard=4, seed=0)
    fruit = [t for t in ts.triples if t.phrase == "fruit"]
    assert set(ts.phrase_categories["fruit"]) == {"apples", "bananas", "grapes"}
    positives = [t for t in fruit if t.label == 1]
    assert len(positives) > 2  # 1:n
    assert {_category(t.ad_id) for t in positives} <= {"apples", "bananas", "grapes"}
    assert len({_category(t.ad_id) for t in positives}) >= 2
    for t in ts.triples:
        cats = set(ts.phrase_categories[t.phrase])
        group = {CATEGORIES[c][1] for c in cats}
        if t.label == 1:
            assert _category(t.ad_id) in cats
        else:
            assert _category(t.ad_id) not in cats
        if t.kind == "hard":  # hard negatives come from the same group as the phrase's categories
            assert CATEGORIES[_category(t.ad_id)][1] in group
    sneakers = [t for t in ts.triples if t.phrase == "sneakers" and t.kind == "hard"]
    assert sneakers and {_category(t.ad_id) for t in sneakers} <= {"boots", "ties"}


def test_same_seed_same_triples_and_ad_subset(catalog):
    a, b = build_weak_triples(catalog, seed=3), build_weak_triples(catalog, seed=3)
    assert a.triples == b.triples
    sub = build_weak_triples(catalog, ad_ids=[f"apples-{i}" for i in range(6)] + [f"ties-{i}" for i in range(6)], seed=3)
    assert {_category(t.ad_id) for t in sub.triples} <= {"apples", "ties"}


def test_similar_categories_without_groups_use_minilm_neighbours():
    sim = similar_categories({"sneakers": {}, "running shoes": {}, "pizza": {}, "cheese pizza": {}}, k=1)
    assert sim["sneakers"] == {"running shoes"}
    assert sim["pizza"] == {"cheese pizza"}


def test_judgements_csv_import(catalog, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("phrase,ad_id,label,split\nred fruit,apples-0,1,test\nred fruit,ties-0,no,test\nred fruit,apples-0,1,test\n"
                    "tie,ties-1,relevant,train\n", encoding="utf-8")
    ts = read_judgements(good, catalog)
    assert [(t.phrase, t.ad_id, t.label, t.split) for t in ts.triples] == [
        ("red fruit", "apples-0", 1, "test"), ("red fruit", "ties-0", 0, "test"), ("tie", "ties-1", 1, "train")]
    bad = tmp_path / "bad.csv"
    bad.write_text("phrase,ad_id,label,split\nred fruit,apples-0,1,test\n,apples-1,1,test\nred fruit,nope,1,test\n"
                   "red fruit,apples-2,maybe,test\nred fruit,apples-0,0,test\nred fruit,apples-3,1,train\nok,apples-4,1,dev\n",
                   encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        read_judgements(bad, catalog)
    errors = {(e.row, e.column) for e in err.value.report.errors}
    assert errors == {(3, "phrase"), (4, "ad_id"), (5, "label"), (6, "label"), (7, "split"), (8, "split")}
    assert "unknown ad 'nope'" in err.value.report.summary()
    missing = tmp_path / "missing.csv"
    missing.write_text("query,ad_id\nx,apples-0\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match="missing column"):
        read_judgements(missing, catalog)
    with pytest.raises(FileNotFoundError):
        read_judgements(tmp_path / "absent.csv", catalog)
