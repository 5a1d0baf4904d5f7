"""What ION looked at for one ad, in plain arrays for the attention view (words, regions, DFA matrix).

Region indices here refer to the caller's own region list (in the order given), not to the
confidence-sorted order the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.embed.data import pad_regions
from core.embed.ion import ION
from core.embed.text import Vocabulary, encode_texts, tokenize


@dataclass
class AdAttention:
    """words [n]: the words the model read (after truncation), with ``in_vocab`` [n] flags;
    keyword_label [n]: POS-based label; keyword_prob [n]: keyword head's probability (None w/o KSG);
    gate [n]: mean KSG gate per word (None w/o KSG);
    region_order [m]: the caller's region indices in detector-confidence order (the model's k1 input);
    alpha [m]: SCA relevance of each input region, caller order (None w/o SCA);
    kept [k]: caller indices of the regions kept, in the model's rank order;
    beta [n, k]: DFA affinity of each word with each kept region (None w/o DFA);
    embedding [d]: the ad vector."""

    words: list[str]
    in_vocab: list[bool]
    keyword_label: list[int]
    keyword_prob: np.ndarray | None
    gate: np.ndarray | None
    region_order: list[int]
    alpha: np.ndarray | None
    kept: list[int]
    beta: np.ndarray | None
    embedding: np.ndarray


@torch.no_grad()
def ion_attention(model: ION, vocab: Vocabulary, text: str, region_features: np.ndarray, region_confidences: np.ndarray,
                  device: str = "cpu") -> AdAttention:
    """Run ION on one ad and return its keyword, gate, SCA and DFA weights (see AdAttention)."""
    cfg = model.config
    words = tokenize(text)[: cfg.max_words]
    tokens, token_mask, _ = encode_texts([words], vocab, cfg.max_words)
    feats = np.asarray(region_features, dtype=np.float32).reshape(-1, cfg.region_dim)
    confs = np.asarray(region_confidences, dtype=np.float32).reshape(-1)
    regions, region_mask, region_conf = pad_regions([feats], [confs], cfg.k1, cfg.region_dim)
    order = np.argsort(-confs, kind="stable")[: cfg.k1]  # model slot -> caller index
    model.eval().to(device)
    out = model(tokens.to(device), token_mask.to(device), regions.to(device), region_mask.to(device), region_conf.to(device))
    n, m = len(words), len(order)
    kept_slots = [int(s) for s, ok in zip(out.kept[0].tolist(), out.kept_mask[0].tolist(), strict=True) if ok]
    alpha = None
    if out.alpha is not None:
        alpha = np.zeros(len(confs), dtype=np.float32)
        alpha[order] = out.alpha[0, :m].cpu().numpy()
    keyword_prob = gate = None
    if out.keyword_logits is not None:
        keyword_prob = torch.softmax(out.keyword_logits[0, :n], dim=-1)[:, 1].cpu().numpy()
        gate = out.key_gates[0, :n].mean(dim=-1).cpu().numpy()
    beta = out.beta[0, :n, : len(kept_slots)].cpu().numpy() if out.beta is not None else None
    return AdAttention(
        words=[w.text for w in words],
        in_vocab=[w.text in vocab for w in words],
        keyword_label=[w.keyword for w in words],
        keyword_prob=keyword_prob,
        gate=gate,
        region_order=[int(i) for i in order],
        alpha=alpha,
        kept=[int(order[s]) for s in kept_slots],
        beta=beta,
        embedding=out.embedding[0].cpu().numpy(),
    )
