"""Tokenizer, keyword labels (English tagger, jieba) and vocabulary."""

from __future__ import annotations

import pytest
import torch

from core.embed.text import PAD_ID, UNK_ID, Vocabulary, encode_texts, tokenize


def labels(text: str) -> dict[str, int]:
    return {w.text: w.keyword for w in tokenize(text)}


def test_english_nouns_verbs_adjectives_are_keywords():
    got = labels("Buy fresh green tea for your family with the best price")
    for word in ("buy", "fresh", "green", "tea", "family", "price"):
        assert got[word] == 1, (word, got)
    for word in ("for", "your", "with", "the"):
        assert got[word] == 0, (word, got)


def test_english_tagger_uses_context():
    """'walks' is a verb after a subject and a noun after an adjective; pronouns, adverbs and determiners are not keywords."""
    verb = {w.text: w for w in tokenize("She walks home quickly")}
    noun = {w.text: w for w in tokenize("The evening walks were beautiful")}
    assert verb["walks"].pos == "VERB" and noun["walks"].pos == "NOUN"
    assert verb["she"].keyword == 0 and verb["quickly"].keyword == 0 and noun["the"].keyword == 0
    assert noun["beautiful"].keyword == 1 and noun["beautiful"].pos == "ADJ"
    assert noun["were"].keyword == 0  # auxiliary, not a verb


def test_numbers_and_punctuation():
    words = tokenize("Save 50% on 2 shoes!!! Don't wait.")
    texts = [w.text for w in words]
    assert texts == ["save", "50", "on", "2", "shoes", "don't", "wait"]
    assert {w.text: w.keyword for w in words}["50"] == 0
    assert {w.text: w.pos for w in words}["2"] == "NUM"


def test_chinese_with_jieba():
    words = tokenize("新款闪耀手链，珍藏你的爱情")
    got = {w.text: w.keyword for w in words}
    assert "，" not in got
    assert got["手链"] == 1 and got["爱情"] == 1 and got["闪耀"] == 1
    assert got["你"] == 0 and got["的"] == 0


def test_mixed_script_keeps_order():
    words = tokenize("Apple 新款手机 deal")
    assert words[0].text == "apple" and words[-1].text == "deal"
    assert "".join(w.text for w in words[1:-1]) == "新款手机"
    assert all(w.keyword == 1 for w in words[1:-1])  # jieba: nouns


def test_empty_and_bad_text():
    assert tokenize("") == [] and tokenize("!!! ...") == []
    with pytest.raises(TypeError, match="string"):
        tokenize(None)  # type: ignore[arg-type]


def test_vocabulary_and_encoding():
    a, b = tokenize("green tea green leaves"), tokenize("red lipstick")
    vocab = Vocabulary.build([[w.text for w in a], [w.text for w in b]])
    assert vocab.words[:3] == ["<pad>", "<unk>", "green"]  # most frequent first
    assert vocab.encode(["tea", "coffee"]) == [vocab.words.index("tea"), UNK_ID]
    assert Vocabulary.from_dict(vocab.to_dict()).words == vocab.words
    assert len(Vocabulary.build([["a", "b", "b"]], min_freq=2)) == 3
    tokens, mask, kw = encode_texts([a, b, []], vocab, max_words=3)
    assert tokens.shape == (3, 3)
    assert mask.tolist() == [[True] * 3, [True, True, False], [False] * 3]
    assert tokens[1, 2] == PAD_ID and kw[1, 2] == -100 and kw[2].eq(-100).all()
    assert torch.equal(kw[0], torch.tensor([w.keyword for w in a[:3]]))
