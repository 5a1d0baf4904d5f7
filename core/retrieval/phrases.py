"""Phrase queries for trained runs, routed through the catalogue's text space.

ION and ToTYEmb embed an ad from its text AND its regions; a search phrase has no picture, and its words may
never have been in the model's vocabulary (held-out categories). Embedded directly, category phrases found
ads of their own category in 1.9% of the top 10 on the demo world (docs/ion_training.md, section 8). So a
phrase is routed ("text-neighbours", the default):

1. the phrase and every catalogue ad text are embedded by the offline MiniLM sentence encoder (the text
   vectors are kept beside the run's index, ``text_index.faiss``, built once);
2. the ``m`` ads whose texts are closest to the phrase are looked up in the run's own index;
3. the mean of their vectors is the query, searched in the run's index like any ad.

The answer is then the run's own notion of similar ads (text and picture), seeded by the few ads that say
what the phrase says. ``route="direct"`` embeds the phrase with the model alone (the paper has no phrase
queries; this was AdLens's first behaviour).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.filestore import resolve
from core.progress import ProgressFn, no_progress
from core.runs import run_dir
from core.search.index import VectorIndex, load_cached

PHRASE_ROUTES = ("text-neighbours", "direct")
NEIGHBOURS = 3  # chosen on the demo world: 1 / 3 / 5 / 10 / 20 neighbours gave 70.5 / 75.6 / 73.2 / 68.5 / 55.7% (run without dropout)
TEXT_INDEX = "text_index.faiss"


def text_index_path(run_id: int) -> Path:
    return Path(resolve(f"{run_dir(run_id)}/{TEXT_INDEX}"))


def build_text_index(run_id: int, ids: list[str], texts: list[str], progress: ProgressFn = no_progress) -> VectorIndex:
    """MiniLM vectors of the catalogue's ad texts, saved beside the run's index."""
    from core.embed.baselines import text_embeddings

    index = VectorIndex.build(text_embeddings(list(texts), progress=progress), list(ids))
    index.save(text_index_path(run_id))
    return index


def add_texts(run_id: int, ids: list[str], texts: list[str]) -> None:
    """Append new ads' text vectors to the run's text index (when it has one)."""
    from core.embed.baselines import text_embeddings

    path = text_index_path(run_id)
    if not path.is_file() or not ids:
        return
    index = VectorIndex.load(path)
    index.add(text_embeddings(list(texts)), list(ids))
    index.save(path)


def load_text_index(run_id: int) -> VectorIndex | None:
    """The run's ad-text index (None when it has none); a damaged one is rebuilt from the catalogue's texts (cheap), never served."""
    from core.filestore import DamagedFile, remove_sealed

    path = text_index_path(run_id)
    if not (path.is_file() and path.with_suffix(".ids.json").is_file()):
        return None
    what, fix = f"the ad-text index of model run {run_id}", "it is rebuilt from the ad texts"
    try:
        return load_cached(path, what=what, fix=fix)
    except DamagedFile:
        from core.retrieval.catalog import load_catalog_ads

        for part in (path, path.with_suffix(".ids.json")):
            remove_sealed(part)
        cat = load_catalog_ads()
        build_text_index(run_id, cat.ids, cat.texts)
        return load_cached(path, what=what, fix=fix)


def phrase_vector(run: dict[str, Any], index: VectorIndex, phrase: str, *, neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, dict] | None:
    """(query vector [1, d], how it was made) for a phrase routed through the text space; None without a text index."""
    from core.embed.baselines import text_embeddings

    texts = load_text_index(run["id"])
    if texts is None:
        return None
    found = texts.search(text_embeddings([phrase]), neighbours)
    seeds = [a for a in found.ids[0] if a in index]
    if not seeds:
        return None
    vector = np.mean([index.vector(a) for a in seeds], axis=0, keepdims=True).astype(np.float32)
    return vector, {"route": "text-neighbours", "seed_ads": seeds}
