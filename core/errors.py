"""Error types shared across features; this module imports nothing from ``core``, so any module can raise them."""

from __future__ import annotations


class RetrievalError(ValueError):
    """A similar-ad request that cannot be served (no run, no index, a query the model cannot take, more ads than the
    catalog holds); the message says why and what to do."""
