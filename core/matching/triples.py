"""(search phrase, creative, label) triples: weakly labelled from the catalog, or imported judgements (CSV).

Weak labels (the demo world, or any catalog with categories): phrases are category names (English and
Chinese), category keywords (both languages, from ``Category.meta``) and a few ad texts. A phrase is
relevant to every ad of every category that produces it (1:n: "fruit" -> apples, bananas, grapes ...).
Negatives are ads of other categories; HARD negatives are ads of *similar* categories: the same group
(``Category.meta["group"]``, as in core/demo/vocab.py) or, without groups, the nearest category names in
MiniLM space. Splits are BY PHRASE (a hash of seed + phrase, so stable as the catalog grows): a phrase is in exactly
one of train / val / test, and the phrases of
held-out (unseen) categories are always test. Training triples use the non-test ads, test triples the
test ads, so evaluation sees neither the phrase nor the creative in training.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select

from core.ingest.report import ImportRejected, ImportReport
from core.store import Ad, Category, get_engine, session_scope

PHRASE_SPLITS = ("train", "val", "test")
TRUE_WORDS = {"1", "true", "yes", "relevant", "y"}
FALSE_WORDS = {"0", "false", "no", "irrelevant", "n"}


@dataclass(frozen=True)
class Triple:
    """One judgement: is ``ad_id`` relevant to ``phrase``? ``kind``: pos | neg | hard (weak labels) | judged."""

    phrase: str
    ad_id: str
    label: int
    split: str = "test"
    kind: str = "judged"


@dataclass
class TripleSet:
    """Triples plus where each phrase went and which categories it stands for."""

    triples: list[Triple]
    phrase_split: dict[str, str] = field(default_factory=dict)
    phrase_categories: dict[str, list[str]] = field(default_factory=dict)
    source: str = "weak"

    def part(self, *splits: str) -> list[Triple]:
        return [t for t in self.triples if t.split in splits]

    def summary(self) -> dict:
        out: dict = {"source": self.source, "triples": len(self.triples), "phrases": len(self.phrase_split)}
        for split in PHRASE_SPLITS:
            part = self.part(split)
            out[split] = {"phrases": len({t.phrase for t in part}), "triples": len(part), "positives": sum(t.label for t in part),
                          "hard_negatives": sum(t.kind == "hard" for t in part)}
        return out


def normalise_phrase(text: str) -> str:
    return " ".join(str(text).split()).strip()


def _similar_by_names(names: list[str], k: int = 3) -> dict[str, set[str]]:
    """Each category's ``k`` nearest categories by MiniLM cosine of their names."""
    from core.embed.baselines import text_embeddings

    vecs = text_embeddings(names)
    sim = vecs @ vecs.T
    np.fill_diagonal(sim, -np.inf)
    return {names[i]: {names[j] for j in np.argsort(-sim[i])[:k]} for i in range(len(names))}


def similar_categories(categories: dict[str, dict], k: int = 3) -> dict[str, set[str]]:
    """Similar categories of each category: same ``group`` when every category has one, else MiniLM neighbours."""
    groups = {name: (meta or {}).get("group") for name, meta in categories.items()}
    if groups and all(groups.values()):
        by_group: dict[str, set[str]] = defaultdict(set)
        for name, group in groups.items():
            by_group[group].add(name)
        return {name: by_group[group] - {name} for name, group in groups.items()}
    names = sorted(categories)
    return _similar_by_names(names, k=min(k, len(names) - 1)) if len(names) > 1 else {n: set() for n in names}


def _category_phrases(name: str, name_zh: str | None, meta: dict) -> list[str]:
    phrases = [name, name_zh or ""]
    phrases += list(meta.get("keywords", [])) + list(meta.get("keywords_zh", []))
    return [p for p in (normalise_phrase(x) for x in phrases) if p]


def phrase_split(phrase: str, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.25) -> str:
    """The split of a phrase from a hash of (seed, phrase): stable whatever else is in the catalog."""
    u = int.from_bytes(hashlib.sha256(f"{seed}|{phrase}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def build_weak_triples(engine: Engine | None = None, *, ad_ids: Sequence[str] | None = None, n_pos: int = 8, n_neg: int = 4,
                       n_hard: int = 4, ad_texts_per_category: int = 1, val_fraction: float = 0.1, test_fraction: float = 0.25,
                       seed: int = 0, val_creatives: bool = True) -> TripleSet:
    """Weakly labelled triples from the catalog (see the module docstring). Deterministic for a seed.

    ``ad_ids`` restricts the creatives used (e.g. those whose regions are cached). Per phrase and split:
    up to ``n_pos`` positives, ``n_hard`` hard negatives (similar categories) and ``n_neg`` other negatives.
    ``val_creatives`` (default): validation phrases are paired with validation creatives only, and training triples
    never show a validation creative, so validation measures new phrases on new creatives, like test (without it,
    validation phrases met training creatives, which a scorer can memorise: docs/creative_selection.md). The test
    triples are the same either way.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and leave phrases for training")
    engine = engine or get_engine()
    rng = np.random.default_rng(seed)
    with session_scope(engine) as s:
        cats = {c.name: (c.name_zh, dict(c.meta or {}), bool(c.unseen)) for c in s.scalars(select(Category).order_by(Category.id))}
        query = select(Ad.id, Ad.text, Ad.split, Category.name).join(Category, Ad.category_id == Category.id).order_by(Ad.id)
        if ad_ids is not None:
            query = query.where(Ad.id.in_(list(ad_ids)))
        ads = s.execute(query).all()
    if len(cats) < 2 or not ads:
        raise ValueError("weak triples need a catalog with at least 2 categories and ads with a category (try: python -m core demo)")
    ads_by_cat: dict[tuple[str, bool], list[str]] = defaultdict(list)  # (category, is_test_ad) -> ad ids
    val_ads_by_cat: dict[str, list[str]] = defaultdict(list)
    texts_by_cat: dict[str, list[str]] = defaultdict(list)
    for ad_id, text, split, cat in ads:
        ads_by_cat[(cat, split == "test")].append(ad_id)
        if split == "val":
            val_ads_by_cat[cat].append(ad_id)
        texts_by_cat[cat].append(text)
    used = {c for c, _ in ads_by_cat}
    similar = similar_categories({c: cats[c][1] for c in cats if c in used})

    phrase_cats: dict[str, set[str]] = defaultdict(set)
    for cat in sorted(used):
        name_zh, meta, _unseen = cats[cat]
        for phrase in _category_phrases(cat, name_zh, meta):
            phrase_cats[phrase].add(cat)
        texts = texts_by_cat[cat]
        for i in rng.permutation(len(texts))[:ad_texts_per_category]:
            phrase = normalise_phrase(texts[i])
            if phrase:
                phrase_cats[phrase].add(cat)

    phrases = sorted(phrase_cats)
    split_of: dict[str, str] = {}
    for phrase in phrases:
        split_of[phrase] = phrase_split(phrase, seed, val_fraction, test_fraction)
        if any(cats[c][2] for c in phrase_cats[phrase]):
            split_of[phrase] = "test"  # unseen categories are never trained on

    triples: list[Triple] = []
    all_cats = sorted(used)
    for phrase in phrases:
        split = split_of[phrase]
        test_ads = split == "test"
        pos_cats = phrase_cats[phrase]
        hard_cats = set().union(*(similar.get(c, set()) for c in pos_cats)) - pos_cats
        other_cats = [c for c in all_cats if c not in pos_cats and c not in hard_cats]

        def pool(categories, test_ads=test_ads) -> list[str]:
            return [a for c in sorted(categories) for a in ads_by_cat.get((c, test_ads), [])]

        def pick(items: list[str], n: int) -> list[str]:
            return [items[i] for i in sorted(rng.permutation(len(items))[:n])] if items else []

        pos = pick(pool(pos_cats), n_pos)
        if not pos:
            continue
        hard = pick(pool(hard_cats), n_hard)
        neg = pick(pool(other_cats), n_neg + max(0, n_hard - len(hard)))
        triples += [Triple(phrase, a, 1, split, "pos") for a in pos]
        triples += [Triple(phrase, a, 0, split, "hard") for a in hard]
        triples += [Triple(phrase, a, 0, split, "neg") for a in neg]
    if val_creatives and val_ads_by_cat:
        triples = _val_on_val_creatives(triples, phrase_cats, similar, all_cats, val_ads_by_cat, seed, n_pos, n_neg, n_hard)
    kept = {t.phrase for t in triples}
    return TripleSet(triples, {p: split_of[p] for p in phrases if p in kept},
                     {p: sorted(phrase_cats[p]) for p in phrases if p in kept}, source="weak")


def _val_on_val_creatives(triples: list[Triple], phrase_cats: dict[str, set[str]], similar: dict[str, set[str]],
                          all_cats: list[str], val_ads: dict[str, list[str]], seed: int, n_pos: int, n_neg: int,
                          n_hard: int) -> list[Triple]:
    """Training triples without validation creatives; validation phrases re-paired with validation creatives (their own
    random stream, so the test triples drawn before are untouched)."""
    val_ids = {a for ids in val_ads.values() for a in ids}
    rng = np.random.default_rng([seed, 1])
    out = [t for t in triples if t.split == "test" or (t.split == "train" and t.ad_id not in val_ids)]
    for phrase in sorted({t.phrase for t in triples if t.split == "val"}):
        pos_cats = phrase_cats[phrase]
        hard_cats = set().union(*(similar.get(c, set()) for c in pos_cats)) - pos_cats
        other_cats = [c for c in all_cats if c not in pos_cats and c not in hard_cats]

        def pick(categories, n: int) -> list[str]:
            items = [a for c in sorted(categories) for a in val_ads.get(c, [])]
            return [items[i] for i in sorted(rng.permutation(len(items))[:n])] if items else []

        pos = pick(pos_cats, n_pos)
        if not pos:
            continue
        hard = pick(hard_cats, n_hard)
        neg = pick(other_cats, n_neg + max(0, n_hard - len(hard)))
        out += [Triple(phrase, a, 1, "val", "pos") for a in pos]
        out += [Triple(phrase, a, 0, "val", "hard") for a in hard]
        out += [Triple(phrase, a, 0, "val", "neg") for a in neg]
    return out


def _parse_label(value: str) -> int | None:
    value = str(value).strip().lower()
    if value in TRUE_WORDS:
        return 1
    if value in FALSE_WORDS:
        return 0
    return None


def read_judgements(source: str | Path | bytes, engine: Engine | None = None, *, name: str | None = None) -> TripleSet:
    """Labelled triples from a CSV with columns ``phrase, ad_id, label`` (label 0/1, true/false, yes/no,
    relevant/irrelevant) and optional ``split`` (train|val|test, default test).

    All-or-nothing: every bad row (empty phrase, unknown ad, bad label or split, the same (phrase, ad) twice with
    different labels, one phrase in two splits) is reported with its row number (header = row 1) and
    :class:`ImportRejected` is raised; nothing is returned in part.
    """
    engine = engine or get_engine()
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    report = ImportReport(kind="judgements", source=label)
    if isinstance(source, bytes):
        text = source.decode("utf-8-sig", errors="replace")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no judgements file at {path}")
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    missing = [c for c in ("phrase", "ad_id", "label") if c not in fields]
    if missing:
        report.reject(1, f"missing column(s) {', '.join(missing)}; expected phrase, ad_id, label[, split]")
        raise ImportRejected(report)
    with session_scope(engine) as s:
        known = set(s.scalars(select(Ad.id)))
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    phrase_split: dict[str, tuple[str, int]] = {}
    triples: list[Triple] = []
    for row_no, raw in enumerate(reader, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        phrase, ad_id = normalise_phrase(row.get("phrase", "")), row.get("ad_id", "")
        bad = False
        if not phrase:
            report.reject(row_no, "empty phrase", "phrase")
            bad = True
        if not ad_id:
            report.reject(row_no, "empty ad_id", "ad_id")
            bad = True
        elif ad_id not in known:
            report.reject(row_no, f"unknown ad '{ad_id}' (import the ads first)", "ad_id")
            bad = True
        value = _parse_label(row.get("label", ""))
        if value is None:
            report.reject(row_no, f"label '{row.get('label', '')}' is not 0/1, true/false, yes/no or relevant/irrelevant", "label")
            bad = True
        split = (row.get("split") or "test").lower()
        if split not in PHRASE_SPLITS:
            report.reject(row_no, f"split '{split}' is not one of {', '.join(PHRASE_SPLITS)}", "split")
            bad = True
        if bad:
            continue
        if phrase in phrase_split and phrase_split[phrase][0] != split:
            report.reject(row_no, f"phrase '{phrase}' is in split '{phrase_split[phrase][0]}' at row {phrase_split[phrase][1]}: "
                                  "a phrase belongs to one split", "split")
            continue
        phrase_split.setdefault(phrase, (split, row_no))
        key = (phrase, ad_id)
        if key in seen:
            if seen[key][0] != value:
                report.reject(row_no, f"contradicts row {seen[key][1]} (same phrase and ad, other label)", "label")
            else:
                report.skipped += 1
            continue
        seen[key] = (int(value), row_no)
        triples.append(Triple(phrase, ad_id, int(value), split, "judged"))
    if not report.ok:
        raise ImportRejected(report)
    if not triples:
        report.reject(1, "the file holds no judgement rows")
        raise ImportRejected(report)
    return TripleSet(triples, {p: s for p, (s, _) in phrase_split.items()}, {}, source=f"judgements:{Path(label).name}")
