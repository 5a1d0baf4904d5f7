"""What a scorer that sees only the phrase and the picture can reach, and AUC split by kind of pair.

The LXMERT, CLIP-style and early-fusion scorers judge (phrase, creative) from the picture alone. Some irrelevant
pairs cannot be told from relevant ones that way: a creative often *shows* an object of the phrase's category that it
does not sell (a distractor). The **visible-category oracle** knows exactly which categories are visible in each
creative (the demo world's ground truth, ``Ad.truth["objects"]``) and scores a pair 1 when one of the phrase's
categories is visible, else 0 (ties count one half in the AUC). Its AUC is what recognising the visible objects alone
reaches: the ceiling of a scorer that cannot tell the object sold from the other objects shown. A scorer that learns
which visible object is the product (the demo's product is small and drawn last) can pass it on visible negatives.
Every scorer's AUC is reported beside it, per group:

* ``all``: the whole set;
* ``absent`` / ``visible``: all relevant pairs against the irrelevant pairs whose phrase category is absent from the
  picture / visible in it (the judgement set's ``absent`` and ``distractor`` rows; weak-label negatives whose ad shows
  the phrase's object as a distractor);
* ``seen`` / ``held-out``: pairs whose phrase stands for training categories / a held-out (unseen) category;
* ``en`` / ``zh``: English / Chinese phrases (a phrase with a CJK character is Chinese); ``en seen``, ``en held-out``.

Catalogues without ground-truth objects get the phrase-side groups only (no visibility, no oracle).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, select

from core.ingest.adrows import detect_lang
from core.matching.evaluate import auc
from core.matching.triples import Triple, _category_phrases, normalise_phrase
from core.store import Ad, Category, session_scope


def visible_categories(engine: Engine, ad_ids: Sequence[str]) -> dict[str, set[str]]:
    """Categories of every object drawn in each creative (product and distractors), for ads with ground truth."""
    with session_scope(engine) as s:
        rows = s.execute(select(Ad.id, Ad.truth).where(Ad.id.in_(list(ad_ids)))).all()
    out = {}
    for ad_id, truth in rows:
        objects = (truth or {}).get("objects")
        if objects:
            out[ad_id] = {o["category"] for o in objects if o.get("category")}
    return out


def phrase_categories(engine: Engine, phrases: Sequence[str], known: dict[str, list[str]] | None = None
                      ) -> tuple[dict[str, set[str]], set[str]]:
    """(categories each phrase stands for, names of the held-out categories). ``known`` (a weak triple set's own
    mapping) wins; other phrases are matched to category names and keywords (both languages)."""
    with session_scope(engine) as s:
        cats = [(c.name, c.name_zh, dict(c.meta or {}), bool(c.unseen)) for c in s.scalars(select(Category))]
    lookup: dict[str, set[str]] = {}
    for name, name_zh, meta, _ in cats:
        for p in _category_phrases(name, name_zh, meta):
            lookup.setdefault(p, set()).add(name)
    known = known or {}
    out = {p: set(known[p]) if p in known else lookup.get(normalise_phrase(p), set()) for p in phrases}
    return out, {name for name, _, _, unseen in cats if unseen}


def oracle_scores(triples: Sequence[Triple], phrase_cats: dict[str, set[str]], visible: dict[str, set[str]]) -> np.ndarray:
    """1 where one of the phrase's categories is visible in the creative, 0 where none is, NaN where unknown."""
    out = np.full(len(triples), np.nan)
    for i, t in enumerate(triples):
        cats = phrase_cats.get(t.phrase)
        if cats and t.ad_id in visible:
            out[i] = float(bool(cats & visible[t.ad_id]))
    return out


def group_masks(triples: Sequence[Triple], phrase_cats: dict[str, set[str]], heldout: set[str],
                visible: dict[str, set[str]]) -> dict[str, np.ndarray]:
    """Boolean mask over ``triples`` for every group of the module docstring (groups with no pair are left out)."""
    labels = np.array([t.label for t in triples])
    pos = labels == 1
    lang = np.array([detect_lang(t.phrase) for t in triples])
    held = np.array([bool(phrase_cats.get(t.phrase, set()) & heldout) for t in triples])
    masks = {"all": np.ones(len(triples), bool)}
    if visible:
        shown = np.array([bool(phrase_cats.get(t.phrase, set()) & visible.get(t.ad_id, set())) for t in triples])
        known = np.array([t.ad_id in visible and bool(phrase_cats.get(t.phrase)) for t in triples])
        masks["absent"] = pos | (~pos & known & ~shown)
        masks["visible"] = pos | (~pos & known & shown)
    masks |= {"seen": ~held, "held-out": held, "en": lang == "en", "zh": lang == "zh",
              "en seen": (lang == "en") & ~held, "en held-out": (lang == "en") & held}
    return {k: m for k, m in masks.items() if m.any()}


def grouped_auc(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict]:
    """{group: {"auc" (None without both classes), "positives", "negatives"}}; NaN scores are left out."""
    out = {}
    for name, mask in masks.items():
        m = mask & ~np.isnan(scores)
        y = labels[m]
        value = auc(scores[m], y) if 0 < y.sum() < len(y) else None
        out[name] = {"auc": None if value is None else round(float(value), 4), "positives": int(y.sum()),
                     "negatives": int(len(y) - y.sum())}
    return out


def breakdown(engine: Engine, triples: Sequence[Triple], scores_by_scorer: dict[str, np.ndarray],
              known_phrase_categories: dict[str, list[str]] | None = None) -> dict:
    """Every scorer's AUC per group beside the visible-category oracle's (the ceiling of a picture-only scorer).

    -> {"groups": [names], "ceiling": {group: {...}} or None, "scorers": {name: {group: {...}}}}"""
    phrase_cats, heldout = phrase_categories(engine, sorted({t.phrase for t in triples}), known_phrase_categories)
    visible = visible_categories(engine, sorted({t.ad_id for t in triples}))
    masks = group_masks(triples, phrase_cats, heldout, visible)
    labels = np.array([t.label for t in triples])
    ceiling = grouped_auc(oracle_scores(triples, phrase_cats, visible), labels, masks) if visible else None
    return {"groups": list(masks), "ceiling": ceiling,
            "scorers": {name: grouped_auc(np.asarray(s, np.float64), labels, masks) for name, s in scores_by_scorer.items()}}
