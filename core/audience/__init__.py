"""Audience expansion: similar ads' clickers enlarge a package's targeting model (ION section 4.7).

Entry points: :func:`run_expansion`, :func:`run_all_packages`, :func:`make_retriever`; runs are
stored by :mod:`core.audience.store`.
"""

from core.audience.errors import (
    AudienceError,
    FeatureError,
    NoClickersError,
    NoImpressionsError,
    NotFoundError,
    SimilarAdsError,
)
from core.audience.expand import ExpansionConfig, ExpansionResult, ExpansionTable, run_all_packages, run_expansion
from core.audience.retrieval import EmbeddingAds, RandomAds, SameCategoryOracle, SimilarAds, make_retriever

__all__ = [
    "AudienceError",
    "EmbeddingAds",
    "ExpansionConfig",
    "ExpansionResult",
    "ExpansionTable",
    "FeatureError",
    "NoClickersError",
    "NoImpressionsError",
    "NotFoundError",
    "RandomAds",
    "SimilarAdsError",
    "SameCategoryOracle",
    "SimilarAds",
    "make_retriever",
    "run_all_packages",
    "run_expansion",
]
