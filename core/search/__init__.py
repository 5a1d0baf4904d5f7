"""Vector search over ad embeddings (FAISS)."""

from core.search.index import VectorIndex, auto_factory, recall_at_k

__all__ = ["VectorIndex", "auto_factory", "recall_at_k"]
