"""What every relevance scorer shares: the interface, the BCE training loop, Platt calibration, phrase vectors.

A scorer maps (phrase, creative) pairs to a probability of relevance. ``pair_logits`` scores aligned lists
(pair i = phrases[i] with creatives[i]); ``score`` scores every phrase against every creative -> [P, C].
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.features import Creative
from core.matching.triples import Triple
from core.progress import ProgressFn, no_progress

_PHRASE_CACHE: dict[str, np.ndarray] = {}


def phrase_vectors(phrases: Sequence[str]) -> np.ndarray:
    """MiniLM sentence vectors of phrases (cached in-process). -> float32 [P, 384], L2-normalised."""
    from core.embed.baselines import text_embeddings

    todo = sorted({p for p in phrases if p not in _PHRASE_CACHE})
    if todo:
        for p, v in zip(todo, text_embeddings(todo), strict=True):
            _PHRASE_CACHE[p] = v
    return np.stack([_PHRASE_CACHE[p] for p in phrases]) if phrases else np.zeros((0, 384), np.float32)


@dataclass
class FitConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None  # stop after this many optimiser steps (tests, quick runs)

    def to_dict(self) -> dict:
        return asdict(self)


def platt_fit(scores: np.ndarray, labels: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Platt scaling: (a, b) maximising the likelihood of sigmoid(a * score + b) (Newton steps, Platt's smoothed targets)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    if len(s) == 0 or y.min() == y.max():
        return 1.0, 0.0
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 0.0, math.log((n_neg + 1) / (n_pos + 1)) * -1.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(a * s + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - t) * s), np.sum(p - t)])
        h = np.array([[np.sum(w * s * s), np.sum(w * s)], [np.sum(w * s), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


class MatchScorer(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``pair_logits``; ``variant`` / ``reason`` say what runs and why."""

    name = "base"

    def __init__(self) -> None:
        super().__init__()
        self.variant = ""
        self.reason = ""

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def config_dict(self) -> dict:
        return {}

    @torch.no_grad()
    def score(self, phrases: Sequence[str], creatives: Sequence[Creative], batch_size: int = 256) -> np.ndarray:
        """Probability of relevance of every creative for every phrase. -> float32 [P, C]."""
        self.eval()
        pairs = [(p, c) for p in phrases for c in creatives]
        out = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            out.append(torch.sigmoid(self.pair_logits([p for p, _ in chunk], [c for _, c in chunk])).float().cpu())
        flat = torch.cat(out).numpy() if out else np.zeros(0, np.float32)
        return flat.reshape(len(phrases), len(creatives)).astype(np.float32)

    def info(self) -> dict:
        return {"scorer": self.name, "variant": self.variant, "reason": self.reason}

    # -- training ------------------------------------------------------------------------------------
    def triple_loss(self, triples: Sequence[Triple], creatives: dict[str, Creative]) -> Tensor:
        logits = self.pair_logits([t.phrase for t in triples], [creatives[t.ad_id] for t in triples])
        labels = torch.tensor([float(t.label) for t in triples], device=logits.device)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    @torch.no_grad()
    def mean_loss(self, triples: Sequence[Triple], creatives: dict[str, Creative], batch_size: int = 128) -> float:
        """Mean training loss over ``triples`` in eval mode (before / after checks)."""
        self.eval()
        total = 0.0
        for start in range(0, len(triples), batch_size):
            chunk = list(triples[start:start + batch_size])
            total += float(self.triple_loss(chunk, creatives)) * len(chunk)
        return total / max(1, len(triples))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def fit(self, triples: Sequence[Triple], creatives: dict[str, Creative], cfg: FitConfig | None = None,
            progress: ProgressFn = no_progress) -> dict:
        """Minimise ``triple_loss`` with AdamW over shuffled mini-batches; returns the loss per epoch."""
        cfg = cfg or FitConfig()
        triples = [t for t in triples if t.ad_id in creatives]
        if not triples:
            raise ValueError("no training triple has a loaded creative")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.to(cfg.device)
        opt = torch.optim.AdamW(self.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        history, steps, started = [], 0, time.perf_counter()
        n_batches = math.ceil(len(triples) / cfg.batch_size)
        for epoch in range(cfg.epochs):
            self.train()
            order = rng.permutation(len(triples))
            total = 0.0
            for b in range(n_batches):
                batch = [triples[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                loss = self.triple_loss(batch, creatives)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
                steps += 1
                progress(epoch * n_batches + b + 1, cfg.epochs * n_batches, f"train {self.name}: epoch {epoch + 1}, loss {loss.item():.4f}")
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    break
            history.append(total / len(triples))
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
        self.eval()
        return {"epoch_loss": [round(x, 5) for x in history], "steps": steps, "seconds": round(time.perf_counter() - started, 2),
                "triples": len(triples)}
