"""The similar-ad step backed by a retrieval model run: the run's FAISS index, loaded and checked by core.retrieval."""

from __future__ import annotations

from sqlalchemy import Engine

from core.audience.retrieval import EmbeddingAds
from core.retrieval.index import load_index
from core.runs import get_run


def similar_ads_for_audience(run_id: int, *, engine: Engine | None = None) -> EmbeddingAds:
    """A :class:`core.audience.retrieval.SimilarAds` callable backed by the run's FAISS index."""
    run = get_run(run_id, engine=engine)
    return EmbeddingAds(load_index(run), name=f"{run['kind']}#{run['id']}", model_run_id=run["id"])
