"""Keywords of an ad text: the words that name or describe the product.

The ION paper labels a word a keyword when its POS tag is a noun, verb or adjective. For Chinese
(any CJK character in the text) that is exactly what we do, with jieba's POS tagger (dictionary in
the package). For English no tagger with its model inside a PyPI wheel is available offline, so a
light rule set stands in: lower-cased alphabetic words of two or more letters that are not
function words (articles, pronouns, prepositions, auxiliaries, ...) nor ad filler ("buy", "now",
"free", ...). Numbers, punctuation and emoji are never keywords.
"""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")
JIEBA_KEEP = ("n", "v", "a", "eng")  # POS tag prefixes kept: nouns, verbs, adjectives; latin words inside Chinese text

FUNCTION_WORDS = frozenset("""
a an the this that these those there here it its it's they them their theirs we us our ours you your yours he him his she her
hers i me my mine who whom whose which what when where why how all any both each every few more most other some such no nor
not only own same so than too very just also and or but if then else because as until while of at by for with about against
between into through during before after above below to from up down in out on off over under again further once is are was
were be been being have has had having do does did doing can could will would shall should may might must am s t don
doesn didn isn aren wasn weren won wouldn let lets get got make made via per vs etc yes ok oh
buy now new free best top great get today shop order sale off deal deals price only limited offer save click here more
""".split())


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text or ""))


def keywords(text: str, *, limit: int = 24) -> list[str]:
    """The keywords of ``text`` in order of first appearance, without duplicates (at most ``limit``)."""
    text = (text or "").strip()
    if not text:
        return []
    if is_chinese(text):
        import logging

        import jieba
        import jieba.posseg as pseg

        jieba.setLogLevel(logging.WARNING)
        words = [w.word.strip().lower() for w in pseg.cut(text) if w.flag.startswith(JIEBA_KEEP) and w.word.strip()]
        words = [w for w in words if len(w) > 1 or CJK.match(w)]
    else:
        words = [w.lower().strip("'-") for w in WORD.findall(text)]
        words = [w for w in words if len(w) >= 2 and w not in FUNCTION_WORDS]
    seen: dict[str, None] = {}
    for word in words:
        seen.setdefault(word, None)
    return list(seen)[:limit]


def has_words(text: str) -> bool:
    """True when ``text`` holds at least one letter or CJK character (not only emoji, digits, punctuation)."""
    return bool(re.search(r"[A-Za-z]", text or "")) or is_chinese(text) or any(ch.isalpha() for ch in text or "")
