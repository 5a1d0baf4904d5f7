"""What every relevance scorer shares: the interface, the BCE training loop, Platt calibration, phrase vectors.

A scorer maps (phrase, creative) pairs to a probability of relevance. ``pair_logits`` scores aligned lists
(pair i = phrases[i] with creatives[i]); ``score`` scores every phrase against every creative -> [P, C].
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
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


_TOKEN_CACHE: dict[str, np.ndarray] = {}


def phrase_token_states(phrases: Sequence[str], max_tokens: int = 24) -> list[np.ndarray]:
    """MiniLM's last-layer state of every WordPiece of each phrase ([CLS] and [SEP] included), cached in-process.
    -> one float32 [T_i, 384] array per phrase (T_i <= ``max_tokens``)."""
    from core.embed.baselines import _minilm

    todo = sorted({p for p in phrases if p not in _TOKEN_CACHE})
    if todo:
        model = _minilm("cpu")
        model.max_seq_length = max_tokens
        states = model.encode(todo, output_value="token_embeddings", convert_to_numpy=False, show_progress_bar=False)
        for p, st in zip(todo, states, strict=True):
            _TOKEN_CACHE[p] = st.detach().cpu().numpy().astype(np.float32)
    return [_TOKEN_CACHE[p] for p in phrases]


@dataclass
class FitConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None  # stop after this many optimiser steps (tests, quick runs)
    warmup: float = 0.1  # share of the steps over which the learning rate rises linearly from 0; then it falls linearly to 10%

    def to_dict(self) -> dict:
        return asdict(self)


def platt_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: (a, b) maximising the likelihood of sigmoid(a * score + b) under Platt's smoothed targets
    t+ = (N+ + 1) / (N+ + 2), t- = 1 / (N- + 2). Fitted by scikit-learn's unpenalised LogisticRegression on the
    raw score, each pair entered twice (label 1 weighted t, label 0 weighted 1 - t: the soft-target likelihood);
    a = coef_, b = intercept_ (what the scorers store). Without both classes: (1, 0), the identity on logits; with
    every score equal (no information in the score): a = 0 and b = the log-odds of the mean target."""
    from sklearn.linear_model import LogisticRegression

    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, np.float64).ravel()
    if len(s) == 0 or y.min() == y.max():
        return 1.0, 0.0
    n_pos = float((y > 0).sum())
    n_neg = len(y) - n_pos
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    if np.ptp(s) == 0:  # a is not identifiable (a * s + b is one number): the likelihood's optimum with a = 0
        return 0.0, float(np.log(t.mean() / (1 - t.mean())))
    model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-10, max_iter=200)
    model.fit(np.r_[s, s][:, None], np.r_[np.ones(len(s)), np.zeros(len(s))], sample_weight=np.r_[t, 1 - t])
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def warmup_then_linear(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor at ``step`` of ``total``: linear rise over the first ``warmup`` share, then linear fall to 0.1."""
    ramp = max(1, int(round(warmup * total)))
    if warmup > 0 and step < ramp:
        return (step + 1) / ramp
    tail = max(1, total - (ramp if warmup > 0 else 0))
    done = step - (ramp if warmup > 0 else 0)
    return max(0.1, 1.0 - 0.9 * done / tail)


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

    def explain(self, phrase: str, creative: Creative) -> dict | None:  # noqa: ARG002 - the interface
        """What the scorer looked at for one pair, for the Phrase match page, or None when it has no such view.

        -> {"title", "note", "tokens": [T] or None, "weights": [T, k] (rows over the creative's k regions) or [k],
        "boxes_px": [k, 4], "labels": [k], "probability"}."""
        return None

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

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups (one group at ``lr`` unless a scorer gives its new layers their own rate)."""
        return [{"params": self.trainable_parameters(), "lr": lr}]

    def prepare(self, creatives: Sequence[Creative]) -> None:
        """Statistics a scorer takes from its training creatives before the first step (e.g. region standardisation)."""

    def fit(self, triples: Sequence[Triple], creatives: dict[str, Creative], cfg: FitConfig | None = None,
            progress: ProgressFn = no_progress, on_epoch: Callable[[list[float]], None] | None = None) -> dict:
        """Minimise ``triple_loss`` with AdamW over shuffled mini-batches; returns the loss per epoch.
        ``on_epoch(losses)`` is called after every epoch with the mean losses so far (live curves)."""
        cfg = cfg or FitConfig()
        triples = [t for t in triples if t.ad_id in creatives]
        if not triples:
            raise ValueError("no training triple has a loaded creative")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.prepare([creatives[a] for a in sorted({t.ad_id for t in triples})])
        self.to(cfg.device)
        opt = torch.optim.AdamW(self.parameter_groups(cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
        history, steps, started = [], 0, time.perf_counter()
        n_batches = math.ceil(len(triples) / cfg.batch_size)
        total_steps = min(cfg.epochs * n_batches, cfg.max_steps or cfg.epochs * n_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_then_linear(step, total_steps, cfg.warmup))
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
                scheduler.step()
                total += loss.item() * len(batch)
                steps += 1
                progress(epoch * n_batches + b + 1, cfg.epochs * n_batches, f"train {self.name}: epoch {epoch + 1}, loss {loss.item():.4f}")
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    break
            history.append(total / len(triples))
            if on_epoch is not None:
                on_epoch([round(x, 5) for x in history])
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
        self.eval()
        return {"epoch_loss": [round(x, 5) for x in history], "steps": steps, "seconds": round(time.perf_counter() - started, 2),
                "triples": len(triples)}
