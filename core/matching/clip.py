"""CLIP-style dual-encoder relevance scorer: cosine of a phrase vector and an image vector, as a probability.

Variants:
* ``pretrained`` (online): open_clip ``ViT-B-32`` / ``laion2b_s34b_b79k``. Zero-shot = the towers' cosine; trained =
  the towers themselves fine-tuned with the contrastive loss below (the last ``tune_blocks`` Transformer blocks of
  each tower, their final norms and projections, and the temperature; no new head).
* ``random-base``: the same open_clip architecture and code with random weights (``pretrained=None``, no download):
  what the test suite runs so that the pretrained path is never untested.
* ``offline``: the offline pretrained towers. Text: MiniLM sentence vectors (384-d, frozen). Image
  (``image="regions"``, default): the creative's top detector regions, each an EfficientNet-Lite0 ImageNet
  descriptor (standardised) with its box and confidence, projected and attention-pooled into one vector by learned,
  phrase-independent weights (so the picture is still encoded once, without the phrase: a dual encoder). A busy
  creative's global ImageNet vector describes its background photo, not the small product; ``image="global"`` keeps
  that vector (the paper's single image embedding). Both sides get a projection head (256-d) trained with the
  symmetric contrastive (InfoNCE) loss and a learned temperature. Zero-shot is impossible here (the towers were never
  aligned), so the offline variant is always the trained one.

Training (:meth:`ClipScorer.fit`) runs the shared loop of core.matching.base: the triples are shuffled every epoch
and cut into mini-batches of ``batch_size`` triples, nothing grouped by phrase. Of each batch only the positive
triples enter the loss: their distinct phrases x their distinct creatives form the logit matrix, each positive
pair of the batch is a target (soft targets: a phrase's row is spread over all its positives in the batch, since
one phrase is relevant to many creatives; likewise a creative's column), every other cell an in-batch negative.
The batch's labelled negatives are not used, and a batch with fewer than two positives gives a zero loss (AdamW's
weight decay still applies on that step). The probability is a Platt-calibrated sigmoid of the cosine, fitted
afterwards on all the training triples (positives and negatives).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.base import FitConfig, MatchScorer, phrase_vectors, platt_fit
from core.matching.features import Creative, RegionInputs
from core.matching.triples import Triple
from core.progress import ProgressFn, no_progress

OPEN_CLIP_MODEL = "ViT-B-32"
OPEN_CLIP_TAG = "laion2b_s34b_b79k"


class Projection(nn.Module):
    """Linear -> GELU -> Linear. [N, d_in] -> [N, d_out]."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class RegionPool(nn.Module):
    """Image tower over regions: [descriptor; box; confidence] -> Projection -> attention pooling with learned,
    phrase-independent weights. feats [B, V, D], geometry [B, V, 5], mask [B, V] -> (vectors [B, dim], weights [B, V])."""

    def __init__(self, d_in: int, dim: int) -> None:
        super().__init__()
        self.proj = Projection(d_in + 5, dim)
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, feats: Tensor, geometry: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.proj(torch.cat([feats, geometry], dim=-1))
        logits = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return (weights[..., None] * x).sum(1), weights


IMAGE_INPUTS = ("regions", "global")


class ClipScorer(MatchScorer):
    """Dual encoder; ``mode`` = trained | zero-shot (open_clip towers only); ``image`` = regions | global (offline)."""

    name = "clip"

    def __init__(self, variant: str = "offline", *, mode: str = "trained", dim: int = 256, region_dim: int = 1280,
                 image: str = "regions", max_regions: int = 10, tune_blocks: int = 2) -> None:
        super().__init__()
        if image not in IMAGE_INPUTS:
            raise ValueError(f"image must be one of {', '.join(IMAGE_INPUTS)}, got {image!r}")
        self.kind, self.mode, self.dim, self.image = variant, mode, int(dim), image
        self.region_dim, self.max_regions, self.tune_blocks = int(region_dim), int(max_regions), int(tune_blocks)
        self.open_clip: nn.Module | None = None
        self._preprocess = self._tokenizer = None
        self._cache_token = ""
        if variant in ("pretrained", "random-base"):
            model, self._preprocess, self._tokenizer = self._load_open_clip(None if variant == "random-base" else OPEN_CLIP_TAG)
            self.open_clip = model
            if mode == "trained":
                self._unfreeze_last_blocks(self.tune_blocks)
            weights = f"{OPEN_CLIP_TAG} weights" if variant == "pretrained" else "random weights (tests of the pretrained path)"
            self.variant = f"open_clip {OPEN_CLIP_MODEL}, {weights}, " + (
                "zero-shot" if mode == "zero-shot" else f"towers fine-tuned contrastively (last {self.tune_blocks} blocks of each)")
            self.text_proj = self.image_proj = nn.Identity()
        else:
            if mode != "trained":
                raise ValueError("the offline CLIP-style encoder has no zero-shot mode: its towers were never aligned")
            self.text_proj = Projection(384, self.dim)
            if image == "regions":
                self.regions = RegionInputs(self.region_dim, self.max_regions)
                self.image_proj = RegionPool(self.region_dim, self.dim)
                seen = "top detector regions (EfficientNet-Lite0 descriptors), attention-pooled"
            else:
                self.image_proj = Projection(1280, self.dim)
                seen = "EfficientNet-Lite0 global image vector"
            self.variant = f"offline CLIP-style dual encoder: MiniLM phrase vector (frozen) x {seen}; projections trained contrastively"
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)), requires_grad=mode == "trained")
        self.register_buffer("platt", torch.tensor([10.0, -5.0]))

    @staticmethod
    def _load_open_clip(pretrained: str | None) -> tuple:
        """(model, image preprocess, tokenizer) of the open_clip model, every weight frozen; ``pretrained=None`` gives
        the architecture with random weights (no download). Downloads the pretrained weights when needed."""
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(OPEN_CLIP_MODEL, pretrained=pretrained)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval(), preprocess, open_clip.get_tokenizer(OPEN_CLIP_MODEL)

    def _unfreeze_last_blocks(self, n: int) -> None:
        """Make the last ``n`` residual blocks of both towers, their final norms and projections trainable."""
        model = self.open_clip
        for tower in (model.visual.transformer.resblocks, model.transformer.resblocks):
            for block in list(tower)[len(tower) - n:] if n > 0 else []:
                block.requires_grad_(True)
        for module in (model.visual.ln_post, model.ln_final):
            module.requires_grad_(True)
        model.visual.proj.requires_grad_(True)
        model.text_projection.requires_grad_(True)

    def config_dict(self) -> dict:
        return {"variant": self.kind, "mode": self.mode, "dim": self.dim, "region_dim": self.region_dim, "image": self.image,
                "max_regions": self.max_regions, "tune_blocks": self.tune_blocks}

    def train(self, mode: bool = True) -> ClipScorer:
        import uuid

        self._cache_token = uuid.uuid4().hex  # tower weights may change: forget cached image vectors
        super().train(mode)
        if self.open_clip is not None and self.mode != "trained":
            self.open_clip.eval()
        return self

    def prepare(self, creatives: Sequence[Creative]) -> None:
        if self.open_clip is None and self.image == "regions":
            self.regions.fit(creatives)

    # -- tower features -----------------------------------------------------------------------------
    def _text(self, phrases: Sequence[str]) -> Tensor:
        device = self.logit_scale.device
        if self.open_clip is None:
            return self.text_proj(torch.from_numpy(phrase_vectors(list(phrases))).to(device))
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training):
            return self.open_clip.encode_text(self._tokenizer(list(phrases)).to(device)).float()

    def _pil(self, creative: Creative):
        if "pil" in creative.extra:
            return creative.extra["pil"]
        from core.filestore import resolve
        from core.images import load_image

        return load_image(resolve(creative.image_path)).image

    def _image(self, creatives: Sequence[Creative]) -> Tensor:
        device = self.logit_scale.device
        if self.open_clip is None:
            if self.image == "regions":
                return self.image_proj(*self.regions(creatives))[0]
            return self.image_proj(torch.from_numpy(np.stack([c.image_vec for c in creatives])).to(device))
        if self.training and torch.is_grad_enabled():
            pixels = torch.stack([self._preprocess(self._pil(c)) for c in creatives]).to(device)
            return self.open_clip.encode_image(pixels).float()
        key = f"open_clip:{self.kind}:{self._cache_token}"
        missing = [c for c in creatives if key not in c.extra]
        if missing:
            with torch.no_grad():
                vecs = self.open_clip.encode_image(torch.stack([self._preprocess(self._pil(c)) for c in missing]).to(device)).float()
            for c, v in zip(missing, vecs, strict=True):
                c.extra[key] = v
        return torch.stack([c.extra[key] for c in creatives]).to(device)

    @torch.no_grad()
    def region_weights(self, creative: Creative) -> list[float]:
        """The pooling weight of each of the creative's regions (offline ``image="regions"``; [] otherwise)."""
        if self.open_clip is not None or self.image != "regions" or not len(creative.region_conf):
            return []
        self.eval()
        _, weights = self.image_proj(*self.regions([creative]))
        return weights[0, : min(len(creative.region_conf), self.max_regions)].cpu().tolist()

    def cosine(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        """Cosine of every phrase with every creative. -> [P, C]."""
        t = nn.functional.normalize(self._text(phrases), dim=-1)
        i = nn.functional.normalize(self._image(creatives), dim=-1)
        return t @ i.T

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        t = nn.functional.normalize(self._text(phrases), dim=-1)
        i = nn.functional.normalize(self._image(creatives), dim=-1)
        return self.platt[0] * (t * i).sum(-1) + self.platt[1]

    @torch.no_grad()
    def score(self, phrases: Sequence[str], creatives: Sequence[Creative], batch_size: int = 256) -> np.ndarray:  # noqa: ARG002
        self.eval()
        if not phrases or not creatives:
            return np.zeros((len(phrases), len(creatives)), np.float32)
        return torch.sigmoid(self.platt[0] * self.cosine(phrases, creatives) + self.platt[1]).cpu().numpy().astype(np.float32)

    def explain(self, phrase: str, creative: Creative) -> dict | None:
        weights = self.region_weights(creative)
        if not weights:
            return None
        k = len(weights)
        return {"title": "CLIP-style: how much each region weighs in the creative's vector (the same for every phrase)",
                "note": "A dual encoder encodes the picture without the phrase: these pooling weights say which regions the "
                        "image vector is made of; the phrase then matches that one vector. It never reads the ad text.",
                "tokens": None, "weights": weights, "boxes_px": creative.boxes_px[:k].tolist(), "labels": creative.labels[:k],
                "probability": float(self.score([phrase], [creative])[0, 0])}

    # -- training -----------------------------------------------------------------------------------
    def triple_loss(self, triples: Sequence[Triple], creatives: dict[str, Creative]) -> Tensor:
        """Symmetric contrastive loss over the batch's positive triples: logits = cosine x temperature for their
        distinct phrases x their distinct creatives; every positive pair in the batch a (soft) target, the other
        cells negatives; the batch's negative triples unused; 0 (no gradient) with fewer than two positives."""
        pos = [t for t in triples if t.label == 1]
        if len(pos) < 2:
            return self.logit_scale.sum() * 0.0
        phrases = sorted({t.phrase for t in pos})
        ads = sorted({t.ad_id for t in pos})
        known = {(t.phrase, t.ad_id) for t in pos}
        target = torch.tensor([[1.0 if (p, a) in known else 0.0 for a in ads] for p in phrases], device=self.logit_scale.device)
        logits = self.cosine(phrases, [creatives[a] for a in ads]) * self.logit_scale.exp().clamp(max=100)
        loss_t = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        loss_i = -(target.T / target.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
        return (loss_t + loss_i) / 2

    def calibrate(self, triples: Sequence[Triple], creatives: dict[str, Creative]) -> tuple[float, float]:
        """Fit the Platt parameters on ``triples`` (cosine -> probability)."""
        triples = [t for t in triples if t.ad_id in creatives]
        with torch.no_grad():
            cos = np.concatenate([self.cosine([t.phrase], [creatives[t.ad_id]]).cpu().numpy().ravel() for t in triples]) if triples else []
        a, b = platt_fit(np.asarray(cos), np.array([t.label for t in triples]))
        self.platt.copy_(torch.tensor([a, b]))
        return a, b

    def fit(self, triples: Sequence[Triple], creatives: dict[str, Creative], cfg: FitConfig | None = None,
            progress: ProgressFn = no_progress, on_epoch: Callable[[list[float]], None] | None = None) -> dict:
        """Contrastive training of the heads (``trained`` mode; the shared shuffled mini-batch loop, see the module
        docstring), then Platt calibration of the cosine on ``triples``; zero-shot mode only calibrates."""
        result = super().fit(triples, creatives, cfg, progress, on_epoch) if self.mode == "trained" else {"epoch_loss": [], "steps": 0}
        a, b = self.calibrate(triples, creatives)
        return result | {"platt": [round(a, 4), round(b, 4)]}
