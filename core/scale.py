"""Large catalogues: region extraction spread over a Dask cluster, and streamed, resumable catalogue embedding.

Dask (the engine the audience models already use, core.audience.model): the client lists the images not yet in the
region cache, sends batches of image files to the workers (at most two batches per worker in flight, so memory stays
bounded), and writes every returned batch to the cache itself (one writer). Each worker process builds the detector and
describer once (:func:`worker_tools`, cached per process) and runs :func:`core.regions.extract.process_batch`, the
function local extraction runs, so both write the same entries. Workers read the image files by absolute path and use
their own ADLENS_* settings: they need the client's file system (a shared ADLENS_HOME) and the same detector weights.

Embedding (:func:`embed_catalog_stream`): the catalogue in chunks of ads, each chunk's cached regions read, embedded
and saved as one part file; a re-run reuses the parts already written (resumable) and never holds more than one
chunk's regions in memory.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from core.eta import eta_text
from core.progress import ProgressFn, no_progress

DEFAULT_BATCH = 16
EMBED_CHUNK = 2048


# -- Dask extraction ---------------------------------------------------------------------------------------------------


def local_workers(address: str) -> int | None:
    """``local`` -> this machine's CPU count, ``local:N`` -> N: a LocalCluster of single-threaded worker processes started
    for the run (every core of one machine busy); None for a scheduler address. ValueError on a bad count."""
    import os

    if address != "local" and not address.startswith("local:"):
        return None
    count = address.partition(":")[2]
    if count and (not count.isdigit() or int(count) < 1):
        raise ValueError(f"--dask {address}: write local or local:N with N >= 1 worker processes")
    return int(count) if count else max(1, os.cpu_count() or 1)


def connect(address: str, timeout: float = 10.0):
    """A dask.distributed Client for the scheduler at ``address`` (ConnectionError with the address when unreachable);
    ``local[:N]`` starts a LocalCluster of N single-threaded worker processes, closed with the client."""
    from distributed import Client

    workers = local_workers(address)
    if workers is not None:
        import dask
        from distributed import LocalCluster

        # Dask's workers start with MALLOC_TRIM_THRESHOLD_=65536, which returns freed memory to the system at every
        # torch batch (mmap/munmap churn: 2 local workers spent a third of their time in the kernel); one thread each
        spawn_env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.close = _closing(client.close, cluster)  # type: ignore[method-assign]
        return client
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {exc}; start one (`dask scheduler`, then "
                              "`dask worker ADDRESS`) or leave --dask out to extract on this machine") from exc


def _closing(close, cluster):
    def close_both(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            cluster.close()
    return close_both


@lru_cache(maxsize=4)
def worker_tools(detector: str | None, weights: str | None, descriptors: str | None, conf: float, iou: float, max_det: int):
    """(detector, describer, descriptor mode, cache key), built once per worker process."""
    from core.regions.extract import detector_key, resolve_descriptors
    from core.regions.registry import get_detector

    det = get_detector(detector, weights=weights).detector
    mode, describer = resolve_descriptors(descriptors, det.device)
    describer = describer if mode != "none" else None
    return det, describer, mode, detector_key(det, conf, iou, max_det, describer, mode)


def worker_key(spec: dict[str, Any]) -> str:
    """The cache key the workers' detector writes under (asked once, before any batch is sent)."""
    return worker_tools(*_tool_args(spec))[3]


def worker_batch(paths: list[tuple[str, str]], spec: dict[str, Any]):
    """On a worker: (cache key, core.regions.extract.Batch) of these (image hash, absolute image path) pairs."""
    from core.regions.extract import process_batch

    det, describer, mode, key = worker_tools(*_tool_args(spec))
    return key, process_batch(det, describer, mode, paths, conf=spec["conf"], iou=spec["iou"], max_det=spec["max_det"],
                              ocr=spec["ocr"])


def _tool_args(spec: dict[str, Any]) -> tuple:
    return spec["detector"], spec["weights"], spec["descriptors"], spec["conf"], spec["iou"], spec["max_det"]


def bounded_map(client, fn: Callable, items: list, *args: Any, per_worker: int = 2):
    """``fn(item, *args)`` for each item on the cluster's workers, at most ``per_worker`` items per worker in flight (memory
    stays bounded whatever the catalogue's size); yields (the item's position, its result) as they complete. Leaving the
    loop early (a stop) cancels whatever is still queued or running."""
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    pending = iter(enumerate(items))
    position: dict[str, int] = {}
    running = as_completed()

    def submit_next() -> None:
        nxt = next(pending, None)
        if nxt is not None:
            future = client.submit(fn, nxt[1], *args, pure=False)
            position[future.key] = nxt[0]
            running.add(future)

    for _ in range(per_worker * n_workers):
        submit_next()
    try:
        for future in running:
            yield position.pop(future.key), future.result()
            submit_next()
    finally:
        for other in list(running.futures):
            other.cancel()


def extract_catalog_dask(address: str, detector: str | None = None, *, weights: str | None = None, descriptors: str | None = None,
                         ocr: bool = True, conf: float = 0.05, iou: float = 0.5, max_det: int = 50, batch_size: int = DEFAULT_BATCH,
                         limit: int | None = None, ad_ids: list[str] | None = None, engine: Engine | None = None,
                         progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                         connect_timeout: float = 10.0) -> dict[str, Any]:
    """:func:`core.regions.extract.extract_catalog` with the batches computed by the workers of the Dask cluster at
    ``address``; the cache is written here, batch by batch (resumable like the local run). Same result keys, plus
    ``workers`` and ``dask``."""
    from core.filestore import resolve
    from core.regions.extract import _cache_state, drop_damaged, store_results
    from core.store import get_engine

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    progress = progress or no_progress
    engine = engine or get_engine()
    started = time.perf_counter()
    spec = {"detector": detector, "weights": weights, "descriptors": descriptors, "conf": float(conf), "iou": float(iou),
            "max_det": int(max_det), "ocr": bool(ocr)}
    client = connect(address, connect_timeout)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        key = client.submit(worker_key, spec, pure=False).result()
        rows, images, cached = _cache_state(engine, key, ad_ids, limit)
        rebuilt = drop_damaged(engine, key, cached)
        cached -= set(rebuilt)
        todo = [h for h in images if h not in cached]
        batches = [[(h, str(resolve(images[h]))) for h in todo[i: i + batch_size]] for i in range(0, len(todo), batch_size)]
        progress(0, len(todo), f"regions (dask, {n_workers} workers): {len(cached)} cached, {len(todo)} to detect")
        computed, done, failed, stopped = 0, 0, [], False
        loop_start = time.perf_counter()
        for _position, (got_key, batch) in bounded_map(client, worker_batch, batches, spec):
            if got_key != key:
                raise RuntimeError(f"the Dask workers do not all run the same detector ('{got_key}' vs '{key}'): give them the "
                                   "same ADLENS_HOME, settings and weights")
            computed += store_results(engine, key, batch.items)
            failed += batch.failed
            done += len(batch.items) + len(batch.failed)
            progress(done, len(todo), f"regions (dask): {computed} of {len(todo)} detected"
                                      f"{eta_text(done, len(todo), time.perf_counter() - loop_start)}")
            if should_stop is not None and should_stop():
                stopped = True  # leaving the loop cancels the batches still queued
                break
    finally:
        client.close()
    return {"ok": True, "dask": address, "workers": n_workers, "key": key, "detector": key.split("|", 1)[0], "backend": "dask",
            "reason": f"{n_workers} Dask workers at {address}", "device": "workers", "ads": len(rows), "images": len(images),
            "computed": computed, "cached": len(cached), "failed": failed, "rebuilt": len(rebuilt), "stopped": stopped,
            "remaining": len(todo) - computed - len(failed), "seconds": round(time.perf_counter() - started, 3)}


# -- Dask embedding (a run's index rebuilt on the workers) -----------------------------------------------------------


def worker_embed(ids: list[str], run_id: int) -> tuple[list[str], np.ndarray, list[str]]:
    """On a worker: (ads embedded, their vectors, unreadable ads left out) of these catalogue ads with run ``run_id``'s
    model, read from the shared store (its checkpoint loaded once per worker process, core.loaders)."""
    from core.progress import no_progress
    from core.retrieval.catalog import load_catalog_ads
    from core.retrieval.models import embed_readable_rows
    from core.runs import get_run
    from core.store import get_engine

    engine = get_engine()
    part, vectors, left_out = embed_readable_rows(get_run(run_id, engine=engine), load_catalog_ads(ids, engine=engine), engine,
                                                  no_progress)
    return part.ids, np.asarray(vectors, np.float32), left_out


def embed_catalog_dask(address: str, run: dict[str, Any], cat, progress: ProgressFn | None = None, *, chunk: int = EMBED_CHUNK,
                       connect_timeout: float = 10.0):
    """:func:`core.retrieval.index.embed_in_chunks` with the chunks embedded by the workers of the Dask cluster at ``address``
    (they need this machine's store: the same ADLENS_HOME or database URL and home files) -> (the ads embedded, vectors in
    the catalogue's order, unreadable ads left out)."""
    progress = progress or no_progress
    parts = [cat.ids[lo: lo + chunk] for lo in range(0, len(cat), chunk)]
    results: dict[int, tuple[list[str], np.ndarray, list[str]]] = {}
    client = connect(address, connect_timeout)
    started = time.perf_counter()
    done = 0
    try:
        for position, result in bounded_map(client, worker_embed, parts, int(run["id"])):
            results[position] = result
            done += len(parts[position])
            progress(int(900 * done / len(cat)), 1000,
                     f"embed (dask): {done} of {len(cat)} ads{eta_text(done, len(cat), time.perf_counter() - started)}")
    finally:
        client.close()
    by_ad = {ad: vector for ids, vectors, _left in results.values() for ad, vector in zip(ids, vectors, strict=True)}
    kept = [i for i, ad in enumerate(cat.ids) if ad in by_ad]
    vectors = np.stack([by_ad[cat.ids[i]] for i in kept]) if kept else np.zeros((0, 0), np.float32)
    return cat.subset(kept), vectors, [ad for i in sorted(results) for ad in results[i][2]]


# -- streamed, resumable embedding -------------------------------------------------------------------------------------


def _chunk_name(index: int, ids: list[str]) -> str:
    return f"part-{index:05d}-{hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:12]}"


def embed_catalog_stream(model, vocab, out_dir: str | Path, *, detector: str | None = None, engine: Engine | None = None,
                         chunk: int = EMBED_CHUNK, progress: ProgressFn | None = None,
                         should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Embed every catalogue ad (id order) with ``model``/``vocab`` from the region cache (extracted where missing), ``chunk``
    ads at a time; each chunk's vectors go to ``out_dir/part-*.npy`` (+ ``.ids.json``). Parts already there are reused, so
    an interrupted run (``should_stop()`` True before a chunk) continues where it stopped. -> counts and timings;
    :func:`load_parts` reads the vectors back."""
    from core.embed.pipeline import embed_ads
    from core.retrieval import regions as region_reads
    from core.store import Ad, get_engine, session_scope

    progress = progress or no_progress
    engine = engine or get_engine()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with session_scope(engine) as s:
        rows = s.execute(select(Ad.id, Ad.text, Ad.image_hash).order_by(Ad.id)).all()
    total, computed, reused, stopped = len(rows), 0, 0, False
    started = time.perf_counter()
    seconds_regions = seconds_embed = 0.0
    for n, lo in enumerate(range(0, total, chunk)):
        part = rows[lo: lo + chunk]
        ids = [r[0] for r in part]
        name = _chunk_name(n, ids)
        if (out / f"{name}.npy").is_file() and (out / f"{name}.ids.json").is_file():
            reused += len(part)
            continue
        if should_stop is not None and should_stop():
            stopped = True
            break
        t0 = time.perf_counter()
        _key, _dim, regions = region_reads.regions_for_ads(ids, [r[2] for r in part], detector, engine=engine)
        t1 = time.perf_counter()
        dim = model.config.region_dim
        feats = [regions[r[2]].features if r[2] in regions else np.zeros((0, dim), np.float32) for r in part]
        confs = [regions[r[2]].confidences if r[2] in regions else np.zeros(0, np.float32) for r in part]
        vectors = embed_ads(model, vocab, [r[1] or "" for r in part], feats, confs, device="cpu")
        seconds_regions += t1 - t0
        seconds_embed += time.perf_counter() - t1
        np.save(out / f"{name}.tmp.npy", vectors.astype(np.float32))
        (out / f"{name}.ids.json").write_text(json.dumps(ids))
        (out / f"{name}.tmp.npy").replace(out / f"{name}.npy")  # the vectors last: a part counts only once complete
        computed += len(part)
        done = lo + len(part)
        progress(done, total, f"embed: {done} of {total} ads{eta_text(computed, total - reused, time.perf_counter() - started)}")
    return {"ads": total, "computed": computed, "reused": reused, "stopped": stopped, "seconds": round(time.perf_counter() - started, 3),
            "seconds_regions": round(seconds_regions, 3), "seconds_embed": round(seconds_embed, 3)}


def load_parts(out_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """(ad ids, vectors [N, d]) of the complete parts written by :func:`embed_catalog_stream`, in part order."""
    ids: list[str] = []
    arrays = []
    for path in sorted(Path(out_dir).glob("part-*.npy")):
        if path.name.endswith(".tmp.npy"):
            continue
        ids += json.loads(path.with_name(path.name.removesuffix(".npy") + ".ids.json").read_text())
        arrays.append(np.load(path))
    return ids, (np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32))
