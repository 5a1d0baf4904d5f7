"""Queries that are not catalogue ads, measured: search phrases alone, and uploaded copies of creatives.

* Phrase queries: every category's name and those of its keywords (``Category.meta["keywords"]``) that
  belong to no other category, held-out categories included, each searched over the whole catalogue;
  the figure is the mean share of the top k that are ads of the phrase's category.
* Uploads: a test creative's image file decoded again and detected afresh (as an upload is), with its
  text, must retrieve what the catalogue ad itself retrieves: the share of cases whose top k (the source
  ad left out) shares at least ``min_shared`` ads with the catalogue ad's own top k.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from core.errors import RetrievalError
from core.filestore import resolve
from core.images import load_image
from core.progress import ProgressFn, no_progress
from core.retrieval.catalog import load_catalog_ads
from core.retrieval.index import load_index, resolve_run
from core.retrieval.models import embed_query
from core.retrieval.nearest import phrase_query
from core.store import Category, get_engine, session_scope


def category_phrases(engine: Engine) -> list[tuple[str, int]]:
    """(phrase, category id): each category's name and its keywords that no other category has, lower-cased, sorted."""
    with session_scope(engine) as s:
        cats = [(int(c.id), c.name, list((c.meta or {}).get("keywords", []))) for c in s.scalars(select(Category).order_by(Category.id))]
    owners = Counter(kw.strip().lower() for _, _, kws in cats for kw in set(kws) if kw.strip())
    names = {name.strip().lower() for _, name, _ in cats}
    phrases: dict[str, int] = {}
    for cid, name, kws in cats:
        phrases.setdefault(name.strip().lower(), cid)
        for kw in kws:
            word = kw.strip().lower()
            if word and owners[word] == 1 and word not in names:
                phrases.setdefault(word, cid)
    return sorted(phrases.items())


def phrase_precision(run_id: int | None = None, *, k: int = 10, route: str = "text-neighbours", engine: Engine | None = None,
                     progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Mean same-category share of the top k for the category phrases, over the whole catalogue (seen / held-out apart)."""
    engine = engine or get_engine()
    run = resolve_run(run_id, engine=engine)
    index = load_index(run)
    phrases = category_phrases(engine)
    if not phrases:
        raise RetrievalError("the catalogue has no categories: phrase queries need category names")
    cat = load_catalog_ads(engine=engine)
    label_of = dict(zip(cat.ids, cat.labels.tolist(), strict=True))
    unseen = set(cat.unseen_categories)
    rows = []
    for i, (phrase, cid) in enumerate(phrases):
        vector, how = phrase_query(run, index, phrase, route)
        found = index.search(np.asarray(vector, np.float32), k)
        share = float(np.mean([label_of.get(a, -1) == cid for a in found.ids[0]]))
        rows.append({"phrase": phrase, "category_id": cid, "held_out": cid in unseen, "share": share})
        progress(i + 1, len(phrases), f"phrases: {phrase}")

    def mean(sel: list[dict]) -> float | None:
        return round(float(np.mean([r["share"] for r in sel])), 4) if sel else None

    return {"run": run["id"], "k": k, "route": how["route"], "phrases": len(rows), "precision": mean(rows),
            "seen": mean([r for r in rows if not r["held_out"]]), "held_out": mean([r for r in rows if r["held_out"]]),
            "worst": sorted(rows, key=lambda r: r["share"])[:10]}


def upload_agreement(run_id: int | None = None, *, k: int = 10, min_shared: int = 9, limit: int | None = 200, seed: int = 0,
                     engine: Engine | None = None, progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Share of test creatives whose uploaded copy (image re-decoded and re-detected, plus the ad text) retrieves at
    least ``min_shared`` of the catalogue ad's own top k (both without the source ad)."""
    engine = engine or get_engine()
    run = resolve_run(run_id, engine=engine)
    index = load_index(run)
    cat = load_catalog_ads(engine=engine)
    test = [i for i, split in enumerate(cat.splits) if split == "test" and cat.ids[i] in index]
    if not test:
        raise RetrievalError("no test ad is in this run's index")
    if limit is not None and len(test) > limit:
        test = sorted(np.random.default_rng(seed).choice(test, size=limit, replace=False).tolist())
    shared_counts = []
    for n, i in enumerate(test):
        ad_id = cat.ids[i]
        own = index.search(index.vector(ad_id)[None, :].astype(np.float32), k, exclude=[ad_id]).ids[0]
        image = load_image(resolve(cat.image_paths[i])).image
        vector = embed_query(run, text=cat.texts[i], image=image)
        upload = index.search(np.asarray(vector, np.float32), k, exclude=[ad_id]).ids[0]
        shared_counts.append(len(set(own) & set(upload)))
        progress(n + 1, len(test), f"uploads: {ad_id}")
    counts = np.asarray(shared_counts)
    return {"run": run["id"], "k": k, "min_shared": min_shared, "creatives": len(counts),
            "agreement": round(float(np.mean(counts >= min_shared)), 4), "mean_shared": round(float(counts.mean()), 3)}
