"""A run's model as an embedder: the trained checkpoint (ION, ToTYEmb) or an offline baseline (text, image, concat),
turning catalog ads or a new query (creative or phrase) into vectors; and the ION run's clue scorer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine

import core.retrieval.regions as region_reads  # looked up at call time: tests replace the region reads there
from core.errors import RetrievalError
from core.filestore import resolve
from core.loaders import load_once
from core.progress import ProgressFn, no_progress
from core.retrieval.catalog import CatalogAds, load_ad_images, readable_ads
from core.retrieval.regions import empty_regions, region_arrays

TRAINED_KINDS = ("ion", "totyemb")
REGION_IMAGE_KIND = "image-regions"  # image-only over region descriptors (core.embed.baselines.region_pool)
BASELINE_KINDS = ("text", "image", "concat", REGION_IMAGE_KIND)
REGION_POOL = "top1"  # core.embed.baselines.region_pool: the most confident box's descriptor


@load_once(maxsize=4)
def _checkpoint(path: str, mtime: float):  # noqa: ARG001 - mtime keys the cache
    from core.embed.checkpoint import load_checkpoint

    return load_checkpoint(path, device="cpu")


def load_model(run: dict[str, Any]):
    """The run's Checkpoint (model in eval mode on CPU + vocabulary)."""
    if not run.get("checkpoint_path"):
        raise RetrievalError(f"model run {run['id']} ({run['kind']}) has no checkpoint")
    path = resolve(run["checkpoint_path"])
    if not Path(path).is_file():
        raise RetrievalError(f"the checkpoint of model run {run['id']} is missing ({run['checkpoint_path']}): train it again")
    from core.filestore import DamagedFile

    try:
        return _checkpoint(str(path), Path(path).stat().st_mtime)
    except DamagedFile as exc:
        raise RetrievalError(f"model run {run['id']}: {exc} "
                             f"(`python -m core train --model {run['kind']}`)") from None


def baseline_vectors(kind: str, texts: Sequence[str], images: Callable[[], Sequence[Image.Image]] | Sequence[Image.Image] | None,
                     progress: ProgressFn = no_progress) -> np.ndarray:
    """Offline baseline vectors: text (MiniLM) [N, 384], image (EfficientNet-Lite0) [N, 1280], concat [N, 1664],
    image-regions (pooled region descriptors of the detected boxes, core.embed.baselines.region_pool) [N, 1280].

    ``images`` may be a callable loading them (only called when the kind needs them) or None (no image:
    zeros on the image side of concat; an error for the image baseline).
    """
    from core.embed.baselines import IMAGE_DIM, TEXT_DIM, concat_fusion, image_embeddings, region_pool, text_embeddings

    n = len(texts)
    if kind == REGION_IMAGE_KIND:
        imgs = images() if callable(images) else images
        if imgs is None:
            raise RetrievalError("the image-only (regions) model needs an image to search with")
        regs = region_reads.described_regions_for_images(list(imgs), progress=progress)
        return region_pool([r.features for r in regs], [r.confidences for r in regs], how=REGION_POOL, boxes=[r.boxes for r in regs])
    text_v = image_v = None
    if kind in ("text", "concat"):
        text_v = text_embeddings(list(texts), progress=progress) if any(t.strip() for t in texts) else np.zeros((n, TEXT_DIM), np.float32)
    if kind in ("image", "concat"):
        imgs = images() if callable(images) else images
        if imgs is None:
            if kind == "image":
                raise RetrievalError("the image-only model needs an image to search with")
            image_v = np.zeros((n, IMAGE_DIM), np.float32)
        else:
            image_v = image_embeddings(list(imgs), progress=progress)
    if kind == "text":
        return text_v
    if kind == "image":
        return image_v
    if kind == "concat":
        return concat_fusion(text_v, image_v)
    raise RetrievalError(f"unknown baseline kind {kind!r}")


IMAGE_KINDS = ("image", "concat")  # baselines that read each creative's pixels


def embed_readable_rows(run: dict[str, Any], cat: CatalogAds, engine: Engine, progress: ProgressFn
                        ) -> tuple[CatalogAds, np.ndarray, list[str]]:
    """(the ads embedded, their vectors, the ids left out): an image baseline leaves out ads whose creative cannot be read."""
    if run["kind"] in IMAGE_KINDS:
        cat, images, left_out = readable_ads(cat)
        return cat, baseline_vectors(run["kind"], cat.texts, images, progress), left_out
    return cat, embed_catalog_rows(run, cat, engine, progress), []


def _readable_images(cat: CatalogAds) -> list[Image.Image]:
    images = load_ad_images(cat.image_paths)
    bad = [ad_id for ad_id, img in zip(cat.ids, images, strict=True) if img is None]
    if bad:
        raise RetrievalError(f"the creative of ad{'s' if len(bad) > 1 else ''} {', '.join(bad[:5])} could not be read")
    return images


def embed_catalog_rows(run: dict[str, Any], cat: CatalogAds, engine: Engine, progress: ProgressFn) -> np.ndarray:
    """Vectors [N, d] of the given catalog ads with a run's model (RetrievalError when an image model cannot read a creative)."""
    if run["kind"] == REGION_IMAGE_KIND:
        return region_image_catalog_vectors(cat, engine, progress=progress)
    if run["kind"] in BASELINE_KINDS:
        return baseline_vectors(run["kind"], cat.texts, lambda: _readable_images(cat), progress)
    from core.embed.pipeline import embed_ads

    ckpt = load_model(run)
    key, _dim, regions = region_reads.regions_for_ads(cat.ids, cat.image_hashes, run["config"].get("detector"), engine=engine,
                                                      progress=progress)
    stored = run["config"].get("regions_key")
    if stored and key != stored:
        raise RetrievalError(f"model run {run['id']} was trained on regions '{stored}' but the detector now gives '{key}': "
                             "train a new run for this detector")
    feats, confs = region_arrays(cat, regions, ckpt.model.config.region_dim)
    return embed_ads(ckpt.model, ckpt.vocab, cat.texts, feats, confs, device="cpu", progress=progress)


def region_image_catalog_vectors(cat: CatalogAds, engine: Engine, detector: str | None = None, *, how: str = REGION_POOL,
                                 progress: ProgressFn = no_progress) -> np.ndarray:
    """Image-only baseline over region descriptors of catalog ads, from the region cache (extracted where missing)."""
    from core.embed.baselines import IMAGE_DIM, region_pool
    from core.regions.registry import get_detector

    mode = region_reads.region_descriptor_mode(get_detector(detector).detector)
    _key, _dim, regions = region_reads.regions_for_ads(cat.ids, cat.image_hashes, detector, engine=engine, progress=progress,
                                                       descriptors=mode)
    feats, confs = region_arrays(cat, regions, IMAGE_DIM)
    boxes = [(regions.get(h) or region_reads.empty_regions(IMAGE_DIM)).boxes for h in cat.image_hashes]
    return region_pool(feats, confs, how=how, boxes=boxes)


def clue_scorer(run: dict[str, Any]):
    """The run's trained SCA as a clue scorer for core.regions.clues.rerank (the Regions page)."""
    from core.embed.clues import IonClueScorer

    if run["kind"] != "ion":
        raise RetrievalError(f"model run {run['id']} is {run['kind']}: only ION runs have semantic-clue scores")
    ckpt = load_model(run)
    return IonClueScorer(ckpt.model, ckpt.vocab, name=f"ION run #{run['id']}")


def run_detector_version(run: dict[str, Any]) -> str | None:
    """The detector version a trained run's regions came from (the part of its regions key before '|'), if known."""
    key = (run.get("config") or {}).get("regions_key")
    return key.split("|")[0] if key else None


def embed_query(run: dict[str, Any], *, text: str = "", image: Image.Image | None = None) -> np.ndarray:
    """One query vector [1, d] for a new creative (image + text) or a phrase (text only) with a run's model."""
    text = (text or "").strip()
    if not text and image is None:
        raise RetrievalError("give a text, an image, or both to search with")
    if run["kind"] in BASELINE_KINDS:
        if run["kind"] == "text" and not text:
            raise RetrievalError("the text-only model needs a text to search with")
        return baseline_vectors(run["kind"], [text], [image] if image is not None else None)
    from core.embed.pipeline import embed_ads

    ckpt = load_model(run)
    dim = ckpt.model.config.region_dim
    reg = region_reads.regions_for_image(image, run["config"].get("detector"), run["config"].get("regions_key")) \
        if image is not None else empty_regions(dim)
    if reg.features.shape[1] != dim:
        raise RetrievalError(f"the detector gives {reg.features.shape[1]}-d region features, the model expects {dim}-d")
    return embed_ads(ckpt.model, ckpt.vocab, [text], [reg.features], [reg.confidences], device="cpu")
