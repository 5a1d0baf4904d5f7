"""Search: the k nearest catalog ads (Euclidean distance in a run's index) to a catalog ad, a new creative or a phrase."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine

from core.errors import RetrievalError
from core.progress import no_progress
from core.retrieval.catalog import ad_records, load_catalog_ads
from core.retrieval.index import load_index, resolve_run
from core.retrieval.models import TRAINED_KINDS, embed_catalog_rows, embed_query
from core.retrieval.phrases import PHRASE_ROUTES, phrase_vector
from core.store import get_engine


def phrase_query(run: dict[str, Any], index, phrase: str, route: str = "text-neighbours") -> tuple[np.ndarray, dict[str, Any]]:
    """The query vector of a phrase: through the text space for trained runs (core.retrieval.phrases), else the model's own."""
    if route not in PHRASE_ROUTES:
        raise RetrievalError(f"unknown phrase route {route!r}; choose {' or '.join(PHRASE_ROUTES)}")
    if route == "text-neighbours" and run["kind"] in TRAINED_KINDS:
        routed = phrase_vector(run, index, phrase)
        if routed is not None:
            return routed
        return embed_query(run, text=phrase), {"route": "direct", "why": "this run has no text index (trained before it existed)"}
    return embed_query(run, text=phrase), {"route": "direct"}


def search(run_id: int | None = None, *, ad_id: str | None = None, image: Image.Image | None = None, text: str | None = None,
           phrase: str | None = None, k: int = 10, engine: Engine | None = None, phrase_route: str = "text-neighbours") -> dict[str, Any]:
    """The k nearest catalog ads to a catalog ad, a new creative (image and/or text) or a phrase.

    -> {"run": {...}, "query": {...}, "results": [{rank, ad_id, distance, category, same_category, text, image_path, ...}]}
    Distances are Euclidean (the paper's metric); ``same_category`` is None when either side has no category.
    """
    engine = engine or get_engine()
    if sum(x is not None and x != "" for x in (ad_id, phrase)) + (image is not None or bool(text)) != 1:
        raise RetrievalError("give exactly one query: a catalog ad, a creative (image and/or text), or a phrase")
    if not 1 <= k <= 1000:
        raise RetrievalError(f"k must lie in [1, 1000] (got {k})")
    run = resolve_run(run_id, engine=engine)
    index = load_index(run)
    query: dict[str, Any]
    exclude = None
    query_category = None
    if ad_id:
        records = ad_records([ad_id], engine)
        if ad_id not in records:
            raise RetrievalError(f"no ad with id '{ad_id}'")
        query = {"type": "ad", "ad_id": ad_id, "text": records[ad_id]["text"], "category": records[ad_id]["category"]}
        query_category = records[ad_id]["category_id"]
        if ad_id in index:
            vector = index.vector(ad_id)[None, :]
        else:
            vector = embed_catalog_rows(run, load_catalog_ads([ad_id], engine=engine), engine, no_progress)
        exclude = [ad_id]
    elif phrase:
        vector, route = phrase_query(run, index, phrase, phrase_route)
        query = {"type": "phrase", "phrase": phrase, **route}
    elif image is None:  # an ad text without a picture: the models never saw an ad without regions, so as a phrase
        vector, route = phrase_query(run, index, text or "", phrase_route)
        query = {"type": "creative", "text": text or "", "image": False, **route}
    else:
        query = {"type": "creative", "text": text or "", "image": True}
        vector = embed_query(run, text=text or "", image=image)
    found = index.search(np.asarray(vector, np.float32), k, exclude=exclude)
    ids = found.ids[0]
    records = ad_records(ids, engine)
    results = []
    for rank, (rid, dist) in enumerate(zip(ids, found.distances[0], strict=False), start=1):
        rec = records.get(rid, {"id": rid, "text": "", "category": None, "category_id": None, "image_path": None})
        same = None if query_category is None or rec.get("category_id") is None else rec["category_id"] == query_category
        results.append({**rec, "rank": rank, "ad_id": rid, "distance": round(float(np.sqrt(max(float(dist), 0.0))), 6),
                        "same_category": same})
    out = {"ok": True, "run": {"id": run["id"], "kind": run["kind"], "name": run["name"]}, "query": query, "k": k, "results": results}
    if results:
        out["closeness"] = closeness(results[0]["distance"], neighbour_distances(index))
    return out


FAR_QUANTILE = 0.95  # a query is "far" when its nearest ad is farther than this share of catalogue ads are from their nearest


def neighbour_distances(index, sample: int = 500, seed: int = 0) -> np.ndarray:
    """Distance from each of up to ``sample`` catalogue ads (a seeded sample) to its nearest other ad, sorted."""
    cached = _NN_CACHE.get(index)
    if cached is not None and cached[0] == len(index):
        return cached[1]
    ids = list(index.ids)
    if len(ids) < 2:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    chosen = [ids[i] for i in sorted(rng.choice(len(ids), min(sample, len(ids)), replace=False))]
    vectors = np.stack([index.vector(a) for a in chosen]).astype(np.float32)
    found = index.search(vectors, 1, exclude=chosen)
    dist = np.sort(np.sqrt(np.maximum([d[0] for d in found.distances if len(d)], 0.0)))
    _NN_CACHE[index] = (len(index), dist)
    return dist


_NN_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> (its size then, distances)


def closeness(nearest: float, typical: np.ndarray) -> dict[str, Any]:
    """How the query's nearest distance compares with the catalogue's own nearest-neighbour distances."""
    if not len(typical):
        return {"nearest": nearest, "far": False}
    threshold = float(np.quantile(typical, FAR_QUANTILE))
    return {"nearest": nearest, "typical": round(float(np.median(typical)), 6), "threshold": round(threshold, 6),
            "quantile": FAR_QUANTILE, "far": bool(nearest > threshold),
            "share_closer": round(float(np.mean(typical < nearest)), 4)}
