"""Training loop for ION and ToTYEmb (paper: Adam lr 1e-3, batch 32, 30 epochs, best epoch by validation loss).

``train_model`` works on any model with ``loss(batch) -> (loss, parts)`` and ``forward_batch(batch)``;
it is deterministic for a seed on CPU, reports progress, can be cancelled between batches, and leaves
the model holding the weights of the epoch with the lowest validation loss (training loss when there
is no validation set).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from core.embed.data import EmbedDataset, balanced_batches, sequential_batches
from core.progress import ProgressFn, no_progress

PAPER_EPOCHS = 30
MIN_DEFAULT_STEPS = 4000
MAX_DEFAULT_EPOCHS = 100


def default_epochs(batches_per_epoch: int) -> int:
    """The paper's 30 epochs, or more on a small catalog so that training makes at least 4,000 optimiser steps.

    The paper's 30 epochs over its 9,413 MP training ads are ~8,800 steps of batch 32; 30 epochs of the
    1,171-ad demo training split are only ~1,100, and a Transformer trained from scratch is still improving
    there: ION on the demo world went from seen P@1 27% at 53 epochs (2,000 steps) to 42% at 100
    (docs/ion_training.md). Capped at 100 epochs.
    """
    if batches_per_epoch < 1:
        return PAPER_EPOCHS
    return int(min(MAX_DEFAULT_EPOCHS, max(PAPER_EPOCHS, math.ceil(MIN_DEFAULT_STEPS / batches_per_epoch))))


def default_epochs_for(n_train: int, batch_size: int = 32) -> int:
    """What :func:`default_epochs` picks for ``n_train`` training ads in batches of ``batch_size`` (what "auto" means)."""
    return default_epochs(math.ceil(n_train / batch_size) if n_train > 0 else 0)


class TrainingCancelled(Exception):
    """Raised when ``should_stop()`` returned True; the model keeps its best weights so far."""


@dataclass
class TrainConfig:
    """Training settings (paper: Adam, lr 1e-3, batch 32, 30 epochs).

    ``epochs=None`` picks ``default_epochs`` when training starts (the paper's 30, more on small
    catalogs; ``train_model`` writes the number back into the config). At the paper's sizes one epoch of
    the 1,171-ad demo training split takes ~4.5 s on the 2-core build machine, so the 100 default epochs
    take ~7.5 min. Batches are class-balanced: ``categories_per_batch`` x ``ads_per_category`` = 8 x 4 = 32, the paper's
    batch size, so every anchor has positives. ``sampler="random"`` gives plain shuffled batches of
    ``batch_size`` (for ToTYEmb, whose classification loss needs no positives in the batch).
    """

    epochs: int | None = None
    lr: float = 1e-3
    batch_size: int = 32
    categories_per_batch: int = 8
    ads_per_category: int = 4
    sampler: str = "balanced"  # "balanced" or "random"
    seed: int = 0
    device: str | None = None  # None: core.device.resolve_device() (ADLENS_DEVICE, auto = cuda > mps > cpu)
    weight_decay: float = 0.0
    grad_clip: float | None = None  # the paper clips nothing
    region_drop: float = 0.0  # share of training ads shown without their regions in each batch (0: the paper)

    def __post_init__(self) -> None:
        if self.device is None:
            from core.device import resolve_device

            self.device = resolve_device().name
        if self.epochs is not None and self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.sampler not in {"balanced", "random"}:
            raise ValueError(f"sampler must be 'balanced' or 'random', got {self.sampler!r}")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if not 0.0 <= self.region_drop < 1.0:
            raise ValueError("region_drop must lie in [0, 1)")


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    best_epoch: int  # 1-based
    best_loss: float
    history: list[EpochLog]
    cancelled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _batches(ds: EmbedDataset, cfg: TrainConfig, seed: int) -> list[list[int]]:
    if cfg.sampler == "balanced":
        return balanced_batches(ds.labels, cfg.categories_per_batch, cfg.ads_per_category, seed)
    order = np.random.default_rng(seed).permutation(len(ds)).tolist()
    return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]


def drop_regions(batch: dict[str, Tensor], rate: float, generator: torch.Generator) -> Tensor:
    """Hide all regions of a random ``rate`` share of the batch's ads (in place); -> the dropped rows [B] bool.

    ION is queried with a phrase alone (no picture) on the Similar ads page; an ad without regions in
    training teaches the text path to place such queries among the ads of their category.
    """
    dropped = torch.rand(len(batch["region_mask"]), generator=generator) < rate
    dropped = dropped.to(batch["region_mask"].device)
    batch["region_mask"] = batch["region_mask"] & ~dropped[:, None]
    batch["region_conf"] = batch["region_conf"].masked_fill(dropped[:, None], 0.0)
    batch["regions"] = batch["regions"].masked_fill(dropped[:, None, None], 0.0)
    return dropped


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, ds: EmbedDataset, cfg: TrainConfig) -> bool:
    """Re-estimate every BatchNorm's running statistics over ``ds`` with dropout off ("precise BN").

    During training the running averages mix batches taken with dropout on and from weights that kept
    moving; evaluated with them, the embeddings' spread (and so the validation triplet loss) wandered from
    epoch to epoch and the best-epoch choice followed the noise. Averaging the batch statistics of the
    current weights, dropout off, gives eval-mode embeddings normalised as in training. -> whether any BN was found.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    for idx in _batches(ds, cfg, 0):
        if len(idx) > 1:
            model.forward_batch(ds.batch(idx, cfg.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)
    return True


@torch.no_grad()
def evaluate_loss(model: nn.Module, ds: EmbedDataset, cfg: TrainConfig, seed: int = 0) -> float:
    """Mean loss over a fixed (seeded) set of batches of ``ds``, in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for idx in _batches(ds, cfg, seed):
        loss, _ = model.loss(ds.batch(idx, cfg.device))
        total += float(loss) * len(idx)
        count += len(idx)
    model.train(was_training)
    return total / max(count, 1)


def train_model(
    model: nn.Module,
    train: EmbedDataset,
    val: EmbedDataset | None = None,
    cfg: TrainConfig | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[list[EpochLog]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place with Adam; keep the weights of the best epoch (by validation loss).

    ``on_epoch(history)`` is called after every epoch with the epochs so far (live curves).

    progress(done, total, "train: epoch e/E loss x") is called after every batch.
    """
    cfg = cfg or TrainConfig()
    if len(train) < 2:
        raise ValueError("training needs at least 2 ads")
    if len(torch.unique(train.labels)) < 2:
        raise ValueError("training needs ads of at least 2 categories")
    torch.manual_seed(cfg.seed)
    model.to(cfg.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.epochs is None:
        cfg.epochs = default_epochs(len(_batches(train, cfg, cfg.seed * 1000)))
    plans = [_batches(train, cfg, cfg.seed * 1000 + epoch) for epoch in range(1, cfg.epochs + 1)]
    drop_gen = torch.Generator().manual_seed(cfg.seed)
    total_steps, step = sum(len(p) for p in plans), 0
    history: list[EpochLog] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    cancelled = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        seen = 0
        for idx in plans[epoch - 1]:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            batch = train.batch(idx, cfg.device)
            if cfg.region_drop > 0:
                drop_regions(batch, cfg.region_drop, drop_gen)
            loss, parts = model.loss(batch)
            if not torch.isfinite(loss):
                raise ValueError(f"training diverged (loss {float(loss)}) in epoch {epoch}; try a lower learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            seen += len(idx)
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                sums[key] = sums.get(key, 0.0) + value * len(idx)
            step += 1
            progress(step, total_steps, f"train: epoch {epoch}/{cfg.epochs} loss {float(loss.detach()):.4f}")
        if cancelled:
            break
        means = {k: v / max(seen, 1) for k, v in sums.items()}
        recalibrate_batchnorm(model, train, cfg)
        val_loss = evaluate_loss(model, val, cfg) if val is not None and len(val) > 1 else None
        history.append(EpochLog(epoch, means.get("loss", math.nan), val_loss, {k: v for k, v in means.items() if k != "loss"}))
        if on_epoch is not None:
            on_epoch(list(history))
        score = val_loss if val_loss is not None else means.get("loss", math.inf)
        if score < best_loss:
            best_loss, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    result = TrainResult(best_epoch, best_loss, history, cancelled)
    if cancelled and should_stop is not None and not history:
        raise TrainingCancelled("training was cancelled before the first epoch finished")
    return result


@torch.no_grad()
def embed(model: nn.Module, ds: EmbedDataset, batch_size: int = 256, device: str | None = None,
          progress: ProgressFn = no_progress) -> np.ndarray:
    """Ad vectors of every row of ``ds`` (eval mode; on ``device``, default: where the model is). -> float32 [N, d]."""
    model.eval()
    if device is None:
        device = str(next(model.parameters()).device)
    model.to(device)
    chunks = []
    n = len(ds)
    for idx in sequential_batches(n, batch_size):
        chunks.append(model.forward_batch(ds.batch(idx, device)).embedding.float().cpu().numpy())
        progress(idx[-1] + 1, n, "embed: ads")
    dim = getattr(model.config, "d_out", getattr(model.config, "d_model", 0))
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
