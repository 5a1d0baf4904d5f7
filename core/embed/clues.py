"""A trained ION's SCA as the Regions page's clue scorer: alpha_j of eq. 6 (literal or additive form, see core.embed.ion).

It plugs into :func:`core.regions.clues.rerank` like the zero-shot MiniLM scorer. The regions must come from
the detector the run was trained on (same feature size; the caller checks the detector version).
"""

from __future__ import annotations

import numpy as np
import torch

from core.embed.ion import ION
from core.embed.text import Vocabulary, encode_texts, tokenize
from core.regions.base import DetectionResult


class IonClueScorer:
    """``score(text, detections) -> alpha [N]`` from a trained ION (eval mode, CPU)."""

    def __init__(self, model: ION, vocab: Vocabulary, name: str = "ION") -> None:
        if "sca" in model.config.ablate:
            raise ValueError(f"{name} was trained without SCA: it has no semantic-clue scores")
        self.model, self.vocab = model.eval(), vocab
        form = "sigmoid(w^T tanh(W_v v_j + W_o h_bar))" if model.config.sca == "additive" else "sigmoid(W_v v_j + W_o h_bar)"
        self.name = f"{name}: SCA alpha = {form}"

    def score(self, text: str, detections: DetectionResult) -> np.ndarray:
        n = len(detections)
        if n == 0:
            return np.zeros(0, np.float32)
        dim = self.model.config.region_dim
        if detections.feature_dim != dim:
            raise ValueError(f"the detector gives {detections.feature_dim}-d region features, but this ION run was trained on "
                             f"{dim}-d features: pick the detector the run was trained with")
        tokens, token_mask, _ = encode_texts([tokenize(text or "")[: self.model.config.max_words]], self.vocab, self.model.config.max_words)
        regions = torch.from_numpy(np.asarray(detections.features, np.float32))[None]
        alpha = self.model.clue_scores(tokens, token_mask, regions, torch.ones(1, n, dtype=torch.bool))
        return alpha[0].numpy().astype(np.float32)
