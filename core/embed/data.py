"""In-memory training data for the embedding models and the class-balanced (P categories x K ads) batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from core.embed.text import Vocabulary, Word, encode_texts, tokenize


class PackedRegions:
    """Region features [N, k1, D_r] held packed: the real regions in one flat [R, D_r] tensor and, per ad and slot, the
    row of its region (-1: padding). Indexed like the padded tensor (ads -> [B, k1, D_r] with zeros in empty slots; a
    [N, k1] boolean mask -> the selected real regions), it gives exactly what the dense tensor gives, without holding
    the padding: about 5 of the 20 slots are filled on the demo worlds, so a 58k-ad training split takes 1.6 GB, not 6 GB.
    """

    def __init__(self, flat: Tensor, rows: Tensor) -> None:
        self.flat, self.rows = flat, rows

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.rows.shape[0], self.rows.shape[1], self.flat.shape[1]))

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index) -> Tensor:
        rows = self.rows[index]
        out = self.flat.new_zeros((*rows.shape, self.flat.shape[1]))
        real = rows >= 0
        out[real] = self.flat[rows[real]]
        return out

    def dense(self) -> Tensor:
        """The padded tensor [N, k1, D_r]."""
        return self[torch.arange(len(self))]


@dataclass
class EmbedDataset:
    """N ads as tensors (the model input contract of core.embed.ion, plus one category id per ad).

    tokens [N, n] long, token_mask [N, n] bool, kw_labels [N, n] long, regions [N, k1, D_r] float (a Tensor, or
    :class:`PackedRegions` from :func:`build_dataset`: :meth:`batch` gives padded tensors either way),
    region_mask [N, k1] bool, region_conf [N, k1] float, labels [N] long.
    """

    tokens: Tensor
    token_mask: Tensor
    kw_labels: Tensor
    regions: Tensor | PackedRegions
    region_mask: Tensor
    region_conf: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        n = len(self.labels)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"EmbedDataset: {f.name} has {len(getattr(self, f.name))} rows, labels has {n}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def region_dim(self) -> int:
        return int(self.regions.shape[-1])

    def batch(self, index: Sequence[int] | Tensor, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """The rows ``index`` as the dict of tensors that ``model.loss`` / ``model.forward_batch`` take."""
        idx = torch.as_tensor(index, dtype=torch.long)
        out = {f.name: getattr(self, f.name)[idx] for f in fields(self)}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    def subset(self, index: Sequence[int] | Tensor) -> EmbedDataset:
        return EmbedDataset(**self.batch(index))


def pad_regions(features: Sequence[np.ndarray], confidences: Sequence[np.ndarray], k1: int, region_dim: int | None = None):
    """Per-ad region arrays -> (regions [N, k1, D_r], region_mask [N, k1], region_conf [N, k1]).

    Each ad's regions are sorted by confidence (descending) and cut to k1; ads with fewer are padded.
    An ad may have no region (array of shape (0, D_r)).
    """
    packed, mask, conf = pack_regions(features, confidences, k1, region_dim)
    return packed.dense(), mask, conf


def pack_regions(features: Sequence[np.ndarray], confidences: Sequence[np.ndarray], k1: int, region_dim: int | None = None
                 ) -> tuple[PackedRegions, Tensor, Tensor]:
    """:func:`pad_regions` with the regions held packed (:class:`PackedRegions`)."""
    if len(features) != len(confidences):
        raise ValueError(f"{len(features)} region feature arrays but {len(confidences)} confidence arrays")
    dims = {np.asarray(f).shape[-1] for f in features if np.asarray(f).ndim == 2 and len(f)}
    if region_dim is None:
        if len(dims) != 1:
            raise ValueError(f"region features must all have one dimension, found {sorted(dims) or 'none'}")
        region_dim = dims.pop()
    elif dims - {region_dim}:
        raise ValueError(f"region features of dimension {sorted(dims)} do not match the model's {region_dim}")
    total = sum(min(k1, len(np.asarray(f))) for f in features)
    flat = torch.zeros(total, region_dim)
    rows = torch.full((len(features), k1), -1, dtype=torch.long)
    mask = torch.zeros(len(features), k1, dtype=torch.bool)
    conf = torch.zeros(len(features), k1)
    filled = 0
    for row, (feat, c) in enumerate(zip(features, confidences, strict=True)):
        feat, c = np.asarray(feat, dtype=np.float32), np.asarray(c, dtype=np.float32).reshape(-1)
        if len(feat) == 0:
            continue
        if feat.ndim != 2 or len(feat) != len(c):
            raise ValueError(f"ad {row}: region features {feat.shape} do not match {len(c)} confidences")
        if not np.isfinite(feat).all() or not np.isfinite(c).all():
            raise ValueError(f"ad {row}: region features or confidences are not finite")
        order = np.argsort(-c, kind="stable")[:k1]
        m = len(order)
        flat[filled: filled + m] = torch.from_numpy(feat[order])
        rows[row, :m] = torch.arange(filled, filled + m)
        conf[row, :m] = torch.from_numpy(c[order])
        mask[row, :m] = True
        filled += m
    return PackedRegions(flat, rows), mask, conf


def build_dataset(
    texts: Sequence[str] | Sequence[Sequence[Word]],
    region_features: Sequence[np.ndarray],
    region_confidences: Sequence[np.ndarray],
    labels: Sequence[int],
    vocab: Vocabulary,
    *,
    k1: int = 20,
    max_words: int = 32,
    region_dim: int | None = None,
) -> EmbedDataset:
    """Tensors for N ads from their texts (raw strings, or already tokenized), region arrays and category ids."""
    if not (len(texts) == len(region_features) == len(labels)):
        raise ValueError(f"got {len(texts)} texts, {len(region_features)} region arrays and {len(labels)} labels")
    tokenized = [tokenize(t) if isinstance(t, str) else list(t) for t in texts]
    tokens, token_mask, kw = encode_texts(tokenized, vocab, max_words)
    regions, region_mask, region_conf = pack_regions(region_features, region_confidences, k1, region_dim)
    return EmbedDataset(tokens, token_mask, kw, regions, region_mask, region_conf, torch.as_tensor(list(labels), dtype=torch.long))


def balanced_batches(labels: Sequence[int] | Tensor, p: int, k: int, seed: int) -> list[list[int]]:
    """One epoch of class-balanced batches: each holds up to ``p`` categories with ``k`` ads each.

    Every ad appears exactly once per epoch. A category's ads are shuffled and cut into groups of ``k``
    (a leftover single ad joins the previous group, so every group of a category with >= 2 ads has a
    positive pair); groups are then packed ``p`` at a time, never two groups of one category in a batch.
    Deterministic for a seed.
    """
    if p < 2 or k < 2:
        raise ValueError("balanced batches need p >= 2 categories and k >= 2 ads per category")
    rng = np.random.default_rng(seed)
    labels = np.asarray(torch.as_tensor(labels).cpu())
    groups: list[tuple[int, list[int]]] = []
    for cat in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cat)).tolist()
        chunks = [idx[i : i + k] for i in range(0, len(idx), k)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2].extend(chunks.pop())
        groups.extend((int(cat), c) for c in chunks)
    pending = [groups[i] for i in rng.permutation(len(groups))]
    batches: list[list[int]] = []
    while pending:
        batch: list[int] = []
        cats: set[int] = set()
        rest = []
        for cat, chunk in pending:
            if len(cats) < p and cat not in cats:
                cats.add(cat)
                batch.extend(chunk)
            else:
                rest.append((cat, chunk))
        batches.append(batch)
        pending = rest
    return batches


def sequential_batches(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))
