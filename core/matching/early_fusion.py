"""Early-fusion baseline (the paper's Transformer + ResNet baseline, built from the offline towers).

The phrase's MiniLM sentence vector (384-d, a Transformer text encoder) is concatenated with the creative's
EfficientNet-Lite0 global image vector (1280-d, a CNN), and an MLP maps the concatenation to a relevance
logit: [384 + 1280] -> Linear ``hidden`` (512) -> GELU -> Dropout -> Linear 128 -> GELU -> Linear 1; the
probability is its sigmoid. Trained with binary cross-entropy on the labelled triples, positives and negatives, by
the shared loop of core.matching.base (shuffled mini-batches). Both towers are pretrained and frozen (their
vectors are precomputed); only the MLP is trained. There is one variant (offline-trained).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.base import MatchScorer, phrase_vectors
from core.matching.features import Creative

TEXT_DIM, IMAGE_DIM = 384, 1280


class EarlyFusionScorer(MatchScorer):
    name = "early"

    def __init__(self, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.mlp = nn.Sequential(nn.Linear(TEXT_DIM + IMAGE_DIM, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 128), nn.GELU(), nn.Linear(128, 1))
        self.variant = "offline early fusion: [MiniLM phrase vector; EfficientNet-Lite0 image vector] -> MLP, trained on catalog triples"
        self.reason = "one variant: both towers ship in PyPI packages"

    def config_dict(self) -> dict:
        return {"hidden": self.hidden}

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        device = next(self.parameters()).device
        t = torch.from_numpy(phrase_vectors(list(phrases)))
        i = torch.from_numpy(np.stack([c.image_vec for c in creatives]))
        return self.mlp(torch.cat([t, i], dim=1).to(device)).squeeze(-1)
