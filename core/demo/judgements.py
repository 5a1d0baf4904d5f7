"""A judgement set for creative selection, read off the demo world's ground truth: which object does a creative sell?

The weak triples of core.matching.triples label (phrase, creative) pairs by the ad's category. This set asks a
sharper, image-grounded question, like the paper's annotator judgements. For every creative of a split with a
ground-truth product (``Ad.truth["objects"]``), with category names as phrases:

* ``product``    label 1: the product's category — the object the ad sells (often the smallest in the picture);
* ``distractor`` label 0: the category of another object in the same picture — visible, usually larger, not sold;
* ``absent``     label 0: a category with no object in the picture.

A scorer that only recognises what is in the picture cannot tell ``product`` from ``distractor``; one that knows
which object the creative is about can. The CSV (phrase, ad_id, label, split, kind) is what
``python -m core evaluate-matching --judgements FILE`` reads.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from core.store import Ad, Category, get_engine, session_scope

FIELDS = ("phrase", "ad_id", "label", "split", "kind")


def product_judgements(engine: Engine | None = None, *, split: str = "test", seed: int = 0) -> list[dict[str, Any]]:
    """Rows for every ``split`` creative with a product: one product, at most one distractor and one absent category."""
    engine = engine or get_engine()
    rng = np.random.default_rng(seed)
    with session_scope(engine) as s:
        names = sorted(s.scalars(select(Category.name)))
        ads = s.execute(select(Ad.id, Ad.truth).where(Ad.split == split).order_by(Ad.id)).all()
    known = set(names)
    rows: list[dict[str, Any]] = []
    for ad_id, truth in ads:
        objects = [o for o in (truth or {}).get("objects", []) if o.get("category") in known]
        product = [o["category"] for o in objects if o.get("role") == "product"]
        if not product:
            continue
        rows.append({"phrase": product[0], "ad_id": ad_id, "label": 1, "split": split, "kind": "product"})
        distractors = sorted({o["category"] for o in objects if o.get("role") != "product"} - set(product))
        if distractors:
            rows.append({"phrase": distractors[int(rng.integers(len(distractors)))], "ad_id": ad_id, "label": 0, "split": split,
                         "kind": "distractor"})
        absent = [n for n in names if n not in {o["category"] for o in objects}]
        if absent:
            rows.append({"phrase": absent[int(rng.integers(len(absent)))], "ad_id": ad_id, "label": 0, "split": split, "kind": "absent"})
    return rows


def write_judgements(rows: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path
