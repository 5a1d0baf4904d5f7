"""Is a training run healthy? Two failures that look like success on a progress bar, named in words.

* the loss stays at its starting value (LXMERT's stayed at ln 2 for 10 epochs: it never left the base rate);
* the embedding collapses (every ad on one point: the triplet loss is then at its margin and search is random).

``training_warnings`` returns the sentences the pages show beside a run (stored in its metrics as ``warnings``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STALL_TOLERANCE = 0.02  # the last epoch's loss within 2% of the first: the loss did not move
COLLAPSE_SPREAD = 1e-3  # mean squared distance to the centroid, relative to the mean squared norm


def loss_stalled(losses: Sequence[float], tolerance: float = STALL_TOLERANCE) -> bool:
    """True when there are 3+ epochs and the last loss is no lower than the first by more than ``tolerance`` (relative)."""
    vals = [float(v) for v in losses if v is not None and np.isfinite(v)]
    if len(vals) < 3:
        return False
    first, last = vals[0], vals[-1]
    return last >= first * (1 - tolerance) if first > 0 else last >= first


def spread(vectors: np.ndarray) -> float:
    """Mean squared distance of the vectors to their centroid over their mean squared norm (0: all on one point)."""
    v = np.asarray(vectors, np.float64)
    if v.ndim != 2 or len(v) < 2:
        return float("nan")
    norm = float(np.mean(np.sum(v * v, axis=1)))
    if norm == 0:
        return 0.0
    return float(np.mean(np.sum((v - v.mean(axis=0)) ** 2, axis=1)) / norm)


def collapsed(vectors: np.ndarray, threshold: float = COLLAPSE_SPREAD) -> bool:
    s = spread(vectors)
    return bool(np.isfinite(s) and s < threshold)


def training_warnings(losses: Sequence[float] = (), vectors: np.ndarray | None = None, *, loss_before: float | None = None,
                      loss_after: float | None = None, val_auc: float | None = None) -> list[str]:
    """Plain sentences for what looks wrong: a stalled loss, collapsed embeddings, a scorer at chance on validation."""
    out = []
    if loss_stalled(losses):
        out.append(f"The training loss stayed at its starting value ({float(losses[0]):.4f} -> {float(losses[-1]):.4f}): "
                   "the model did not learn; try a lower learning rate, more epochs or the other recipe.")
    elif loss_before is not None and loss_after is not None and loss_after >= loss_before * (1 - STALL_TOLERANCE):
        out.append(f"The training loss did not fall ({loss_before:.4f} before, {loss_after:.4f} after): the model did not learn.")
    if vectors is not None and collapsed(vectors):
        out.append(f"The embeddings collapsed: every ad lies on nearly one point (spread {spread(vectors):.2e}); "
                   "nearest-neighbour search over them is random.")
    if val_auc is not None and val_auc < 0.55:
        out.append(f"Validation AUC {val_auc:.3f}: no better than chance on phrases it was not trained on.")
    return out
