"""Losses: ION's batch-hardest triplet loss (eq. 14), the keyword cross-entropy, ToTYEmb's classification loss.

Note on eq. 13/14: the paper prints the hinge as ``[gamma - ||f_t - f_g||^2 + ||f_t - f_u||^2]_+``, with the
signs of the two distances swapped (that form would push positives apart). We implement the standard
triplet hinge of Schroff et al., which the text describes: ``[gamma + d(t, g_hat) - d(t, u_hat)]_+`` with
squared Euclidean distances, the hardest positive g_hat (farthest same-category ad, not the anchor itself)
and the hardest negative u_hat (closest other-category ad) in the mini-batch. Anchors without a positive
(or without a negative) in the batch are skipped. The paper sums over anchors; we average over the
anchors used, so the loss scale does not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class TripletResult:
    """loss: scalar; positive / negative: [B] indices of the mined pairs (-1 when none); valid: [B] anchors used;
    d_pos / d_neg: [B] squared distances to them (0 where invalid)."""

    loss: Tensor
    positive: Tensor
    negative: Tensor
    valid: Tensor
    d_pos: Tensor
    d_neg: Tensor


def squared_distances(emb: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances. emb [B, d] -> [B, B] (>= 0, exact zeros on the diagonal)."""
    sq = (emb * emb).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T
    d = d.clamp_min(0.0)
    return d * (1.0 - torch.eye(len(emb), device=emb.device, dtype=emb.dtype))


def batch_hard_triplet(emb: Tensor, labels: Tensor, margin: float) -> TripletResult:
    """Eq. 14 with the correct sign: mean over valid anchors of [margin + d(hardest pos) - d(hardest neg)]_+.

    emb [B, d] (L2-normalised ad vectors), labels [B] (category ids).
    """
    if emb.ndim != 2 or labels.shape != emb.shape[:1]:
        raise ValueError(f"expected emb [B, d] and labels [B], got {tuple(emb.shape)} and {tuple(labels.shape)}")
    dist = squared_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    d_pos, positive = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1)
    d_neg, negative = dist.masked_fill(~neg_mask, float("inf")).min(dim=1)
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    zero = torch.zeros_like(d_pos)
    d_pos, d_neg = torch.where(valid, d_pos, zero), torch.where(valid, d_neg, zero)
    hinge = F.relu(margin + d_pos - d_neg)
    loss = hinge[valid].mean() if valid.any() else emb.sum() * 0.0
    minus = torch.full_like(positive, -1)
    return TripletResult(loss, torch.where(valid, positive, minus), torch.where(valid, negative, minus), valid, d_pos, d_neg)


def keyword_loss(logits: Tensor, kw_labels: Tensor) -> Tensor:
    """Per-word binary cross-entropy of the keyword head. logits [B, n, 2], kw_labels [B, n] (-100 ignored)."""
    if not (kw_labels != -100).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, 2), kw_labels.reshape(-1), ignore_index=-100)


def classification_loss(logits: Tensor, classes: Tensor) -> Tensor:
    """Softmax cross-entropy over training categories (ToTYEmb eq. 21). logits [B, C], classes [B] (-100 ignored)."""
    if not (classes != -100).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, classes, ignore_index=-100)
