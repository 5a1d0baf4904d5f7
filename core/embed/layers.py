"""Building blocks shared by ION and ToTYEmb: the word encoder and masked softmax / pooling / selection."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Transformer encoder over word embeddings + learned positions (ION section 3.1).

    tokens [B, n] (0 = padding), token_mask [B, n] -> H [B, n, d_model] (zeros on padding).
    A text with no word at all gives all-zero states instead of NaNs.

    ``norm="pre"`` puts LayerNorm before each sub-layer (plus one at the end), which trains from scratch at
    Adam lr 1e-3 without a warm-up (Xiong et al., 2020); ``"post"`` is the original Transformer's placement,
    which at that learning rate trained unevenly across seeds on the demo catalog (docs/ion_training.md).
    """

    def __init__(self, vocab_size: int, d_model: int, layers: int, heads: int, dropout: float, max_words: int,
                 norm: str = "pre") -> None:
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"text encoder norm must be 'pre' or 'post', got {norm!r}")
        self.word = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.position = nn.Embedding(max_words, d_model)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True,
                                           norm_first=norm == "pre")
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, norm=nn.LayerNorm(d_model) if norm == "pre" else None,
                                             enable_nested_tensor=False)
        self.max_words = max_words

    def forward(self, tokens: Tensor, token_mask: Tensor) -> Tensor:
        n = tokens.shape[1]
        if n > self.max_words:
            raise ValueError(f"texts of {n} words exceed the model's max_words={self.max_words}")
        positions = torch.arange(n, device=tokens.device)
        x = self.drop(self.word(tokens) + self.position(positions)[None])
        pad = ~token_mask
        # a row with no word would attend to nothing (NaN): let it attend to its first slot, zeroed below
        empty = pad.all(dim=1)
        if empty.any():
            pad = pad.clone()
            pad[empty, 0] = False
        h = self.encoder(x, src_key_padding_mask=pad)
        return h * token_mask[..., None].to(h.dtype)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True; all-masked slices give zeros (not NaN)."""
    filled = scores.masked_fill(~mask, float("-inf"))
    any_valid = mask.any(dim=dim, keepdim=True)
    filled = torch.where(any_valid, filled, torch.zeros_like(filled))
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max-pool x [B, m, d] over m where mask [B, m] is True; rows with no valid item give zeros. -> [B, d]"""
    filled = x.masked_fill(~mask[..., None], float("-inf"))
    pooled = filled.max(dim=1).values
    return torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """Sum x [B, m, d] over the valid items of mask [B, m] -> [B, d]."""
    return (x * mask[..., None].to(x.dtype)).sum(dim=1)


def top_regions(scores: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Indices of the k highest scores per row, masked regions last (stable: ties keep input order).

    scores, mask [B, k1] -> (kept LongTensor [B, min(k, k1)], kept_mask BoolTensor [B, min(k, k1)]).
    """
    k = min(k, scores.shape[1])
    keyed = scores.detach().masked_fill(~mask, float("-inf"))
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices[:, :k]
    return order, torch.gather(mask, 1, order)


def gather_regions(v: Tensor, index: Tensor) -> Tensor:
    """v [B, k1, d], index [B, k] -> [B, k, d]."""
    return torch.gather(v, 1, index[..., None].expand(-1, -1, v.shape[-1]))


REGION_NORMS = ("standardise", "none")


def check_region_norm(value: str) -> None:
    if value not in REGION_NORMS:
        raise ValueError(f"region_norm must be one of {list(REGION_NORMS)}, got {value!r}")


class RegionProjection(nn.Module):
    """FFN_r (eq. 5): single-layer FFN from detector region features to d_model. [B, k1, D_r] -> [B, k1, d].

    Detector features are not normalised (YOLO neck activations reach ~10 on a ~0.7 spread), so each
    feature dimension is first standardised with the training regions' mean and standard deviation
    (``set_feature_stats``; buffers saved with the model; identity until set). Without it the projected
    regions swamp the word states at initialisation and training stalls (see docs/ion_training.md).
    ``region_norm="none"`` in the model config (the paper) never sets them: the identity stays.
    """

    def __init__(self, region_dim: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(region_dim, d_model)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("feature_mean", torch.zeros(region_dim))
        self.register_buffer("feature_std", torch.ones(region_dim))

    @torch.no_grad()
    def set_feature_stats(self, regions: Tensor, region_mask: Tensor) -> None:
        """Per-dimension mean / std of the real regions of a training set. regions [N, k1, D_r], region_mask [N, k1]."""
        real = regions[region_mask.bool()]
        if len(real) < 2:
            return  # too few regions to estimate a spread: keep the identity
        self.feature_mean.copy_(real.mean(dim=0))
        self.feature_std.copy_(real.std(dim=0).clamp_min(1e-3))

    def forward(self, regions: Tensor, region_mask: Tensor) -> Tensor:
        x = (regions - self.feature_mean) / self.feature_std
        return self.drop(torch.relu(self.linear(x))) * region_mask[..., None].to(regions.dtype)


def ffn(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """A one-layer FFN: Linear -> ReLU -> Dropout."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout))
