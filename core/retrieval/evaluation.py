"""The paper's evaluation figures of model runs (ION section 4.2): Hit P@k on seen and unseen test categories,
the chance level to read them against, and the table over all runs; the same on the validation split, where
recipes are chosen (the test split is only reported)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Engine

import core.retrieval.regions as region_reads
from core.progress import ProgressFn, no_progress
from core.retrieval.models import REGION_IMAGE_KIND, REGION_POOL, region_image_catalog_vectors
from core.runs import list_runs


def _clean(values: Sequence[float]) -> list[float | None]:
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else round(float(v), 6) for v in values]


def precision_metrics(raw: dict) -> dict:
    """Hit P@1..10 (all / seen / unseen, NaN -> None, rounded) and the query counts, as stored in a run's metrics."""
    return {"all": _clean(raw["all"]), "seen": _clean(raw["seen"]), "unseen": _clean(raw["unseen"]),
            "n_seen": int(raw["n_seen"]), "n_unseen": int(raw["n_unseen"])}


def chance_levels(test_labels: np.ndarray, train_labels: np.ndarray) -> dict[str, float | None]:
    """Hit P@k of a random ranking (the same for every k): per query, (ads of its category - 1) / (test ads - 1),
    averaged over seen and over unseen queries. With few test ads per category this is the floor to read P@k against."""
    test_labels = np.asarray(test_labels)
    n = len(test_labels)
    if n < 2:
        return {"seen": None, "unseen": None}
    values, counts = np.unique(test_labels, return_counts=True)
    count = dict(zip(values.tolist(), counts.tolist(), strict=True))
    per_query = np.array([(count[c] - 1) / (n - 1) for c in test_labels.tolist()])
    seen = np.isin(test_labels, np.asarray(train_labels))
    return {"seen": round(float(per_query[seen].mean()), 6) if seen.any() else None,
            "unseen": round(float(per_query[~seen].mean()), 6) if (~seen).any() else None}


def _at(values: list | None, k: int) -> float | None:
    return values[k - 1] if values and len(values) >= k else None


def evaluate_runs(*, engine: Engine | None = None, status: str | None = "done") -> list[dict[str, Any]]:
    """One row per run: Hit P@1/5/10 on seen and unseen test categories (oldest first)."""
    rows = []
    for run in reversed(list_runs(status=status, engine=engine)):
        m = run["metrics"]
        row = {"run_id": run["id"], "kind": run["kind"], "name": run["name"], "ablate": run["config"].get("ablate", []),
               "status": run["status"], "n_seen": m.get("n_seen"), "n_unseen": m.get("n_unseen")}
        for part in ("seen", "unseen"):
            for k in (1, 5, 10):
                row[f"{part}_p{k}"] = _at(m.get(part), k)
        rows.append(row)
    return rows


def split_precision(run_id: int, split: str = "val", *, engine: Engine | None = None) -> dict[str, Any]:
    """Hit P@1..10 of a finished run among the ads of one catalogue split (every ad of the split queries all
    others), read from the run's index of the whole catalogue: no model is run again. -> {"seen", "unseen", ...}."""
    from core.embed.evaluate import seen_unseen_precision
    from core.errors import RetrievalError
    from core.retrieval.catalog import load_catalog_ads, make_split
    from core.retrieval.index import load_index, resolve_run

    run = resolve_run(run_id, engine=engine)
    index = load_index(run)
    cat = load_catalog_ads(engine=engine)
    parts, labelled, _ = make_split(cat, int(run["config"].get("seed", 0)))
    rows = {"train": parts.train, "val": parts.val, "test": parts.test}.get(split)
    if rows is None:
        raise RetrievalError(f"unknown split {split!r}; choose train, val or test")
    members = [int(labelled[i]) for i in rows if cat.ids[labelled[i]] in index]  # catalogue rows of the split, indexed
    if len(members) < 2:
        raise RetrievalError(f"the {split} split has fewer than 2 ads in run {run['id']}'s index")
    vectors = np.stack([index.vector(cat.ids[m]) for m in members])
    labels = cat.labels[members]
    raw = seen_unseen_precision(vectors, labels, cat.labels[labelled[parts.train]].tolist())
    return {"run_id": run["id"], "name": run["name"], "split": split, **precision_metrics(raw)}


def region_image_baseline_report(engine: Engine, detector: str | None = None, *, how: str = REGION_POOL, seed: int = 0,
                                 progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Hit P@1..10 (seen / unseen) of the image-only baseline over region descriptors on the test split: the same
    split, queries and metric as ``train --model image`` (every test ad queries all other test ads)."""
    import time

    from core.embed.evaluate import seen_unseen_precision
    from core.regions.registry import get_detector
    from core.retrieval.catalog import load_catalog_ads, make_split

    started = time.perf_counter()
    cat = load_catalog_ads(engine=engine)
    split, labelled, description = make_split(cat, seed)
    test_rows = labelled[split.test]
    test = load_catalog_ads([cat.ids[i] for i in test_rows], engine=engine)  # id order, as test_rows
    choice = get_detector(detector)
    vectors = region_image_catalog_vectors(test, engine, detector, how=how, progress=progress)
    train_labels = cat.labels[labelled[split.train]]
    metrics = precision_metrics(seen_unseen_precision(vectors, test.labels, train_labels))
    return {"ok": True, "kind": REGION_IMAGE_KIND, "pool": how, "detector": choice.detector.version, "backend": choice.backend,
            "reason": choice.reason, "descriptors": region_reads.region_descriptor_mode(choice.detector),
            "split": {k: description[k] for k in ("source", "train", "val", "test", "unseen_categories")},
            **metrics, "chance": chance_levels(test.labels, train_labels), "seconds": round(time.perf_counter() - started, 2)}
