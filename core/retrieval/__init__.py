"""Similar-ad retrieval over model runs: train / embed, evaluate as the paper, index, search.

The glue between the catalog (core.store), the cached region features (core.regions), the embedding
models (core.embed) and the FAISS index (core.search). One model run = one trained model (ION,
ToTYEmb) or one offline baseline (text: MiniLM, image: EfficientNet-Lite0, concat: both), its test
metrics, and a persisted index of the WHOLE catalog under ``home/runs/<id>/`` (the run rows: core.runs).

Evaluation follows ION section 4.2: every test ad queries all other test ads (Euclidean distance);
Hit P@1..10 is reported separately for categories seen in training and held-out (unseen) ones.

Modules: :mod:`~core.retrieval.catalog` (catalog ads, records, images, the data split),
:mod:`~core.retrieval.regions` (region inputs), :mod:`~core.retrieval.models` (a run's model as an embedder),
:mod:`~core.retrieval.training` (train_run), :mod:`~core.retrieval.evaluation` (Hit P@k tables, chance),
:mod:`~core.retrieval.index` (the run's FAISS index), :mod:`~core.retrieval.nearest` (search),
:mod:`~core.retrieval.projection` (the embedding map). This package re-exports their public API for
callers outside it; the modules themselves import each other directly, never through this package.
"""

from core.errors import RetrievalError
from core.retrieval.catalog import CatalogAds, load_catalog_ads, make_split
from core.retrieval.evaluation import chance_levels, evaluate_runs
from core.retrieval.index import add_new_ads, build_index, load_index, resolve_run
from core.retrieval.models import (
    BASELINE_KINDS,
    TRAINED_KINDS,
    baseline_vectors,
    clue_scorer,
    embed_query,
    load_model,
    run_detector_version,
)
from core.retrieval.nearest import search
from core.retrieval.projection import embedding_map, run_vectors
from core.retrieval.regions import RegionData, regions_for_ads, regions_for_image
from core.retrieval.training import MODEL_OPTIONS, train_run

__all__ = [
    "BASELINE_KINDS",
    "MODEL_OPTIONS",
    "TRAINED_KINDS",
    "CatalogAds",
    "RegionData",
    "RetrievalError",
    "add_new_ads",
    "baseline_vectors",
    "build_index",
    "chance_levels",
    "clue_scorer",
    "embed_query",
    "embedding_map",
    "evaluate_runs",
    "load_catalog_ads",
    "load_index",
    "load_model",
    "make_split",
    "regions_for_ads",
    "regions_for_image",
    "resolve_run",
    "run_detector_version",
    "run_vectors",
    "search",
    "train_run",
]
