"""ToTYEmb (Text-oriented Transformer-YOLO fusion Embedding): the classification-trained sibling of ION.

Same inputs as ION (see core.embed.ion for the tensor contract; ``kw_labels`` are not used here).

Pipeline (as far as the OCR'd paper can be read, eq. 10-21):

1. Transformer text encoder -> H [B, n, d]; FFN_r on regions -> r [B, k1, d].
2. Text-guided region selection (the "pointer"): an attention-pooled text summary
   c = sum_i softmax_i(w_a^T tanh(W_a h_i)) h_i (eq. 10), a score per region
   u_j = w_p^T tanh(W_c c + W_r r_j) (eq. 11), keep the top K regions (K = 5). As in ION, the hard top-K
   gives no gradient, so the kept regions are scaled by sigmoid(u_j).
3. Fusion (eq. 12-19): s_ij = h_i^T r_j, softmax over words and over regions, h^_i = F_t([h_i; h~_i]),
   r^_j = F_r([r_j; r~_j]), max-pool each side, o = F_o([h_check; r_check]).
4. y = F_y(o), softmax cross-entropy over the training categories (eq. 20-21).
   The embedding for similar-ad search is the penultimate fusion vector o, L2-normalised.

Ablations (``ToTYEmbConfig.ablate``): ``"pointer"`` keeps the top K regions by detector confidence
(no text-guided selection; its parameters are not created); ``"image"`` drops the image branch
(o = F_o(maxpool H), region inputs are ignored).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.embed.layers import RegionProjection, TextEncoder, check_region_norm, ffn, gather_regions, masked_max, masked_softmax, top_regions
from core.embed.word_vectors import check_vocab_options, check_word_init

TOTYEMB_ABLATIONS = frozenset({"pointer", "image"})


@dataclass
class ToTYEmbConfig:
    """ToTYEmb sizes (paper: d_model 128, top K = 5 regions, batch 16, 10 epochs)."""

    vocab_size: int
    region_dim: int
    class_labels: tuple[int, ...]  # the training category ids; class c of the classifier is class_labels[c]
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    k1: int = 20
    top_k: int = 5
    dropout: float = 0.1
    max_words: int = 64
    ablate: frozenset[str] = field(default_factory=frozenset)
    text_norm: str = "pre"  # LayerNorm placement in the text Transformer: "pre" (trains stably from scratch) or "post"
    word_init: str = "minilm"  # word table starts from MiniLM static vectors ("minilm", core.embed.word_vectors) or N(0, 1) ("random")
    region_norm: str = "standardise"  # "standardise" (training regions' mean / std before the region FFN) or "none" (the paper)
    vocab: str = "train"  # words of the training ads ("train") or of every catalogue ad's text ("catalogue"; no labels)
    word_tuning: str = "tuned"  # the word table is trained ("tuned") or kept at its initial vectors ("frozen")

    def __post_init__(self) -> None:
        self.ablate = frozenset(self.ablate)
        check_word_init(self.word_init)
        check_vocab_options(self.vocab, self.word_tuning)
        check_region_norm(self.region_norm)
        unknown = self.ablate - TOTYEMB_ABLATIONS
        if unknown:
            raise ValueError(f"unknown ToTYEmb ablation(s) {sorted(unknown)}; choose from {sorted(TOTYEMB_ABLATIONS)}")
        if self.top_k > self.k1:
            raise ValueError(f"top_k ({self.top_k}) cannot exceed k1 ({self.k1})")
        self.class_labels = tuple(int(c) for c in self.class_labels)
        if len(set(self.class_labels)) != len(self.class_labels):
            raise ValueError("class_labels must be distinct category ids")
        if self.num_classes < 2:
            raise ValueError("a classification model needs at least 2 training categories")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ablate"] = sorted(self.ablate)
        data["class_labels"] = list(self.class_labels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ToTYEmbConfig:
        # checkpoints written before the pre-norm encoder and the MiniLM word table were trained without them
        return cls(**{"text_norm": "post", "word_init": "random", **data, "ablate": frozenset(data.get("ablate", ())),
                      "class_labels": tuple(data["class_labels"])})


@dataclass
class ToTYEmbOutput:
    """embedding [B, d] (L2-normalised o); logits [B, C]; word_attention [B, n] (eq. 10 weights);
    pointer [B, k1] region scores sigmoid(u_j) (None without pointer or image); kept / kept_mask [B, K]
    (None without image); affinity [B, n, K] fusion s_ij (None without image)."""

    embedding: Tensor
    logits: Tensor
    word_attention: Tensor
    pointer: Tensor | None
    kept: Tensor | None
    kept_mask: Tensor | None
    affinity: Tensor | None


class ToTYEmb(nn.Module):
    """The ToTYEmb model; ``forward(tokens, token_mask, regions, region_mask, region_conf) -> ToTYEmbOutput``."""

    kind = "totyemb"

    def __init__(self, config: ToTYEmbConfig) -> None:
        super().__init__()
        self.config = config
        d, p = config.d_model, config.dropout
        self.text = TextEncoder(config.vocab_size, d, config.layers, config.heads, p, config.max_words, config.text_norm)
        self.text.word.weight.requires_grad_(config.word_tuning == "tuned")
        self.word_score = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))  # eq. 10
        with_image = "image" not in config.ablate
        if with_image:
            self.region = RegionProjection(config.region_dim, d, p)
            if "pointer" not in config.ablate:
                self.pointer_text = nn.Linear(d, d, bias=False)  # W_c
                self.pointer_region = nn.Linear(d, d)  # W_r
                self.pointer_out = nn.Linear(d, 1, bias=False)
            self.fuse_text = ffn(2 * d, d, p)
            self.fuse_region = ffn(2 * d, d, p)
        self.fuse_out = nn.Sequential(nn.Linear(2 * d if with_image else d, d), nn.ReLU())  # F_o
        self.drop = nn.Dropout(p)
        self.classifier = nn.Linear(d, config.num_classes)  # F_y
        self.register_buffer("class_labels", torch.tensor(config.class_labels, dtype=torch.long), persistent=False)

    def classes_of(self, labels: Tensor) -> Tensor:
        """Category ids [B] -> classifier class ids [B] (-100 for categories not seen in training)."""
        match = labels[:, None] == self.class_labels[None, :]
        return torch.where(match.any(dim=1), match.float().argmax(dim=1), torch.full_like(labels, -100))

    def forward(self, tokens: Tensor, token_mask: Tensor, regions: Tensor, region_mask: Tensor, region_conf: Tensor) -> ToTYEmbOutput:
        cfg = self.config
        token_mask = token_mask.bool()
        h = self.text(tokens, token_mask)
        attn = masked_softmax(self.word_score(h).squeeze(-1), token_mask, dim=1)
        if "image" in cfg.ablate:
            o = self.fuse_out(masked_max(h, token_mask))
            return ToTYEmbOutput(F.normalize(o, dim=-1), self.classifier(self.drop(o)), attn, None, None, None, None)
        regions, region_mask, region_conf = regions[:, : cfg.k1], region_mask[:, : cfg.k1].bool(), region_conf[:, : cfg.k1]
        r = self.region(regions, region_mask)
        pointer = None
        if "pointer" in cfg.ablate:
            kept, kept_mask = top_regions(region_conf, region_mask, cfg.top_k)
            r_kept = gather_regions(r, kept)
        else:
            c = (attn[..., None] * h).sum(dim=1)
            u = self.pointer_out(torch.tanh(self.pointer_text(c)[:, None, :] + self.pointer_region(r))).squeeze(-1)
            pointer = torch.sigmoid(u) * region_mask.to(u.dtype)
            kept, kept_mask = top_regions(pointer, region_mask, cfg.top_k)
            r_kept = gather_regions(r, kept) * torch.gather(pointer, 1, kept)[..., None]
        s = torch.einsum("bnd,bkd->bnk", h, r_kept)  # eq. 12
        pair = token_mask[:, :, None] & kept_mask[:, None, :]
        r_tilde = torch.einsum("bnk,bnd->bkd", masked_softmax(s, pair, dim=1), h)  # eq. 14
        h_tilde = torch.einsum("bnk,bkd->bnd", masked_softmax(s, pair, dim=2), r_kept)  # eq. 13
        h_hat = self.fuse_text(torch.cat([h, h_tilde], dim=-1))  # eq. 15
        r_hat = self.fuse_region(torch.cat([r_kept, r_tilde], dim=-1))  # eq. 16
        o = self.fuse_out(torch.cat([masked_max(h_hat, token_mask), masked_max(r_hat, kept_mask)], dim=-1))  # eq. 17-19
        return ToTYEmbOutput(
            F.normalize(o, dim=-1), self.classifier(self.drop(o)), attn, pointer, kept, kept_mask, s.masked_fill(~pair, 0.0)
        )

    def forward_batch(self, batch: dict[str, Tensor]) -> ToTYEmbOutput:
        return self(batch["tokens"], batch["token_mask"], batch["regions"], batch["region_mask"], batch["region_conf"])

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Softmax cross-entropy over the training categories (ads of other categories in the batch are ignored)."""
        from core.embed.losses import classification_loss

        out = self.forward_batch(batch)
        classes = self.classes_of(batch["labels"])
        loss = classification_loss(out.logits, classes)
        valid = classes != -100
        acc = float((out.logits.argmax(-1) == classes)[valid].float().mean()) if valid.any() else 0.0
        return loss, {"ce": float(loss.detach()), "accuracy": acc}
