"""Early-fusion baseline (the paper's Transformer + ResNet baseline, built from the offline towers).

The creative-selection paper's baselines "use early fusion, where text and image features are concatenated as input
sequence" (a text Transformer's word states and a CNN's image features, then one joint Transformer), against
LXMERT's mid-fusion (one Transformer per modality, then cross-attention). Here (``fusion="sequence"``, default):

* text tokens: the phrase's WordPiece states from MiniLM (a pretrained text Transformer, frozen, 384-d);
* image tokens (``image="regions"``, default): the creative's top detector regions, each its EfficientNet-Lite0
  ImageNet descriptor (standardised) with box and confidence; or (``image="global"``) one token, the creative's
  global EfficientNet-Lite0 vector (a busy creative's global vector describes its background photo, not the product);
* each token projected to ``d_model`` (256) with a modality embedding, a learned [CLS] token in front, one sequence
  -> ``layers`` (2) Transformer encoder layers (4 heads, pre-norm) -> the [CLS] state -> Linear -> logit.

``fusion="mlp"``: the earlier, simpler form: [MiniLM phrase vector; global image vector] -> Linear ``hidden`` (512) ->
GELU -> Dropout -> Linear 128 -> GELU -> Linear 1 (kept so its checkpoints still load).

The probability is the logit's sigmoid. Trained with binary cross-entropy on the labelled triples, positives and
negatives, by the shared loop of core.matching.base (shuffled mini-batches). Both towers are pretrained and frozen
(their outputs are precomputed); the projections and the joint Transformer are trained. One variant (offline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.base import MatchScorer, phrase_token_states, phrase_vectors
from core.matching.features import Creative, RegionInputs

TEXT_DIM, IMAGE_DIM = 384, 1280
IMAGE_INPUTS = ("regions", "global")
FUSIONS = ("sequence", "mlp")


class EarlyFusionScorer(MatchScorer):
    name = "early"

    def __init__(self, hidden: int = 512, dropout: float = 0.1, *, region_dim: int = 1280, image: str = "regions",
                 max_regions: int = 10, fusion: str = "sequence", d_model: int = 256, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        if image not in IMAGE_INPUTS:
            raise ValueError(f"image must be one of {', '.join(IMAGE_INPUTS)}, got {image!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.hidden, self.dropout, self.image, self.fusion = int(hidden), float(dropout), image, fusion
        self.region_dim, self.max_regions = int(region_dim), int(max_regions)
        self.d_model, self.layers, self.heads = int(d_model), int(layers), int(heads)
        if fusion == "mlp":
            if image != "global":
                raise ValueError("fusion='mlp' reads the global image vector: use image='global'")
            self.mlp = nn.Sequential(nn.Linear(TEXT_DIM + IMAGE_DIM, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, 128), nn.GELU(), nn.Linear(128, 1))
            self.variant = "offline early fusion (MLP form): [MiniLM phrase vector; EfficientNet-Lite0 image vector] -> MLP"
        else:
            d = self.d_model
            self.regions = RegionInputs(self.region_dim if image == "regions" else IMAGE_DIM, self.max_regions)
            self.text_in = nn.Linear(TEXT_DIM, d)
            self.image_in = nn.Linear(self.regions.region_dim + 5, d)
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            self.modality = nn.Embedding(3, d)  # 0 [CLS], 1 text, 2 image
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=dropout, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
            self.out = nn.Linear(d, 1)
            seen = ("detector regions (EfficientNet-Lite0 descriptors, boxes)" if image == "regions"
                    else "the global EfficientNet-Lite0 vector")
            self.variant = (f"offline early fusion: MiniLM word-piece states + {seen} as one sequence -> "
                            f"{layers}-layer Transformer, trained on catalog triples")
        self.reason = "one variant: both towers ship in PyPI packages"

    def config_dict(self) -> dict:
        return {"hidden": self.hidden, "dropout": self.dropout, "region_dim": self.region_dim, "image": self.image,
                "max_regions": self.max_regions, "fusion": self.fusion, "d_model": self.d_model, "layers": self.layers,
                "heads": self.heads}

    def prepare(self, creatives: Sequence[Creative]) -> None:
        if self.fusion == "sequence" and self.image == "regions":
            self.regions.fit(creatives)

    def _image_tokens(self, creatives: Sequence[Creative]) -> tuple[Tensor, Tensor]:
        if self.image == "regions":
            feats, geom, mask = self.regions(creatives)
            return self.image_in(torch.cat([feats, geom], dim=-1)), mask
        device = self.cls.device
        vec = torch.from_numpy(np.stack([c.image_vec for c in creatives])).to(device)[:, None, :]
        geom = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0]]], device=device).expand(len(creatives), 1, 5)
        return self.image_in(torch.cat([vec, geom], dim=-1)), torch.ones(len(creatives), 1, dtype=torch.bool, device=device)

    def encode(self, phrases: Sequence[str], creatives: Sequence[Creative], attention: bool = False) -> dict:
        """The joint sequence for aligned pairs -> {"cls": [B, d], "text_mask": [B, T]}, with ``attention`` also
        "cls_attention": [B, T + V] (the last layer's [CLS] attention over text then image tokens, mean over heads)."""
        device = self.cls.device
        states = phrase_token_states(list(phrases))
        t = max(len(s) for s in states)
        text = torch.zeros(len(phrases), t, TEXT_DIM, device=device)
        text_mask = torch.zeros(len(phrases), t, dtype=torch.bool, device=device)
        for i, st in enumerate(states):
            text[i, : len(st)] = torch.from_numpy(st).to(device)
            text_mask[i, : len(st)] = True
        image, image_mask = self._image_tokens(creatives)
        b = len(phrases)
        x = torch.cat([self.cls.expand(b, -1, -1) + self.modality.weight[0], self.text_in(text) + self.modality.weight[1],
                       image + self.modality.weight[2]], dim=1)
        pad = ~torch.cat([torch.ones(b, 1, dtype=torch.bool, device=device), text_mask, image_mask], dim=1)
        *first, last = self.encoder.layers  # nn.TransformerEncoder's own loop, run here to read the last layer's attention
        for layer in first:
            x = layer(x, src_key_padding_mask=pad)
        out = {"text_mask": text_mask}
        if attention:
            y = last.norm1(x)  # pre-norm: the last layer's attention reads its normalised input
            _, weights = last.self_attn(y, y, y, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
            out["cls_attention"] = weights[:, 0, 1:]
        out["cls"] = self.encoder.norm(last(x, src_key_padding_mask=pad))[:, 0]
        return out

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        if self.fusion == "mlp":
            device = next(self.parameters()).device
            t = torch.from_numpy(phrase_vectors(list(phrases)))
            i = torch.from_numpy(np.stack([c.image_vec for c in creatives]))
            return self.mlp(torch.cat([t, i], dim=1).to(device)).squeeze(-1)
        return self.out(self.encode(phrases, creatives)["cls"]).squeeze(-1)

    @torch.no_grad()
    def explain(self, phrase: str, creative: Creative) -> dict | None:
        if self.fusion != "sequence" or self.image != "regions" or not len(creative.region_conf):
            return None
        self.eval()
        out = self.encode([phrase], [creative], attention=True)
        t = out["text_mask"].shape[1]
        k = min(len(creative.region_conf), self.max_regions)
        weights = out["cls_attention"][0, t: t + k]
        weights = (weights / weights.sum().clamp_min(1e-12)).cpu().tolist()
        return {"title": "Early fusion: attention of the [CLS] token to each region in the last joint layer (shares of the image tokens)",
                "note": "Early fusion reads the phrase's word pieces and the regions as one sequence; it never reads the ad text.",
                "tokens": None, "weights": weights, "boxes_px": creative.boxes_px[:k].tolist(), "labels": creative.labels[:k],
                "probability": float(self.score([phrase], [creative])[0, 0])}
