"""Ad text -> words, per-word keyword labels and word ids (the text side of ION / ToTYEmb).

Tokenisation:

* Chinese (any CJK run): ``jieba.posseg``; the paper segments its Chinese ads with jieba.
* Everything else: a regex word tokenizer (letters with internal apostrophes, or numbers);
  English words are lower-cased.

Keyword labels (ION section 3.2): 1 when the word's part of speech is a noun, verb or adjective,
else 0.

* Chinese: jieba's tag starts with ``n`` (n, nr, ns, nt, nz, ng, ...), ``v`` (v, vn, vd, ...) or
  ``a`` (a, ad, an, ...).
* English: the averaged-perceptron tagger of the PyPI package ``denckring-en-pos`` (trained on UD
  English-EWT, weights inside the wheel, no download; UPOS accuracy 0.934 on the EWT test split
  according to its authors). NOUN, PROPN, VERB and ADJ count as keywords; AUX does not.
  Numbers are never keywords and are not shown to the tagger (it was trained on letters only).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+(?:[.,]\d+)*[^\W\d_]*")
_LETTERS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_ENGLISH_KEYWORD_UPOS = frozenset({"NOUN", "PROPN", "VERB", "ADJ"})
_JIEBA_KEYWORD_PREFIXES = ("n", "v", "a")


@dataclass(frozen=True)
class Word:
    """One word of an ad text: its surface form (lower-cased for Latin script), POS tag and keyword label."""

    text: str
    pos: str
    keyword: int  # 1 = noun / verb / adjective


class TaggerUnavailable(RuntimeError):
    """The English part-of-speech tagger package is not installed."""


@lru_cache(maxsize=1)
def _english_tagger():
    try:
        from denckring_en_pos import tagger
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TaggerUnavailable(
            "English keyword labels need the part-of-speech tagger package: pip install denckring-en-pos==0.6.0"
        ) from exc
    return tagger()


@lru_cache(maxsize=1)
def _jieba_posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def tag_english(words: Sequence[str]) -> list[str]:
    """Universal POS tags (NOUN, VERB, ADJ, ...) for a sequence of English words (one sentence)."""
    if not words:
        return []
    labels = _english_tagger().tag(list(words))
    return [label.partition("|")[0] for label in labels]


def _latin_words(span: str) -> list[Word]:
    """Words of a non-CJK span: letters are tagged as one sentence, numbers get ``NUM`` and label 0."""
    raw = _WORD.findall(span)
    letters = [w for w in raw if _LETTERS.fullmatch(w)]
    tags = iter(tag_english(letters))
    out: list[Word] = []
    for w in raw:
        if _LETTERS.fullmatch(w):
            pos = next(tags)
            out.append(Word(w.lower(), pos, int(pos in _ENGLISH_KEYWORD_UPOS)))
        else:
            out.append(Word(w.lower(), "NUM", 0))
    return out


def _chinese_words(span: str) -> list[Word]:
    out: list[Word] = []
    for pair in _jieba_posseg().cut(span):
        word, flag = pair.word.strip(), pair.flag
        if not word or not _HAS_CJK.search(word):
            continue
        out.append(Word(word, flag, int(flag.startswith(_JIEBA_KEYWORD_PREFIXES))))
    return out


def tokenize(text: str) -> list[Word]:
    """Split an ad text into words with POS tags and keyword labels (punctuation and spaces dropped).

    Mixed texts are split into CJK runs (jieba) and the rest (regex + English tagger), in order.
    """
    if not isinstance(text, str):
        raise TypeError(f"ad text must be a string, got {type(text).__name__}")
    words: list[Word] = []
    pos = 0
    for match in _CJK_RUN.finditer(text):
        words.extend(_latin_words(text[pos : match.start()]))
        words.extend(_chinese_words(match.group()))
        pos = match.end()
    words.extend(_latin_words(text[pos:]))
    return words


@dataclass
class Vocabulary:
    """Word <-> id table; id 0 is padding, id 1 the unknown word."""

    words: list[str] = field(default_factory=lambda: [PAD_TOKEN, UNK_TOKEN])

    def __post_init__(self) -> None:
        if self.words[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError("a vocabulary starts with <pad> and <unk>")
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Vocabulary of the words seen at least ``min_freq`` times (most frequent first, ties alphabetical)."""
        counts = Counter(w for words in texts for w in words)
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD_TOKEN, UNK_TOKEN, *ranked])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self._index.get(w, UNK_ID) for w in words]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.words[i] for i in ids if i != PAD_ID]

    def to_dict(self) -> dict:
        return {"words": list(self.words)}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        return cls(list(data["words"]))


def encode_texts(tokenized: Sequence[Sequence[Word]], vocab: Vocabulary, max_words: int = 32):
    """Pad tokenized texts into the model's text tensors.

    Returns ``(tokens LongTensor [B, n], token_mask BoolTensor [B, n], kw_labels LongTensor [B, n])``
    with ``n = min(max_words, longest text)`` (at least 1); keyword labels are -100 on padding.
    Texts longer than ``max_words`` are cut.
    """
    import torch

    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    n = max(1, min(max_words, max((len(t) for t in tokenized), default=1)))
    tokens = torch.zeros(len(tokenized), n, dtype=torch.long)
    labels = torch.full((len(tokenized), n), -100, dtype=torch.long)
    for row, words in enumerate(tokenized):
        words = list(words)[:n]
        if words:
            tokens[row, : len(words)] = torch.tensor(vocab.encode([w.text for w in words]))
            labels[row, : len(words)] = torch.tensor([w.keyword for w in words])
    return tokens, tokens != PAD_ID, labels
