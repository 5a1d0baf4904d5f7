"""Queries that are not catalogue ads: phrases alone and uploaded creatives; ads without regions in training."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from retrieval_world import world

from core.embed.train import TrainConfig, drop_regions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_drop_regions_hides_whole_ads_at_the_asked_rate():
    gen = torch.Generator().manual_seed(0)
    n = 4000
    batch = {"regions": torch.ones(n, 3, 2), "region_mask": torch.ones(n, 3, dtype=torch.bool), "region_conf": torch.ones(n, 3)}
    dropped = drop_regions(batch, 0.25, gen)
    assert abs(float(dropped.float().mean()) - 0.25) < 0.03
    assert not batch["region_mask"][dropped].any() and batch["region_mask"][~dropped].all()
    assert float(batch["regions"][dropped].abs().sum()) == 0.0 and float(batch["region_conf"][dropped].sum()) == 0.0
    assert float(batch["regions"][~dropped].sum()) == (~dropped).sum() * 6
    with pytest.raises(ValueError, match="region_drop"):
        TrainConfig(region_drop=1.0, device="cpu")


@pytest.fixture
def w(tmp_path_factory, monkeypatch):
    return world(tmp_path_factory.getbasetemp(), monkeypatch)


def test_category_phrases_are_names_and_their_own_keywords(w):
    from core.retrieval.queries import category_phrases
    from core.store import Category, get_engine, session_scope

    engine = get_engine()
    phrases = dict(category_phrases(engine))
    with session_scope(engine) as s:
        cats = {c.id: (c.name.lower(), [k.lower() for k in (c.meta or {}).get("keywords", [])]) for c in s.query(Category)}
    assert {name for name, _ in cats.values()} <= set(phrases)
    shared = {k for _, kws in cats.values() for k in kws if sum(k in other for _, other in cats.values()) > 1}
    assert not shared & (set(phrases) - {name for name, _ in cats.values()})  # a keyword of two categories is no phrase
    for phrase, cid in phrases.items():
        assert phrase == cats[cid][0] or phrase in cats[cid][1]


def test_phrase_and_upload_checks_on_a_trained_run(w):
    from core.retrieval.queries import phrase_precision, upload_agreement

    phrases = phrase_precision(w["ion"], k=10)
    assert phrases["phrases"] > 10 and 0.0 <= phrases["precision"] <= 1.0
    shares = [r["share"] for r in phrases["worst"]]
    assert shares == sorted(shares)
    uploads = upload_agreement(w["ion"], k=10, limit=8)
    # a creative uploaded again is detected and embedded exactly as the catalogue ad was: the same top 10
    assert uploads["creatives"] == 8 and uploads["agreement"] == 1.0 and uploads["mean_shared"] == 10.0


def test_query_eval_cli_prints_one_json_object(w):
    from core.retrieval.queries import phrase_precision

    out = subprocess.run([sys.executable, "-m", "core", "query-eval", "--run", str(w["ion"]), "--uploads", "0", "--json"],
                         capture_output=True, text=True, env=w["env"], timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["ok"] and data["uploads"] is None
    assert data["phrases"]["precision"] == phrase_precision(w["ion"], k=10)["precision"]


def test_split_precision_reads_the_index_and_matches_the_stored_test_figures(w):
    from core.errors import RetrievalError
    from core.retrieval.evaluation import split_precision
    from core.runs import get_run

    stored = get_run(w["ion"])["metrics"]
    again = split_precision(w["ion"], "test")
    assert again["n_seen"] == stored["n_seen"] and again["n_unseen"] == stored["n_unseen"]
    assert again["seen"] == pytest.approx(stored["seen"], abs=1e-6) and again["unseen"] == pytest.approx(stored["unseen"], abs=1e-6)
    val = split_precision(w["ion"], "val")
    assert val["n_unseen"] == 0 and val["n_seen"] > 0 and 0.0 <= val["seen"][0] <= 1.0  # held-out categories are test-only
    with pytest.raises(RetrievalError, match="unknown split"):
        split_precision(w["ion"], "holdout")


def test_phrases_are_routed_through_the_catalogue_text_space(w):
    from core.errors import RetrievalError
    from core.retrieval import search
    from core.retrieval.index import load_index
    from core.retrieval.phrases import NEIGHBOURS, load_text_index
    from core.runs import get_run

    run = get_run(w["ion"])
    index, texts = load_index(run), load_text_index(w["ion"])
    assert texts is not None and sorted(texts.ids) == sorted(index.ids)  # every indexed ad has its text vector
    routed = search(w["ion"], phrase="running shoes", k=5)
    seeds = routed["query"]["seed_ads"]
    assert routed["query"]["route"] == "text-neighbours" and len(seeds) == NEIGHBOURS
    expected = index.search(np.mean([index.vector(a) for a in seeds], axis=0, keepdims=True).astype(np.float32), 5)
    assert [r["ad_id"] for r in routed["results"]] == list(expected.ids[0])
    direct = search(w["ion"], phrase="running shoes", k=5, phrase_route="direct")
    assert direct["query"]["route"] == "direct" and "seed_ads" not in direct["query"]
    with pytest.raises(RetrievalError, match="unknown phrase route"):
        search(w["ion"], phrase="running shoes", phrase_route="magic")


def test_an_ad_text_without_a_picture_goes_the_phrase_route(w):
    from core.retrieval import search

    as_text = search(w["ion"], text="running shoes", k=5)
    as_phrase = search(w["ion"], phrase="running shoes", k=5)
    assert as_text["query"]["type"] == "creative" and as_text["query"]["route"] == "text-neighbours"
    assert [r["ad_id"] for r in as_text["results"]] == [r["ad_id"] for r in as_phrase["results"]]


def test_a_query_far_from_every_ad_is_flagged(w):
    from core.retrieval import search
    from core.retrieval.index import load_index
    from core.retrieval.nearest import closeness, neighbour_distances
    from core.runs import get_run

    index = load_index(get_run(w["ion"]))
    typical = neighbour_distances(index)
    assert len(typical) == min(500, len(index)) and np.all(np.diff(typical) >= 0) and typical[0] >= 0
    assert neighbour_distances(index) is typical  # cached per index
    ad = search(w["ion"], ad_id="demo-00003", k=3)
    assert ad["closeness"]["nearest"] == ad["results"][0]["distance"]
    assert ad["closeness"]["threshold"] == pytest.approx(float(np.quantile(typical, 0.95)), abs=1e-5)
    assert closeness(float(typical[-1]) * 2 + 1.0, typical)["far"] is True
    assert closeness(float(typical[0]), typical)["far"] is False
    # a vector far outside the cloud: the search says so
    far = index.search(np.full((1, index.dim), 10.0, np.float32), 1)
    assert closeness(float(np.sqrt(far.distances[0][0])), typical)["far"] is True
