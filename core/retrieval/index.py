"""The FAISS index of a run's vectors over the whole catalog: which run, loading (cached), building and extending it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.errors import RetrievalError
from core.filestore import DamagedFile, resolve
from core.progress import ProgressFn, no_progress
from core.retrieval.catalog import all_ad_ids, load_catalog_ads, unreadable_warning
from core.retrieval.models import TRAINED_KINDS, embed_readable_rows
from core.retrieval.phrases import add_texts, build_text_index
from core.runs import get_run, latest_done, run_dir, update_run
from core.search.index import VectorIndex, load_cached
from core.store import get_engine


def load_index(run: dict[str, Any]) -> VectorIndex:
    if run["status"] != "done" or not run.get("index_path"):
        raise RetrievalError(f"model run {run['id']} ({run['kind']}) is {run['status']} and has no index yet")
    path = Path(resolve(run["index_path"]))
    if not path.with_suffix(".faiss").is_file() or not path.with_suffix(".ids.json").is_file():
        raise RetrievalError(f"the index of model run {run['id']} is missing ({run['index_path']}): run `python -m core index --run "
                             f"{run['id']} --rebuild`")
    try:
        return load_cached(path, what=f"the index file of model run {run['id']}",
                           fix=f"rebuild it with `python -m core index --run {run['id']} --rebuild`")
    except DamagedFile as exc:
        raise RetrievalError(str(exc)) from None


def resolve_run(run_id: int | None, *, engine: Engine | None = None) -> dict[str, Any]:
    """The run ``run_id``, or the newest finished ION run (else any finished run) when None."""
    if run_id is not None:
        return get_run(run_id, engine=engine)
    run = latest_done("ion", engine=engine) or latest_done(engine=engine)
    if run is None:
        raise RetrievalError("no finished model run with an index: train one (`python -m core train --model ion`)")
    return run


def build_index(run_id: int, *, rebuild: bool = False, engine: Engine | None = None, progress: ProgressFn = no_progress,
                dask: str | None = None) -> dict[str, Any]:
    """Add the catalog ads missing from the run's index (default), or re-embed and rebuild it from scratch; ``dask``: a
    scheduler address (or ``local[:N]``) whose workers embed the chunks (core.scale.embed_catalog_dask)."""
    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    if run["status"] != "done":
        raise RetrievalError(f"model run {run_id} is {run['status']}: only finished runs can be indexed")
    if not rebuild and run.get("index_path") and Path(resolve(run["index_path"])).with_suffix(".faiss").is_file():
        return add_new_ads(run_id, engine=engine, progress=progress, dask=dask)
    cat = load_catalog_ads(engine=engine)
    if not len(cat):
        raise RetrievalError("the catalog is empty")
    cat, vectors, left_out = embed_in_chunks(run, cat, engine, progress, dask=dask)
    index, rel = write_run_index(run_id, run["kind"], cat.ids, cat.texts, vectors, progress)
    metrics = {**run["metrics"], **unreadable_metrics(left_out, run["metrics"].get("warnings") or [])}
    update_run(run_id, engine=engine, index_path=rel, metrics=metrics)
    return {"ok": True, "run_id": run_id, "rebuilt": True, "added": len(index), "total": len(index), "factory": index.factory,
            "unreadable": len(left_out)}


EMBED_CHUNK = 2048  # ads embedded at a time: one chunk's regions (or images) in memory, and short id lists in SQL


def embed_in_chunks(run: dict[str, Any], cat, engine: Engine, progress: ProgressFn = no_progress, chunk: int = EMBED_CHUNK,
                    dask: str | None = None):
    """:func:`core.retrieval.models.embed_readable_rows` over ``chunk`` ads at a time -> (the ads embedded, vectors, left out);
    with ``dask``, the chunks are embedded on that cluster's workers."""
    import numpy as np

    if dask:
        from core.scale import embed_catalog_dask

        return embed_catalog_dask(dask, run, cat, progress, chunk=chunk)
    if len(cat) <= chunk:
        return embed_readable_rows(run, cat, engine, progress)
    kept: list[int] = []
    parts, left_out = [], []
    for lo in range(0, len(cat), chunk):
        rows = list(range(lo, min(len(cat), lo + chunk)))
        part, vectors, left = embed_readable_rows(run, cat.subset(rows), engine, no_progress)
        done = set(part.ids)
        kept += [i for i in rows if cat.ids[i] in done]
        parts.append(vectors)
        left_out += left
        progress(int(900 * rows[-1] / len(cat)), 1000, f"embed: {rows[-1] + 1} of {len(cat)} ads")
    return cat.subset(kept), np.concatenate(parts), left_out


def write_run_index(run_id: int, kind: str, ids: list[str], texts: list[str], vectors, progress: ProgressFn = no_progress
                    ) -> tuple[VectorIndex, str]:
    """Save a run's index of the whole catalogue (and, for trained kinds, the ad-text index its phrase queries go
    through, core.retrieval.phrases); -> (index, its path relative to home)."""
    if kind in TRAINED_KINDS:
        progress(930, 1000, "index: ad texts for phrase queries")
        build_text_index(run_id, ids, texts)
    progress(950, 1000, "index: building")
    index = VectorIndex.build(vectors, ids)
    rel = f"{run_dir(run_id)}/index.faiss"
    index.save(resolve(rel))
    return index, rel


def add_new_ads(run_id: int, *, engine: Engine | None = None, progress: ProgressFn = no_progress, dask: str | None = None
                ) -> dict[str, Any]:
    """Embed the catalog ads not yet in the run's index and append them (no rebuild); saves the index."""
    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    index = load_index(run)
    new = [a for a in all_ad_ids(engine) if a not in index]
    if new:
        cat = load_catalog_ads(new, engine=engine)
        cat, vectors, left_out = embed_in_chunks(run, cat, engine, progress, dask=dask)
        new = cat.ids
        index = VectorIndex.load(resolve(run["index_path"]), what=f"the index file of model run {run_id}",  # a private copy
                                 fix=f"rebuild it with `python -m core index --run {run_id} --rebuild`")
        if left_out:
            update_run(run_id, engine=engine, metrics={**run["metrics"], **unreadable_metrics(
                sorted({*(run["metrics"].get("unreadable") or {}).get("ad_ids", []), *left_out}), run["metrics"].get("warnings") or [])})
        index.add(vectors, cat.ids)
        index.save(resolve(run["index_path"]))
        add_texts(run_id, cat.ids, cat.texts)
    return {"ok": True, "run_id": run_id, "rebuilt": False, "added": len(new), "total": len(index),
            "factory": index.factory}


def unreadable_metrics(left_out: list[str], warnings: list[str]) -> dict[str, Any]:
    """What a run records about the creatives left out: ``unreadable`` (count, ad ids) and its warning (replacing an older one)."""
    kept = [w for w in warnings if "could not be read and" not in w]
    if not left_out:
        return {"unreadable": {"count": 0, "ad_ids": []}, "warnings": kept}
    return {"unreadable": {"count": len(left_out), "ad_ids": list(left_out)[:500]}, "warnings": [*kept, unreadable_warning(len(left_out))]}
