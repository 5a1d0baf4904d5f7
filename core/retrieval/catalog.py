"""The catalog as the retrieval engine sees it: ads in id order with labels and splits, their records and images,
and the train / val / test split a run is trained and evaluated on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, select

from core.errors import RetrievalError
from core.filestore import resolve
from core.store import Ad, Category, get_engine, in_parts, session_scope


@dataclass
class CatalogAds:
    """The ads of the catalog in id order; ``labels`` are category ids (-1: no category)."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    splits: list[str]
    image_hashes: list[str]
    image_paths: list[str]
    unseen_categories: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int]) -> CatalogAds:
        """These rows of the catalog, in this order."""
        rows = list(rows)
        return CatalogAds(ids=[self.ids[i] for i in rows], texts=[self.texts[i] for i in rows], labels=self.labels[rows],
                          splits=[self.splits[i] for i in rows], image_hashes=[self.image_hashes[i] for i in rows],
                          image_paths=[self.image_paths[i] for i in rows], unseen_categories=list(self.unseen_categories))


def load_catalog_ads(ad_ids: Sequence[str] | None = None, *, engine: Engine | None = None) -> CatalogAds:
    engine = engine or get_engine()
    query = select(Ad.id, Ad.text, Ad.category_id, Ad.split, Ad.image_hash, Ad.image_path).order_by(Ad.id)
    with session_scope(engine) as s:
        if ad_ids is None:
            rows = s.execute(query).all()
        else:  # back in id order after the parts
            rows = sorted(in_parts(s, query, Ad.id, ad_ids), key=lambda r: r[0])
        unseen = sorted(int(c) for c in s.scalars(select(Category.id).where(Category.unseen)))
    return CatalogAds(
        ids=[r[0] for r in rows], texts=[r[1] or "" for r in rows],
        labels=np.array([r[2] if r[2] is not None else -1 for r in rows], dtype=np.int64),
        splits=[r[3] or "train" for r in rows], image_hashes=[r[4] for r in rows], image_paths=[r[5] for r in rows],
        unseen_categories=unseen,
    )


def all_ad_ids(engine: Engine) -> list[str]:
    """Every catalog ad id, in id order."""
    with session_scope(engine) as s:
        return list(s.scalars(select(Ad.id).order_by(Ad.id)))


def ad_records(ad_ids: Sequence[str], engine: Engine) -> dict[str, dict[str, Any]]:
    """The display record of each ad (core.catalog.ad_record) plus its ``category_id``, by ad id."""
    from core.catalog import ad_record

    with session_scope(engine) as s:
        rows = in_parts(s, select(Ad, Category.name, Category.unseen).outerjoin(Category, Ad.category_id == Category.id), Ad.id, ad_ids)
        return {ad.id: {**ad_record(ad, name, unseen), "category_id": ad.category_id} for ad, name, unseen in rows}


def load_ad_images(paths: Sequence[str]) -> list[Image.Image | None]:
    """The creatives at these (home-relative) paths; None where a file is missing or unreadable (never a stand-in image)."""
    from core.images import ImageError, load_image

    out: list[Image.Image | None] = []
    for rel in paths:
        try:
            out.append(load_image(resolve(rel)).image)
        except (ImageError, OSError):
            out.append(None)
    return out


def unreadable_warning(count: int) -> str:
    """What a run's page says about the creatives its model left out."""
    return f"{count} creative{'s' if count != 1 else ''} could not be read and {'were' if count != 1 else 'was'} left out."


def readable_ads(cat: CatalogAds) -> tuple[CatalogAds, list[Image.Image], list[str]]:
    """(the ads whose creative can be read, their images, the ids of the ads left out because theirs cannot).

    An unreadable creative is left out of an image model's vectors and index: a blank stand-in would be
    indexed as if it were an ad's picture, and every unreadable ad would look like every other."""
    images = load_ad_images(cat.image_paths)
    keep = [i for i, img in enumerate(images) if img is not None]
    left_out = [cat.ids[i] for i, img in enumerate(images) if img is None]
    return cat.subset(keep), [images[i] for i in keep], left_out


def make_split(cat: CatalogAds, seed: int = 0):
    """(Split over the labelled ads, labelled row indices, description).

    The catalog's own Ad.split is used when it has train and test ads (the demo world, COCO); otherwise
    the paper's protocol is applied (core.embed.pipeline.split_by_category: held-out categories + per-category split).
    """
    from core.embed.pipeline import Split, split_by_category

    labelled = np.flatnonzero(cat.labels >= 0)
    if len(labelled) < 4 or len(np.unique(cat.labels[labelled])) < 2:
        raise RetrievalError(f"training needs labelled ads of at least 2 categories; the catalog has {len(labelled)} labelled ads "
                             "(build the demo world with `python -m core demo` or import a manifest)")
    splits = np.array([cat.splits[i] for i in labelled])
    labels = cat.labels[labelled]
    if (splits == "train").any() and (splits == "test").sum() >= 2:
        train, val, test = (np.flatnonzero(splits == name) for name in ("train", "val", "test"))
        unseen = sorted(set(labels[test].tolist()) - set(labels[train].tolist()))
        split, source = Split(train, val, test, [int(c) for c in unseen]), "catalog (Ad.split)"
    else:
        split, source = split_by_category(labels.tolist(), seed=seed), f"split_by_category(seed={seed})"
    description = {
        "source": source, "train": len(split.train), "val": len(split.val), "test": len(split.test),
        "unseen_categories": [int(c) for c in split.unseen_categories],
        "test_ads": [cat.ids[labelled[i]] for i in split.test],
    }
    return split, labelled, description
