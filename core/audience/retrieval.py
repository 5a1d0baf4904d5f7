"""The similar-ad step: given a package's ads, the N most similar other ads.

Any callable ``(package_ad_ids, n) -> ad ids`` with a ``name`` works (:class:`SimilarAds`).
Baselines: :class:`RandomAds` and the labelled :class:`SameCategoryOracle`; :class:`EmbeddingAds`
wraps any embedding model through its FAISS :class:`core.search.VectorIndex` (ION, ToTYEmb,
text-only, image-only runs all plug in the same way, see :func:`make_retriever`).
Retrievers never return the package's own ads and raise SimilarAdsError when N exceeds the catalog.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from sqlalchemy import Engine, select

from core.audience.errors import NotFoundError, SimilarAdsError
from core.search.index import VectorIndex


@runtime_checkable
class SimilarAds(Protocol):
    """``retriever(package_ad_ids, n)`` -> up to ``n`` ad ids, most similar first, none of the package's."""

    name: str

    def __call__(self, package_ad_ids: list[str], n: int) -> list[str]: ...


def _rng(seed: int, package_ad_ids: Sequence[str]) -> np.random.Generator:
    """A generator fixed by the seed and the package (same package, same draw)."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(sorted(package_ad_ids)).encode())])


def _check_n(n: int, available: int, what: str) -> None:
    if n < 1:
        raise SimilarAdsError(f"the number of similar ads must be at least 1 (got {n})")
    if n > available:
        raise SimilarAdsError(f"asked for {n} similar ads but {what} holds only {available} ads outside the package")


class RandomAds:
    """Baseline: N ads drawn at random from the catalog (outside the package)."""

    name = "random"
    model_run_id: int | None = None

    def __init__(self, ad_ids: Sequence[str], seed: int = 0):
        self.ad_ids = sorted(set(ad_ids))
        self.seed = seed

    def __call__(self, package_ad_ids: list[str], n: int) -> list[str]:
        own = set(package_ad_ids)
        pool = [a for a in self.ad_ids if a not in own]
        _check_n(n, len(pool), "the catalog")
        picks = _rng(self.seed, package_ad_ids).choice(len(pool), size=n, replace=False)
        return [pool[i] for i in picks]


class SameCategoryOracle:
    """Upper bound on labelled data: N ads of the package's own category (fewer if the category is small)."""

    name = "oracle"
    model_run_id: int | None = None

    def __init__(self, categories: Mapping[str, int | None], seed: int = 0):
        self.categories = dict(categories)
        self.seed = seed

    def __call__(self, package_ad_ids: list[str], n: int) -> list[str]:
        own = set(package_ad_ids)
        _check_n(n, len(self.categories) - len(own & self.categories.keys()), "the catalog")
        labels = [self.categories.get(a) for a in package_ad_ids if self.categories.get(a) is not None]
        if not labels:
            raise SimilarAdsError("the oracle needs category labels, and the package's ads have none")
        values, counts = np.unique(np.array(labels), return_counts=True)
        category = values[int(np.argmax(counts))]
        pool = sorted(a for a, c in self.categories.items() if c == category and a not in own)
        if len(pool) <= n:
            return pool
        picks = _rng(self.seed, package_ad_ids).choice(len(pool), size=n, replace=False)
        return [pool[i] for i in sorted(picks)]


class EmbeddingAds:
    """Nearest neighbours in an embedding space: each package ad queries the index, hits merged by distance.

    ``vectors`` gives the package ads' embeddings [D] when they are not in the index (e.g. a new
    package); otherwise they are read back from the index.
    """

    def __init__(self, index: VectorIndex, vectors: Mapping[str, np.ndarray] | None = None, *,
                 name: str = "model", model_run_id: int | None = None):
        self.index = index
        self.vectors = dict(vectors or {})
        self.name = name
        self.model_run_id = model_run_id

    def _vector(self, ad_id: str) -> np.ndarray:
        if ad_id in self.vectors:
            return np.asarray(self.vectors[ad_id], dtype=np.float32).reshape(-1)
        if ad_id in self.index:
            return self.index.vector(ad_id)
        raise SimilarAdsError(f"ad {ad_id} has no embedding in {self.name} (not in its index and no vector given)")

    def __call__(self, package_ad_ids: list[str], n: int) -> list[str]:
        own = set(package_ad_ids)
        _check_n(n, len(self.index) - sum(1 for a in own if a in self.index), f"the {self.name} index")
        queries = np.stack([self._vector(a) for a in package_ad_ids])
        k = min(len(self.index), n + len(own))
        result = self.index.search(queries, k)
        best: dict[str, float] = {}
        for ids, dists in zip(result.ids, result.distances, strict=True):
            for ad_id, d in zip(ids, dists, strict=False):
                if ad_id not in own and d < best.get(ad_id, np.inf):
                    best[ad_id] = float(d)
        return [a for a, _ in sorted(best.items(), key=lambda item: (item[1], item[0]))[:n]]


BASELINES = ("random", "oracle")


def _model_run_retriever(engine: Engine, run_id: int | None, kind: str | None) -> EmbeddingAds:
    from core.filestore import resolve
    from core.store import ModelRun, session_scope

    with session_scope(engine) as s:
        if run_id is not None:
            run = s.get(ModelRun, run_id)
            if run is None:
                raise NotFoundError(f"model run {run_id} does not exist (list runs on the Models page or with the CLI)")
            rid, rkind, index_path = run.id, run.kind, run.index_path
    if run_id is None:
        from core.runs import latest_done

        found = latest_done(kind, engine=engine)  # the newest full model, ablations and variants only as a fallback
        if found is None:
            raise NotFoundError(f"no finished '{kind}' model run with an index: train one first, or use "
                                f"--retriever {' / '.join(BASELINES)}")
        rid, rkind, index_path = found["id"], found["kind"], found["index_path"]
    if not index_path:
        raise SimilarAdsError(f"model run {rid} ({rkind}) has no vector index: build it before expanding with it")
    path = resolve(index_path)
    if not Path(path).with_suffix(".faiss").exists():
        raise SimilarAdsError(f"the index file of model run {rid} is missing ({index_path}): rebuild the index")
    return EmbeddingAds(VectorIndex.load(path), name=f"{rkind}#{rid}", model_run_id=rid)


def make_retriever(kind: str, *, engine: Engine, model_run_id: int | None = None, seed: int = 0) -> SimilarAds:
    """``random`` | ``oracle`` | ``model`` (needs ``model_run_id``) | a model kind (``ion``, ``totyemb``,
    ``text``, ``image``...: its latest finished run)."""
    from core.audience.logs import ad_categories
    from core.store import session_scope

    kind = kind.strip().lower()
    if kind in BASELINES:
        with session_scope(engine) as s:
            cats = ad_categories(s)
        if not cats:
            raise SimilarAdsError("the catalog holds no ads")
        return RandomAds(list(cats), seed) if kind == "random" else SameCategoryOracle(cats, seed)
    if kind == "model":
        if model_run_id is None:
            raise SimilarAdsError("--retriever model needs a model run id (--model RUN)")
        return _model_run_retriever(engine, model_run_id, None)
    return _model_run_retriever(engine, None, kind)  # a kind means its newest run: --model belongs to "model" only


def embedding_runs(engine: Engine) -> list[dict]:
    """Finished model runs with a vector index (usable by ``make_retriever('model', model_run_id=...)``)."""
    from core.store import ModelRun, session_scope

    with session_scope(engine) as s:
        rows = s.execute(select(ModelRun.id, ModelRun.kind, ModelRun.name).where(
            ModelRun.status == "done", ModelRun.index_path.is_not(None)).order_by(ModelRun.id.desc())).all()
    return [{"id": i, "kind": k, "name": n} for i, k, n in rows]
