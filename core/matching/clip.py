"""CLIP-style dual-encoder relevance scorer: cosine of a phrase vector and an image vector, as a probability.

Variants:
* ``pretrained`` (online): open_clip ``ViT-B-32`` / ``laion2b_s34b_b79k`` towers, frozen. Zero-shot = their cosine
  (no head); fine-tuned = a projection head on each tower's output (Linear -> GELU -> Linear, ``dim``-d, not
  residual: the head replaces the tower's vector) trained with the contrastive loss below.
* ``offline``: the two offline pretrained towers, frozen: MiniLM sentence vectors (384-d) and EfficientNet-Lite0
  global image features (1280-d), each with the same projection head (256-d by default) trained with the
  symmetric contrastive (InfoNCE) loss and a learned temperature. Zero-shot is impossible here (the towers were
  never aligned), so the offline variant is always the trained one.

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
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.base import FitConfig, MatchScorer, phrase_vectors, platt_fit
from core.matching.features import Creative
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


class ClipScorer(MatchScorer):
    """Dual encoder over precomputed tower features; ``mode`` = trained | zero-shot (pretrained towers only)."""

    name = "clip"

    def __init__(self, variant: str = "offline", *, mode: str = "trained", dim: int = 256) -> None:
        super().__init__()
        self.kind, self.mode, self.dim = variant, mode, int(dim)
        self._open_clip = None
        if variant == "pretrained":
            self._open_clip = self._load_open_clip()
            model = self._open_clip[0]
            d_t = d_i = int(model.text_projection.shape[1])
            self.variant = f"pretrained open_clip {OPEN_CLIP_MODEL}/{OPEN_CLIP_TAG}, " + (
                "zero-shot" if mode == "zero-shot" else "fine-tuned contrastively (projection heads)")
        else:
            if mode != "trained":
                raise ValueError("the offline CLIP-style encoder has no zero-shot mode: its towers were never aligned")
            d_t, d_i = 384, 1280
            self.variant = ("offline CLIP-style dual encoder: MiniLM text + EfficientNet-Lite0 image towers (frozen), "
                            "projection heads trained contrastively")
        self.text_proj = Projection(d_t, self.dim) if mode == "trained" else nn.Identity()
        self.image_proj = Projection(d_i, self.dim) if mode == "trained" else nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)), requires_grad=mode == "trained")
        self.register_buffer("platt", torch.tensor([10.0, -5.0]))

    @staticmethod
    def _load_open_clip() -> tuple:
        """(model in eval mode, image preprocess, tokenizer) of the pretrained open_clip model (downloads when needed)."""
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(OPEN_CLIP_MODEL, pretrained=OPEN_CLIP_TAG)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval(), preprocess, open_clip.get_tokenizer(OPEN_CLIP_MODEL)

    def config_dict(self) -> dict:
        return {"variant": self.kind, "mode": self.mode, "dim": self.dim}

    # -- tower features -----------------------------------------------------------------------------
    def _text(self, phrases: Sequence[str]) -> Tensor:
        if self._open_clip is None:
            return torch.from_numpy(phrase_vectors(list(phrases)))
        model, _, tokenizer = self._open_clip
        with torch.no_grad():
            return model.encode_text(tokenizer(list(phrases))).float()

    def _image(self, creatives: Sequence[Creative]) -> Tensor:
        if self._open_clip is None:
            return torch.from_numpy(np.stack([c.image_vec for c in creatives]))
        model, preprocess, _ = self._open_clip
        missing = [c for c in creatives if "clip" not in c.extra]
        if missing:
            from core.filestore import resolve
            from core.images import load_image

            pil = [c.extra["pil"] if "pil" in c.extra else load_image(resolve(c.image_path)).image for c in missing]
            with torch.no_grad():
                vecs = model.encode_image(torch.stack([preprocess(p) for p in pil])).float()
            for c, v in zip(missing, vecs, strict=True):
                c.extra["clip"] = v
        return torch.stack([c.extra["clip"] for c in creatives])

    def cosine(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        """Cosine of every phrase with every creative. -> [P, C]."""
        device = self.logit_scale.device
        t = nn.functional.normalize(self.text_proj(self._text(phrases).to(device)), dim=-1)
        i = nn.functional.normalize(self.image_proj(self._image(creatives).to(device)), dim=-1)
        return t @ i.T

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        device = self.logit_scale.device
        t = nn.functional.normalize(self.text_proj(self._text(phrases).to(device)), dim=-1)
        i = nn.functional.normalize(self.image_proj(self._image(creatives).to(device)), dim=-1)
        return self.platt[0] * (t * i).sum(-1) + self.platt[1]

    @torch.no_grad()
    def score(self, phrases: Sequence[str], creatives: Sequence[Creative], batch_size: int = 256) -> np.ndarray:  # noqa: ARG002
        self.eval()
        if not phrases or not creatives:
            return np.zeros((len(phrases), len(creatives)), np.float32)
        return torch.sigmoid(self.platt[0] * self.cosine(phrases, creatives) + self.platt[1]).cpu().numpy().astype(np.float32)

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
            progress: ProgressFn = no_progress) -> dict:
        """Contrastive training of the heads (``trained`` mode; the shared shuffled mini-batch loop, see the module
        docstring), then Platt calibration of the cosine on ``triples``; zero-shot mode only calibrates."""
        result = super().fit(triples, creatives, cfg, progress) if self.mode == "trained" else {"epoch_loss": [], "steps": 0}
        a, b = self.calibrate(triples, creatives)
        return result | {"platt": [round(a, 4), round(b, 4)]}
