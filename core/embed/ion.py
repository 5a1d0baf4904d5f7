"""ION (Feng et al., Findings of EMNLP 2021, section 3): a bimodal ad embedding for similar-ad retrieval.

Input contract (one batch of B ads; ``n`` words, ``k1`` detector regions of dimension ``D_r``):

    tokens      LongTensor [B, n]        word ids, 0 = padding
    token_mask  BoolTensor [B, n]        True for real words
    kw_labels   LongTensor [B, n]        1 = noun/verb/adjective, 0 = other, -100 = padding (ignored)
    regions     FloatTensor [B, k1, D_r] region features, sorted by detector confidence (desc)
    region_mask BoolTensor [B, k1]       True for real regions (images may have fewer than k1)
    region_conf FloatTensor [B, k1]      detector confidences

Pipeline: Transformer text encoder -> H; Keyword-guided Selective Gate (KSG, eq. 1-4) -> h', h_bar;
FFN_r on regions -> v; Semantic Clue Attention (SCA, eq. 6) re-sorts the k1 regions by alpha and keeps
k2; Dual-path Fusion Attention (DFA, eq. 7-12) -> f, L2-normalised.

Choices the paper leaves open (documented here, tested in tests/test_embed_ion.py):

* KSG lambda_i (eq. 1) is the keyword head's hard 0/1 decision as in the paper, made trainable with a
  straight-through estimator: the forward value is ``1[p_i > 0.5]``, the gradient is that of ``p_i``.
  Train and inference therefore compute the same s.
* SCA: the hard top-k2 gives no gradient to alpha, so the kept region vectors are scaled by their alpha
  (``v_j <- alpha_j * v_j``); the ranking is unchanged and W_v / W_o learn through DFA.
* SCA form (``IONConfig.sca``). Eq. 6 read literally, ``alpha_j = sigmoid(W_v v_j + W_o h_bar)`` with a
  scalar output, adds the same ``W_o h_bar`` to every region of an ad: the ORDER of the regions, and so
  which k2 are kept, is the same whatever the text says (the text only shifts every alpha alike). That
  form is ``sca="literal"``. ``sca="additive"`` (a deviation, as ToTYEmb's region pointer does) lets the
  text interact with each region before the scalar: ``alpha_j = sigmoid(w^T tanh(W_v v_j + W_o h_bar))``
  with W_v, W_o: d -> d and w: d -> 1, so two texts can keep different regions of the same picture.
* A text with no words or an image with no regions gives zero vectors on that side, never NaN.
* Embedding neck (not in the paper): f passes a parameter-free BatchNorm1d before the L2 normalisation
  (``IONConfig.neck = "batchnorm"``, the "BNNeck" of person re-identification). Trained from scratch on a
  catalog of ~1,000 ads, the batch-hardest triplet loss otherwise collapses every ad onto one point
  within the first epoch (loss stuck at gamma, mean inter-ad distance < 0.01): the batch statistics keep
  each dimension spread across the batch, so a collapsed embedding is no longer a minimum. Measured in
  docs/ion_training.md; ``neck="none"`` gives the paper's exact head.
* Region features are standardised with the training set's statistics before FFN_r (core.embed.layers).
* Ablations (section 4.5) through ``IONConfig.ablate``: ``"ksg"`` (h' = H, h_bar = masked sum of H; the
  keyword head goes with it, so no keyword loss), ``"sca"`` (keep the top k2 regions by detector
  confidence, no alpha), ``"dfa"`` (global concatenation fusion: f = FFN_f([maxpool h'; maxpool v])).
  An ablated module's parameters are not created.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.embed.layers import (
    RegionProjection,
    TextEncoder,
    check_region_norm,
    ffn,
    gather_regions,
    masked_max,
    masked_softmax,
    masked_sum,
    top_regions,
)
from core.embed.word_vectors import check_vocab_options, check_word_init

ION_ABLATIONS = frozenset({"ksg", "sca", "dfa"})
ION_NECKS = ("batchnorm", "none")
ION_SCA_FORMS = ("additive", "literal")


@dataclass
class IONConfig:
    """ION sizes and loss weights (paper defaults: d_model 128, 4 layers, 4 heads, k1 20, k2 10, gamma 0.2, rho 0.05)."""

    vocab_size: int
    region_dim: int
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    k1: int = 20
    k2: int = 10
    d_out: int = 128
    margin: float = 0.2  # gamma (0.2 MP, 0.3 MS-COCO)
    keyword_weight: float = 0.05  # rho
    dropout: float = 0.1
    max_words: int = 64
    ablate: frozenset[str] = field(default_factory=frozenset)
    text_norm: str = "pre"  # LayerNorm placement in the text Transformer: "pre" (trains stably from scratch) or "post"
    word_init: str = "minilm"  # word table starts from MiniLM static vectors ("minilm", core.embed.word_vectors) or N(0, 1) ("random")
    neck: str = "batchnorm"  # "batchnorm" (parameter-free BatchNorm1d on f before ||f|| = 1) or "none" (the paper's head)
    sca: str = "additive"  # "additive" (text-region interaction) or "literal" (eq. 6 as printed: the text shifts every region alike)
    region_norm: str = "standardise"  # "standardise" (training regions' mean / std before FFN_r) or "none" (the paper)
    vocab: str = "train"  # words of the training ads ("train") or of every catalogue ad's text ("catalogue"; no labels)
    word_tuning: str = "tuned"  # the word table is trained ("tuned") or kept at its initial vectors ("frozen")

    def __post_init__(self) -> None:
        self.ablate = frozenset(self.ablate)
        check_word_init(self.word_init)
        check_vocab_options(self.vocab, self.word_tuning)
        if self.neck not in ION_NECKS:
            raise ValueError(f"unknown ION neck {self.neck!r}; choose from {list(ION_NECKS)}")
        if self.sca not in ION_SCA_FORMS:
            raise ValueError(f"unknown ION SCA form {self.sca!r}; choose from {list(ION_SCA_FORMS)}")
        check_region_norm(self.region_norm)
        unknown = self.ablate - ION_ABLATIONS
        if unknown:
            raise ValueError(f"unknown ION ablation(s) {sorted(unknown)}; choose from {sorted(ION_ABLATIONS)}")
        if self.k2 > self.k1:
            raise ValueError(f"k2 ({self.k2}) cannot exceed k1 ({self.k1})")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        for name in ("vocab_size", "region_dim", "d_model", "layers", "heads", "k1", "k2", "d_out", "max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ablate"] = sorted(self.ablate)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> IONConfig:
        # checkpoints written before the neck, the pre-norm encoder and the SCA forms existed were trained without them
        return cls(**{"neck": "none", "text_norm": "post", "word_init": "random", "sca": "literal", **data,
                      "ablate": frozenset(data.get("ablate", ()))})


@dataclass
class IONOutput:
    """What one forward pass gives (B ads, n words, k1 regions, k2 kept regions, d = d_model).

    embedding       [B, d_out]  the ad vector f, ||f|| = 1
    keyword_logits  [B, n, 2]   keyword head (None without KSG)
    key_gates       [B, n, d]   KSG gates keyGate_i (None without KSG; zero on padding)
    alpha           [B, k1]     SCA relevance per input region (None without SCA; zero on padding)
    kept            [B, k2]     indices (into the k1 input regions) of the regions kept, in rank order
    kept_mask       [B, k2]     True where the kept slot is a real region
    beta            [B, n, k2]  DFA word-region affinities (None without DFA)
    """

    embedding: Tensor
    keyword_logits: Tensor | None
    key_gates: Tensor | None
    alpha: Tensor | None
    kept: Tensor
    kept_mask: Tensor
    beta: Tensor | None


class ION(nn.Module):
    """The ION model; ``forward(tokens, token_mask, regions, region_mask, region_conf) -> IONOutput``."""

    kind = "ion"

    def __init__(self, config: IONConfig) -> None:
        super().__init__()
        self.config = config
        d, p = config.d_model, config.dropout
        self.text = TextEncoder(config.vocab_size, d, config.layers, config.heads, p, config.max_words, config.text_norm)
        self.text.word.weight.requires_grad_(config.word_tuning == "tuned")
        self.region = RegionProjection(config.region_dim, d, p)
        if "ksg" not in config.ablate:
            self.keyword_head = nn.Linear(d, 2)  # binary softmax classifier per word
            self.gate_word = nn.Linear(d, d)  # W_w
            self.gate_context = nn.Linear(d, d, bias=False)  # W_c
        if "sca" not in config.ablate:
            width = d if config.sca == "additive" else 1
            self.clue_region = nn.Linear(d, width)  # W_v
            self.clue_text = nn.Linear(d, width, bias=False)  # W_o
            if config.sca == "additive":
                self.clue_out = nn.Linear(d, 1)  # w
        if "dfa" not in config.ablate:
            self.fusion_bilinear = nn.Linear(d, d, bias=False)  # W_f
            self.ffn_h = ffn(2 * d, d, p)
            self.ffn_v = ffn(2 * d, d, p)
        self.ffn_f = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Dropout(p), nn.Linear(d, config.d_out))
        self.neck = nn.BatchNorm1d(config.d_out, affine=False) if config.neck == "batchnorm" else nn.Identity()

    # -- modules ---------------------------------------------------------------------------------
    def _ksg(self, h: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """KSG (eq. 1-4). h [B, n, d] -> (h' [B, n, d], h_bar [B, d], keyword logits [B, n, 2], gates [B, n, d])."""
        if "ksg" in self.config.ablate:
            return h, masked_sum(h, token_mask), None, None
        logits = self.keyword_head(h)
        prob = torch.softmax(logits, dim=-1)[..., 1]
        hard = (prob > 0.5).to(prob.dtype)
        lam = (hard + prob - prob.detach()) * token_mask.to(prob.dtype)  # straight-through lambda_i
        s = (lam[..., None] * h).sum(dim=1)  # eq. 1
        gates = torch.sigmoid(self.gate_word(h) + self.gate_context(s)[:, None, :])  # eq. 2
        gates = gates * token_mask[..., None].to(h.dtype)
        h_prime = gates * h  # eq. 3
        return h_prime, masked_sum(h_prime, token_mask), logits, gates  # eq. 4

    def _sca(self, v: Tensor, h_bar: Tensor, region_mask: Tensor, region_conf: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """SCA (eq. 6). v [B, k1, d], h_bar [B, d] -> (kept v [B, k2, d], kept idx, kept mask, alpha [B, k1])."""
        k2 = self.config.k2
        if "sca" in self.config.ablate:
            kept, kept_mask = top_regions(region_conf, region_mask, k2)
            return gather_regions(v, kept), kept, kept_mask, None
        alpha = self._alpha(v, h_bar, region_mask)  # [B, k1]
        kept, kept_mask = top_regions(alpha, region_mask, k2)
        v_kept = gather_regions(v, kept) * torch.gather(alpha, 1, kept)[..., None]
        return v_kept, kept, kept_mask, alpha

    def _alpha(self, v: Tensor, h_bar: Tensor, region_mask: Tensor) -> Tensor:
        """Eq. 6. v [B, m, d], h_bar [B, d] -> alpha [B, m] (zero on padding).

        literal: sigmoid(W_v v_j + W_o h_bar); additive: sigmoid(w^T tanh(W_v v_j + W_o h_bar)).
        """
        if self.config.sca == "additive":
            joint = torch.tanh(self.clue_region(v) + self.clue_text(h_bar)[:, None, :])  # [B, m, d]
            logit = self.clue_out(joint).squeeze(-1)
        else:
            logit = self.clue_region(v).squeeze(-1) + self.clue_text(h_bar)
        alpha = torch.sigmoid(logit)
        return alpha * region_mask.to(alpha.dtype)

    def _dfa(self, h_prime: Tensor, token_mask: Tensor, v: Tensor, v_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """DFA (eq. 7-12). h' [B, n, d], v [B, k2, d] -> (pre-normalisation f [B, d_out], beta [B, n, k2])."""
        if "dfa" in self.config.ablate:  # global concatenation fusion
            return self.ffn_f(torch.cat([masked_max(h_prime, token_mask), masked_max(v, v_mask)], dim=-1)), None
        beta = torch.einsum("bnd,bkd->bnk", h_prime, self.fusion_bilinear(v))  # eq. 7
        pair = token_mask[:, :, None] & v_mask[:, None, :]
        v_tilde = torch.einsum("bnk,bnd->bkd", masked_softmax(beta, pair, dim=1), h_prime)  # eq. 8, softmax over words
        h_tilde = torch.einsum("bnk,bkd->bnd", masked_softmax(beta, pair, dim=2), v)  # eq. 9, softmax over regions
        h_hat = self.ffn_h(torch.cat([h_prime, h_tilde], dim=-1))  # eq. 10
        v_hat = self.ffn_v(torch.cat([v, v_tilde], dim=-1))  # eq. 11
        f = self.ffn_f(torch.cat([masked_max(h_hat, token_mask), masked_max(v_hat, v_mask)], dim=-1))  # eq. 12
        return f, beta.masked_fill(~pair, 0.0)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, tokens: Tensor, token_mask: Tensor, regions: Tensor, region_mask: Tensor, region_conf: Tensor) -> IONOutput:
        """Embed a batch of ads (shapes in the module docstring); regions beyond k1 are ignored."""
        k1 = self.config.k1
        regions, region_mask, region_conf = regions[:, :k1], region_mask[:, :k1], region_conf[:, :k1]
        token_mask, region_mask = token_mask.bool(), region_mask.bool()
        h = self.text(tokens, token_mask)
        h_prime, h_bar, logits, gates = self._ksg(h, token_mask)
        v = self.region(regions, region_mask)
        v_kept, kept, kept_mask, alpha = self._sca(v, h_bar, region_mask, region_conf)
        f, beta = self._dfa(h_prime, token_mask, v_kept, kept_mask)
        if self.training and len(f) < 2 and isinstance(self.neck, nn.BatchNorm1d):
            raise ValueError("training ION with the batchnorm neck needs batches of at least 2 ads")
        return IONOutput(F.normalize(self.neck(f), dim=-1), logits, gates, alpha, kept, kept_mask, beta)

    @torch.no_grad()
    def clue_scores(self, tokens: Tensor, token_mask: Tensor, regions: Tensor, region_mask: Tensor) -> Tensor:
        """SCA relevance alpha of ANY number m of regions to the text (no k1 cut), for re-ranking detector boxes.

        tokens, token_mask [B, n]; regions [B, m, D_r]; region_mask [B, m] -> alpha [B, m] in (0, 1), 0 on padding.
        """
        if "sca" in self.config.ablate:
            raise ValueError("this ION was trained without SCA: it has no semantic-clue scores")
        token_mask, region_mask = token_mask.bool(), region_mask.bool()
        _, h_bar, _, _ = self._ksg(self.text(tokens, token_mask), token_mask)
        return self._alpha(self.region(regions, region_mask), h_bar, region_mask)

    def forward_batch(self, batch: dict[str, Tensor]) -> IONOutput:
        return self(batch["tokens"], batch["token_mask"], batch["regions"], batch["region_mask"], batch["region_conf"])

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Eq. 14 batch-hard triplet loss + rho * keyword cross-entropy; returns (loss, parts for logging)."""
        from core.embed.losses import batch_hard_triplet, keyword_loss

        out = self.forward_batch(batch)
        triplet = batch_hard_triplet(out.embedding, batch["labels"], self.config.margin)
        total = triplet.loss
        parts = {"triplet": float(triplet.loss.detach()), "anchors": float(triplet.valid.sum())}
        if out.keyword_logits is not None and self.config.keyword_weight > 0:
            kw = keyword_loss(out.keyword_logits, batch["kw_labels"])
            total = total + self.config.keyword_weight * kw
            parts["keyword"] = float(kw.detach())
        return total, parts
