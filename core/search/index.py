"""FAISS vector indexes over ad embeddings, keyed by ad id, persisted next to their model run.

The index type is a FAISS factory string ("Flat", "HNSW32", "IVF1024,Flat", ...); ``"auto"``
picks exact search for small catalogs and an approximate index for large ones (see
:func:`auto_factory`). New ads are added without a rebuild (``add``); re-adding an id replaces
its vector only for exact indexes, so ids must be new for approximate ones.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.loaders import load_once

EXACT_MAX = 50_000  # up to this many vectors, exact search is fast enough (< ~5 ms on 2 cores at d=128)


def auto_factory(n_vectors: int) -> str:
    """Exact search for small catalogs; an inverted file (IVF, about 4*sqrt(N) lists) for large ones.

    IVF beat HNSW32 on ad-like embeddings here (bench_search: at 100k, recall@10 0.99 at nprobe
    N/16 lists against 0.78 for HNSW32 at efSearch 256), trains in seconds and takes new vectors
    without a rebuild. Beyond 4M vectors the coarse quantizer itself becomes an HNSW graph.
    """
    if n_vectors <= EXACT_MAX:
        return "Flat"
    nlist = int(4 * np.sqrt(n_vectors))
    if n_vectors <= 4_000_000:
        return f"IVF{nlist},Flat"
    return f"IVF{nlist}_HNSW32,Flat"


def default_nprobe(factory: str) -> int:
    """Lists visited per query: 1/16 of them (at least 32), which kept recall@10 >= 0.95 in bench_search."""
    import re

    match = re.match(r"IVF(\d+)", factory)
    return max(32, int(match.group(1)) // 16) if match else 0


@dataclass
class SearchResult:
    ids: list[list[str]]  # per query, nearest first
    distances: np.ndarray  # [Q, k] squared Euclidean distances (inf where fewer than k exist)


class VectorIndex:
    """A FAISS index plus the ad ids of its rows."""

    def __init__(self, dim: int, factory: str = "Flat", *, ef_search: int = 256, nprobe: int | None = None):
        import faiss

        self.dim = dim
        self.factory = factory
        self.index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
        self.ids: list[str] = []
        self._pos: dict[str, int] = {}
        self.ef_search = ef_search
        self.nprobe = nprobe or default_nprobe(factory)
        self._tune()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str], factory: str = "auto", **kwargs) -> VectorIndex:
        """Index ``vectors`` [N, D] (float32) under ``ids`` (N unique strings)."""
        vectors = _as_f32(vectors)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        chosen = auto_factory(len(vectors)) if factory == "auto" else factory
        index = cls(vectors.shape[1], chosen, **kwargs)
        if not index.index.is_trained:
            index.index.train(vectors)
        index.add(vectors, ids)
        if chosen.startswith("IVF") and "nprobe" not in kwargs:
            index.calibrate(vectors)
        return index

    def calibrate(self, vectors: np.ndarray, target_recall: float = 0.97, n_queries: int = 100, seed: int = 0) -> float:
        """Pick the smallest nprobe whose recall@10 against exact search reaches ``target_recall``.

        Queries are a sample of the indexed vectors, each leaving itself out (as "ads like this
        one" does); returns the recall reached.
        """
        import faiss

        rng = np.random.default_rng(seed)
        rows = rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
        queries = vectors[rows]
        _, truth = faiss.knn(queries, vectors, 11)
        truth_sets = [set(t) - {r} for t, r in zip(truth, rows, strict=True)]
        ivf = faiss.extract_index_ivf(self.index)
        recall = 0.0
        for nprobe in (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512):
            if nprobe > ivf.nlist:
                break
            ivf.nprobe = nprobe
            _, found = self.index.search(queries, 11)
            hits = [len(t & (set(f) - {r})) / max(1, len(t)) for t, f, r in zip(truth_sets, found, rows, strict=True)]
            recall = float(np.mean(hits))
            if recall >= target_recall:
                break
        self.nprobe = ivf.nprobe
        return recall

    def _tune(self) -> None:
        import faiss

        if "HNSW" in self.factory:
            hnsw = faiss.extract_index_ivf(self.index).quantizer if self.factory.startswith("IVF") else self.index
            faiss.downcast_index(hnsw).hnsw.efSearch = self.ef_search
        if self.factory.startswith("IVF"):
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe

    def add(self, vectors: np.ndarray, ids: list[str]) -> None:
        """Append new ads (no rebuild). Ids already present raise ValueError."""
        vectors = _as_f32(vectors)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        seen = set()
        dupes = [i for i in ids if i in self._pos or (i in seen or seen.add(i))]
        if dupes:
            raise ValueError(f"ids already in the index: {dupes[:5]}{' ...' if len(dupes) > 5 else ''}")
        start = len(self.ids)
        self.index.add(vectors)
        self.ids.extend(ids)
        self._pos.update({ad_id: start + i for i, ad_id in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, ad_id: str) -> bool:
        return ad_id in self._pos

    # -- queries ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, *, exclude: list[str] | None = None) -> SearchResult:
        """The k nearest ads of each query [Q, D]; ``exclude[q]`` (e.g. the query ad itself) is skipped."""
        queries = _as_f32(queries)
        extra = 1 if exclude else 0
        kk = min(k + extra, len(self.ids)) or 1
        dist, rows = self.index.search(queries, kk)
        out_ids: list[list[str]] = []
        out_dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for q in range(len(queries)):
            keep = [(r, d) for r, d in zip(rows[q], dist[q], strict=True) if r >= 0 and (not exclude or self.ids[r] != exclude[q])]
            keep = keep[:k]
            out_ids.append([self.ids[r] for r, _ in keep])
            out_dist[q, : len(keep)] = [d for _, d in keep]
        return SearchResult(out_ids, out_dist)

    def vector(self, ad_id: str) -> np.ndarray:
        if ad_id not in self._pos:
            raise KeyError(f"ad '{ad_id}' is not in this index")
        if self.factory.startswith("IVF"):
            import faiss

            ivf = faiss.extract_index_ivf(self.index)
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
        return self.index.reconstruct(self._pos[ad_id])

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``<path>.faiss`` and ``<path>.ids.json`` (each atomically, then sealed); returns the .faiss path."""
        import faiss

        from core.filestore import seal

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"dim": self.dim, "factory": self.factory, "ef_search": self.ef_search, "nprobe": self.nprobe, "ids": self.ids}
        for target, write in ((path.with_suffix(".faiss"), lambda tmp: faiss.write_index(self.index, tmp)),
                              (path.with_suffix(".ids.json"), lambda tmp: Path(tmp).write_text(json.dumps(meta)))):
            tmp = target.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{target.name}")
            try:
                write(str(tmp))
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            seal(target)
        return path.with_suffix(".faiss")

    @classmethod
    def load(cls, path: str | Path, *, what: str = "the index", fix: str = "rebuild it") -> VectorIndex:
        """A saved index; DamagedFile ("<what> is damaged ...; <fix>") when a file does not match its seal or cannot be parsed."""
        import faiss

        from core.filestore import DamagedFile, check_sealed

        path = Path(path)
        for part in (path.with_suffix(".ids.json"), path.with_suffix(".faiss")):
            check_sealed(part, f"{what} ({part.name})", fix)
        try:
            meta = json.loads(path.with_suffix(".ids.json").read_text())
            index = faiss.read_index(str(path.with_suffix(".faiss")))
        except (ValueError, RuntimeError) as exc:  # faiss raises RuntimeError on a truncated file
            raise DamagedFile(f"{what} is damaged (unreadable: {str(exc).splitlines()[0][:200]}); {fix}") from None
        if index.ntotal != len(meta["ids"]) or index.d != meta["dim"]:
            raise DamagedFile(f"{what} is damaged ({index.ntotal} vectors for {len(meta['ids'])} ids); {fix}")
        obj = cls.__new__(cls)
        obj.dim, obj.factory = meta["dim"], meta["factory"]
        obj.ef_search, obj.nprobe = meta["ef_search"], meta["nprobe"]
        obj.index = index
        obj.ids = list(meta["ids"])
        obj._pos = {ad_id: i for i, ad_id in enumerate(obj.ids)}
        obj._tune()
        return obj


def _as_f32(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {vectors.shape}")
    return vectors


def recall_at_k(approx: SearchResult, exact: SearchResult, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = [len(set(a[:k]) & set(e[:k])) / max(1, min(k, len(e))) for a, e in zip(approx.ids, exact.ids, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


@load_once(maxsize=16)
def _load_cached(path: str, mtime: float, faiss_mtime: float, what: str, fix: str) -> VectorIndex:  # noqa: ARG001 - mtimes key the cache
    return VectorIndex.load(path, what=what, fix=fix)


def load_cached(path: str | Path, *, what: str = "the index", fix: str = "rebuild it") -> VectorIndex:
    """A saved index, loaded once per process and again when either file is re-written (keyed by their mtimes).

    The object is shared: to extend an index, ``VectorIndex.load`` a private copy.
    """
    path = Path(path)
    return _load_cached(str(path), path.with_suffix(".ids.json").stat().st_mtime, path.with_suffix(".faiss").stat().st_mtime, what, fix)
