"""ION relevance scorer: cosine of the phrase's ION embedding (text-only input) and the ad's ION embedding
(ad text + regions), calibrated to a probability by Platt scaling on the training triples.

The ION model comes from a finished ``ModelRun`` of kind "ion" (the retrieval issue's runs) when one exists,
else a small ION is trained here on the non-test ads of the creatives at hand (triplet loss, categories as labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import Engine, select

from core.embed.ion import ION
from core.embed.text import Vocabulary
from core.matching.base import FitConfig, MatchScorer, phrase_vectors, platt_fit
from core.matching.features import Creative
from core.matching.triples import Triple
from core.progress import ProgressFn, no_progress

PHRASE_ROUTES = ("text-neighbours", "direct")


class IonScorer(MatchScorer):
    name = "ion"

    def __init__(self, model: ION, vocab: Vocabulary, *, source: str = "", phrase_route: str = "text-neighbours",
                 neighbours: int = 3) -> None:
        super().__init__()
        if phrase_route not in PHRASE_ROUTES:
            raise ValueError(f"phrase_route must be one of {', '.join(PHRASE_ROUTES)}, got {phrase_route!r}")
        self.model, self.vocab, self.source = model.eval(), vocab, source
        self.phrase_route, self.neighbours = phrase_route, int(neighbours)
        self.bank_text: np.ndarray | None = None  # MiniLM vectors of the creatives' ad texts met in fit  [N, 384]
        self.bank_vec: np.ndarray | None = None  # their ION vectors  [N, d_out]
        self.register_buffer("platt", torch.tensor([10.0, -5.0]))
        d = model.config.d_out
        self.register_buffer("phrase_mean", torch.zeros(d))  # centring (fitted): removes the direction every vector shares
        self.register_buffer("creative_mean", torch.zeros(d))
        route = "phrase via its ad-text neighbours" if phrase_route == "text-neighbours" else "phrase embedded directly"
        self.variant = f"ION ({source or 'given model'}): cosine of the centred phrase ({route}) and ad embeddings, Platt-calibrated"
        self.reason = "ION is this project's own model: always trained locally"

    def config_dict(self) -> dict:
        return {"source": self.source, "phrase_route": self.phrase_route, "neighbours": self.neighbours}

    def _embed(self, texts: Sequence[str], feats: Sequence[np.ndarray], confs: Sequence[np.ndarray]) -> np.ndarray:
        from core.embed.pipeline import embed_ads

        device = str(next(self.model.parameters()).device)
        return embed_ads(self.model, self.vocab, list(texts), list(feats), list(confs), device=device)

    def phrase_embeddings(self, phrases: Sequence[str]) -> np.ndarray:
        """ION vectors of phrases. -> [P, d_out]. ``phrase_route="text-neighbours"`` (default, once fitted): the mean ION
        vector of the ``neighbours`` creatives whose ad texts are nearest the phrase in MiniLM space (how Similar ads
        searches with a phrase, core/retrieval/phrases.py); ``"direct"``: ION on the phrase with no region, an input ION
        never met in training (category phrases found their category in 1.9% of the top 10 that way)."""
        if self.phrase_route == "text-neighbours" and self.bank_text is not None and len(self.bank_text):
            sims = phrase_vectors(list(phrases)) @ self.bank_text.T
            k = min(self.neighbours, sims.shape[1])
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            return self.bank_vec[top].mean(axis=1).astype(np.float32)
        d = self.model.config.region_dim
        return self._embed(phrases, [np.zeros((0, d), np.float32)] * len(phrases), [np.zeros(0, np.float32)] * len(phrases))

    def creative_embeddings(self, creatives: Sequence[Creative]) -> np.ndarray:
        """ION vectors of creatives (ad text + regions), cached on each creative. -> [C, d_out]."""
        d = self.model.config.region_dim
        todo = [c for c in creatives if "ion" not in c.extra]
        if todo:
            feats = [c.region_feats if c.region_dim == d else np.zeros((0, d), np.float32) for c in todo]
            confs = [c.region_conf if c.region_dim == d else np.zeros(0, np.float32) for c in todo]
            for c, v in zip(todo, self._embed([c.text or " " for c in todo], feats, confs), strict=True):
                c.extra["ion"] = v
        return np.stack([c.extra["ion"] for c in creatives]) if creatives else np.zeros((0, self.model.config.d_out), np.float32)

    def explain(self, phrase: str, creative: Creative) -> dict | None:
        """ION's DFA affinity (beta) of each word of the *ad text* with each kept region; regions SCA dropped get 0."""
        from core.embed.attention import ion_attention

        d = self.model.config.region_dim
        if not len(creative.region_conf) or creative.region_dim != d:
            return None
        att = ion_attention(self.model, self.vocab, creative.text or " ", creative.region_feats, creative.region_conf,
                            device=str(next(self.model.parameters()).device))
        if att.beta is None or not att.words:
            return None
        k = len(creative.region_conf)
        weights = np.zeros((len(att.words), k), np.float32)
        for j, region in enumerate(att.kept):
            if region < k:
                weights[:, region] = att.beta[:, j]
        return {"title": "ION: DFA affinity (beta) of each word of the ad text with each region SCA kept",
                "note": "ION's scorer reads the ad text as well as the picture: it compares the phrase (as text) with the "
                        "ad's embedding, built from the ad text and the regions its text picked. The other scorers see only "
                        "the phrase and the picture.",
                "tokens": att.words, "weights": weights.tolist(), "boxes_px": creative.boxes_px[:k].tolist(),
                "labels": creative.labels[:k], "probability": float(self.score([phrase], [creative])[0, 0])}

    def cosine(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> np.ndarray:
        p = self.phrase_embeddings(phrases) - self.phrase_mean.cpu().numpy()
        c = self.creative_embeddings(creatives) - self.creative_mean.cpu().numpy()
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return p @ c.T

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> torch.Tensor:
        cos = np.array([self.cosine([p], [c])[0, 0] for p, c in zip(phrases, creatives, strict=True)], np.float32)
        return self.platt[0] * torch.from_numpy(cos).to(self.platt.device) + self.platt[1]

    @torch.no_grad()
    def score(self, phrases: Sequence[str], creatives: Sequence[Creative], batch_size: int = 256) -> np.ndarray:  # noqa: ARG002
        if not phrases or not creatives:
            return np.zeros((len(phrases), len(creatives)), np.float32)
        cos = torch.from_numpy(self.cosine(phrases, creatives).astype(np.float32))
        a, b = self.platt.cpu().tolist()
        return torch.sigmoid(a * cos + b).numpy().astype(np.float32)

    def fit(self, triples: Sequence[Triple], creatives: dict[str, Creative], cfg: FitConfig | None = None,  # noqa: ARG002
            progress: ProgressFn = no_progress, on_epoch=None) -> dict:  # noqa: ARG002
        """The ION model is fixed here; fitted on the training triples: the mean phrase and creative vectors (centring:
        ION vectors share a large common direction, so raw cosines of text-only phrases are all close to 1) and the
        Platt parameters (cosine -> probability)."""
        triples = [t for t in triples if t.ad_id in creatives]
        if not triples:
            raise ValueError("no training triple has a loaded creative")
        phrases = sorted({t.phrase for t in triples})
        ads = sorted({t.ad_id for t in triples})
        if self.phrase_route == "text-neighbours":  # every creative given (ad texts only; no label is read)
            bank = [creatives[k] for k in sorted(creatives) if creatives[k].text]
            self.bank_text = phrase_vectors([c.text for c in bank])
            self.bank_vec = self.creative_embeddings(bank)
        self.phrase_mean.copy_(torch.from_numpy(self.phrase_embeddings(phrases).mean(0)))
        self.creative_mean.copy_(torch.from_numpy(self.creative_embeddings([creatives[a] for a in ads]).mean(0)))
        cos = self.cosine(phrases, [creatives[a] for a in ads])
        pi, ai = {p: i for i, p in enumerate(phrases)}, {a: i for i, a in enumerate(ads)}
        scores = np.array([cos[pi[t.phrase], ai[t.ad_id]] for t in triples])
        a, b = platt_fit(scores, np.array([t.label for t in triples]))
        self.platt.copy_(torch.tensor([a, b]))
        return {"platt": [round(a, 4), round(b, 4)], "triples": len(triples), "epoch_loss": []}


def latest_ion_checkpoint(engine: Engine) -> tuple[Path, int] | None:
    """(checkpoint path, run id) of the newest finished full ION run (no ablation, default head), else the newest any."""
    from core.filestore import resolve
    from core.runs import is_variant
    from core.stale import is_stale
    from core.store import ModelRun, session_scope

    with session_scope(engine) as s:
        runs = s.scalars(select(ModelRun).where(ModelRun.kind == "ion", ModelRun.status == "done",
                                                ModelRun.checkpoint_path.is_not(None)).order_by(ModelRun.id.desc())).all()
        for run in sorted(runs, key=lambda r: is_variant({"config": r.config})):  # full models first, newest first
            if is_stale({"config": run.config}):  # built on a previous demo world
                continue
            path = Path(run.checkpoint_path)
            path = path if path.is_absolute() else resolve(path)
            if path.is_file():
                return path, run.id
    return None


def train_small_ion(creatives: dict[str, Creative], categories: dict[str, int], *, epochs: int = 3, seed: int = 0,
                    device: str = "cpu", progress: ProgressFn = no_progress) -> tuple[ION, Vocabulary]:
    """A small ION (d_model 64, 2 layers) trained on the given creatives with their categories as labels."""
    from core.embed.pipeline import Split, fit_and_evaluate
    from core.embed.train import TrainConfig

    keys = [k for k in creatives if k in categories]
    dims = {creatives[k].region_dim for k in keys if len(creatives[k].region_conf)}
    if len(keys) < 4 or len({categories[k] for k in keys}) < 2 or len(dims) != 1:
        raise ValueError("training ION needs at least 4 creatives of 2 categories, all with regions of one feature size")
    d = dims.pop()
    feats = [creatives[k].region_feats if len(creatives[k].region_conf) else np.zeros((0, d), np.float32) for k in keys]
    confs = [creatives[k].region_conf for k in keys]
    split = Split(np.arange(len(keys)), np.array([], int), np.array([], int))
    cfg = TrainConfig(epochs=epochs, seed=seed, device=device, categories_per_batch=8, ads_per_category=4)
    fit = fit_and_evaluate("ion", [creatives[k].text or " " for k in keys], feats, confs, [categories[k] for k in keys], split,
                           model_options={"d_model": 64, "layers": 2, "heads": 4, "k1": 10, "k2": 5, "d_out": 64},
                           train_config=cfg, progress=progress)
    return fit.model.eval(), fit.vocab
