"""Similar-ad retrieval over model runs: train / embed, evaluate as the paper, index, search, explain.

The glue between the catalog (core.store), the cached region features (core.regions), the embedding
models (core.embed) and the FAISS index (core.search). One model run = one trained model (ION,
ToTYEmb) or one offline baseline (text: MiniLM, image: EfficientNet-Lite0, concat: both), its test
metrics, and a persisted index of the WHOLE catalog under ``home/runs/<id>/``.

Evaluation follows ION section 4.2: every test ad queries all other test ads (Euclidean distance);
Hit P@1..10 is reported separately for categories seen in training and held-out (unseen) ones.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, select

from core.filestore import get_array, resolve
from core.progress import ProgressFn, no_progress
from core.runs import RUN_KINDS, code_version, create_run, get_run, latest_done, run_dir, start_run, update_run
from core.search.index import VectorIndex
from core.store import Ad, Category, Region, RegionSet, get_engine, session_scope

TRAINED_KINDS = ("ion", "totyemb")
BASELINE_KINDS = ("text", "image", "concat")
MODEL_OPTIONS = ("k1", "k2", "margin", "keyword_weight", "d_model", "layers", "heads", "top_k", "max_words", "dropout", "neck", "text_norm",
                 "word_init")


class RetrievalError(ValueError):
    """A request that cannot be served (no run, no index, wrong query for a model); the message says why."""


# ---------------------------------------------------------------------------------------------------------
# catalog and regions
# ---------------------------------------------------------------------------------------------------------
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


@dataclass
class RegionData:
    """One image's regions in detector-confidence order: boxes [m, 4], confidences [m], features [m, D], labels."""

    boxes: np.ndarray
    confidences: np.ndarray
    features: np.ndarray
    labels: list[str]


def load_catalog_ads(ad_ids: Sequence[str] | None = None, *, engine: Engine | None = None) -> CatalogAds:
    engine = engine or get_engine()
    query = select(Ad.id, Ad.text, Ad.category_id, Ad.split, Ad.image_hash, Ad.image_path).order_by(Ad.id)
    if ad_ids is not None:
        query = query.where(Ad.id.in_(list(ad_ids)))
    with session_scope(engine) as s:
        rows = s.execute(query).all()
        unseen = sorted(int(c) for c in s.scalars(select(Category.id).where(Category.unseen)))
    return CatalogAds(
        ids=[r[0] for r in rows], texts=[r[1] or "" for r in rows],
        labels=np.array([r[2] if r[2] is not None else -1 for r in rows], dtype=np.int64),
        splits=[r[3] or "train" for r in rows], image_hashes=[r[4] for r in rows], image_paths=[r[5] for r in rows],
        unseen_categories=unseen,
    )


def regions_for_ads(ad_ids: Sequence[str], image_hashes: Sequence[str], detector: str | None, *, engine: Engine,
                    progress: ProgressFn = no_progress) -> tuple[str, int, dict[str, RegionData]]:
    """Cached regions of the ads' images (extracted first where missing) -> (detector key, feature dim, by image hash)."""
    from core.regions.extract import extract_catalog

    result = extract_catalog(detector, ad_ids=list(ad_ids), ocr=False, engine=engine, progress=progress)
    key = result["key"]
    wanted = sorted(set(image_hashes))
    out: dict[str, RegionData] = {}
    dim = 0
    with session_scope(engine) as s:
        sets = s.execute(select(RegionSet.id, RegionSet.image_hash, RegionSet.features_path, RegionSet.feature_dim)
                         .where(RegionSet.detector == key, RegionSet.image_hash.in_(wanted))).all()
        by_set: dict[int, list[tuple]] = {}
        for row in s.execute(select(Region.region_set_id, Region.rank, Region.x1, Region.y1, Region.x2, Region.y2, Region.confidence,
                                    Region.label).where(Region.region_set_id.in_([r[0] for r in sets])).order_by(Region.rank)):
            by_set.setdefault(row[0], []).append(row[2:])
    for set_id, image_hash, features_path, feature_dim in sets:
        regs = by_set.get(set_id, [])
        dim = dim or int(feature_dim)
        feats = get_array(features_path) if features_path else np.zeros((0, feature_dim), np.float32)
        out[image_hash] = RegionData(
            boxes=np.array([r[:4] for r in regs], np.float32).reshape(-1, 4), confidences=np.array([r[4] for r in regs], np.float32),
            features=np.asarray(feats, np.float32).reshape(len(regs), int(feature_dim)), labels=[r[5] for r in regs])
    return key, dim, out


def regions_for_image(image: Image.Image, detector: str | None, key: str | None = None) -> RegionData:
    """Detect the regions of one new creative with the detector a run was trained on (same thresholds)."""
    from core.regions.registry import get_detector

    det = get_detector(detector).detector
    if key and not key.startswith(f"{det.version}|"):
        raise RetrievalError(f"this run was trained on regions of '{key.split('|')[0]}', but the detector available now is "
                             f"'{det.version}': the query would not be comparable")
    result = det.detect([image.convert("RGB")], conf=0.05, iou=0.5, max_det=50)[0]
    return RegionData(result.boxes, result.confidences, result.features, list(result.labels))


def _empty_regions(dim: int) -> RegionData:
    return RegionData(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, dim), np.float32), [])


def _region_arrays(cat: CatalogAds, regions: dict[str, RegionData], dim: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    feats, confs = [], []
    for image_hash in cat.image_hashes:
        reg = regions.get(image_hash) or _empty_regions(dim)
        feats.append(reg.features)
        confs.append(reg.confidences)
    return feats, confs


# ---------------------------------------------------------------------------------------------------------
# data split
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# embedding with a run
# ---------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
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
    return _checkpoint(str(path), Path(path).stat().st_mtime)


def _load_images(paths: Sequence[str]) -> list[Image.Image]:
    from core.images import ImageError, load_image

    out = []
    for rel in paths:
        try:
            out.append(load_image(resolve(rel)).image)
        except (ImageError, OSError):
            out.append(Image.new("RGB", (64, 64), (255, 255, 255)))  # unreadable file: a blank creative
    return out


def baseline_vectors(kind: str, texts: Sequence[str], images: Callable[[], Sequence[Image.Image]] | Sequence[Image.Image] | None,
                     progress: ProgressFn = no_progress) -> np.ndarray:
    """Offline baseline vectors: text (MiniLM) [N, 384], image (EfficientNet-Lite0) [N, 1280], concat [N, 1664].

    ``images`` may be a callable loading them (only called when the kind needs them) or None (no image:
    zeros on the image side of concat; an error for the image baseline).
    """
    from core.embed.baselines import IMAGE_DIM, TEXT_DIM, concat_fusion, image_embeddings, text_embeddings

    n = len(texts)
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


def _embed_catalog_rows(run: dict[str, Any], cat: CatalogAds, engine: Engine, progress: ProgressFn) -> np.ndarray:
    """Vectors [N, d] of the given catalog ads with a run's model."""
    if run["kind"] in BASELINE_KINDS:
        return baseline_vectors(run["kind"], cat.texts, lambda: _load_images(cat.image_paths), progress)
    from core.embed.pipeline import embed_ads

    ckpt = load_model(run)
    key, dim, regions = regions_for_ads(cat.ids, cat.image_hashes, run["config"].get("detector"), engine=engine, progress=progress)
    stored = run["config"].get("regions_key")
    if stored and key != stored:
        raise RetrievalError(f"model run {run['id']} was trained on regions '{stored}' but the detector now gives '{key}': "
                             "train a new run for this detector")
    feats, confs = _region_arrays(cat, regions, ckpt.model.config.region_dim)
    return embed_ads(ckpt.model, ckpt.vocab, cat.texts, feats, confs, device="cpu", progress=progress)


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
    reg = regions_for_image(image, run["config"].get("detector"), run["config"].get("regions_key")) if image is not None \
        else _empty_regions(dim)
    if reg.features.shape[1] != dim:
        raise RetrievalError(f"the detector gives {reg.features.shape[1]}-d region features, the model expects {dim}-d")
    return embed_ads(ckpt.model, ckpt.vocab, [text], [reg.features], [reg.confidences], device="cpu")


# ---------------------------------------------------------------------------------------------------------
# training a run
# ---------------------------------------------------------------------------------------------------------
def _clean(values: Sequence[float]) -> list[float | None]:
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else round(float(v), 6) for v in values]


def _metrics(raw: dict) -> dict:
    return {"all": _clean(raw["all"]), "seen": _clean(raw["seen"]), "unseen": _clean(raw["unseen"]),
            "n_seen": int(raw["n_seen"]), "n_unseen": int(raw["n_unseen"])}


def chance_levels(test_labels: np.ndarray, train_labels: np.ndarray) -> dict[str, float | None]:
    """Hit P@k of a random ranking (the same for every k): per query, (ads of its category - 1) / (test ads - 1),
    averaged over seen and over unseen queries. With few test ads per category this is the floor to read P@k against."""
    test_labels = np.asarray(test_labels)
    n = len(test_labels)
    if n < 2:
        return {"seen": None, "unseen": None}
    values, counts = np.unique(test_labels, return_counts=True)
    count = dict(zip(values.tolist(), counts.tolist(), strict=True))
    per_query = np.array([(count[c] - 1) / (n - 1) for c in test_labels.tolist()])
    seen = np.isin(test_labels, np.asarray(train_labels))
    return {"seen": round(float(per_query[seen].mean()), 6) if seen.any() else None,
            "unseen": round(float(per_query[~seen].mean()), 6) if (~seen).any() else None}


def _stage(progress: ProgressFn, start: float, span: float) -> ProgressFn:
    """A progress callback mapping a stage's own done/total into [start, start + span] of the whole run (scaled to 1000)."""
    def report(done: int, total: int, message: str) -> None:
        frac = done / total if total else 1.0
        progress(int(1000 * (start + span * min(1.0, frac))), 1000, message)
    return report


def _with_db_progress(progress: ProgressFn, run_id: int, engine: Engine) -> ProgressFn:
    """``progress`` plus a throttled write of it to the run's row (so the app sees CLI runs move too)."""
    from core.jobs import db_progress

    to_db = db_progress(run_id, engine)

    def report(done: int, total: int, message: str) -> None:
        progress(done, total, message)
        to_db(done, total, message)

    return report


def train_run(kind: str, ablate: Sequence[str] = (), options: dict[str, Any] | None = None, progress: ProgressFn = no_progress,
              should_stop: Callable[[], bool] | None = None, *, engine: Engine | None = None, run_id: int | None = None,
              name: str | None = None) -> int:
    """Train (ion, totyemb) or embed (text, image, concat), evaluate on the test split, index the whole catalog.

    ``options``: epochs, seed, lr, detector (auto|yolo|offline) and model sizes / loss weights
    (k1, k2, margin = gamma, keyword_weight = rho, d_model, layers, heads, top_k, max_words, dropout).
    Returns the run id; the run ends ``done``, ``cancelled`` (should_stop returned True) or ``failed``
    (the error is re-raised).
    """
    from core.embed.train import TrainingCancelled

    engine = engine or get_engine()
    options = dict(options or {})
    if kind not in RUN_KINDS:
        raise RetrievalError(f"unknown model kind {kind!r}; choose from {', '.join(RUN_KINDS)}")
    unknown = set(options) - {"epochs", "seed", "lr", "detector", *MODEL_OPTIONS}
    if unknown:
        raise RetrievalError(f"unknown option(s) {sorted(unknown)}")
    ablate = sorted({a.strip().lower() for a in ablate if a and a.strip()})
    if ablate and kind in BASELINE_KINDS:
        raise RetrievalError(f"the {kind} baseline has no modules to ablate")
    config = {"kind": kind, "ablate": ablate, **options}
    if run_id is None:
        suffix = f" w/o {'+'.join(ablate)}" if ablate else ""
        # the process doing the work, so core.jobs.reap_stale can mark the run failed if it dies (e.g. a killed CLI)
        config["job"] = {"mode": "process", "pid": os.getpid(), "host": socket.gethostname()}
        run_id = create_run(kind, name or f"{kind}{suffix}", config, engine=engine)
    else:
        config = {**get_run(run_id, engine=engine)["config"], **config}
        update_run(run_id, engine=engine, config=config)
    if not start_run(run_id, "loading the catalog", engine=engine):
        return run_id
    started = time.perf_counter()
    progress = _with_db_progress(progress or no_progress, run_id, engine)
    try:
        run = _train(run_id, kind, ablate, options, config, progress, should_stop, engine)
    except TrainingCancelled:
        update_run(run_id, engine=engine, status="cancelled", message="cancelled before the first epoch finished", finished=True)
        return run_id
    except Exception as exc:
        update_run(run_id, engine=engine, status="failed", message=f"{exc.__class__.__name__}: {exc}"[:2000], finished=True)
        raise
    if run == "cancelled":
        update_run(run_id, engine=engine, status="cancelled", message="cancelled during training", finished=True)
    else:
        run["seconds"] = round(time.perf_counter() - started, 2)
        update_run(run_id, engine=engine, status="done", progress=1.0, message="done", metrics=run, finished=True)
    return run_id


def _train(run_id: int, kind: str, ablate: list[str], options: dict, config: dict, progress: ProgressFn,
           should_stop: Callable[[], bool] | None, engine: Engine) -> dict | str:
    from core.embed.checkpoint import save_checkpoint
    from core.embed.evaluate import seen_unseen_precision
    from core.embed.pipeline import embed_ads, fit_and_evaluate
    from core.embed.train import TrainConfig

    cat = load_catalog_ads(engine=engine)
    split, labelled, description = make_split(cat, int(options.get("seed", 0)))
    update_run(run_id, engine=engine, data_split=description, code_version=code_version())
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    checkpoint_rel = None
    if kind in TRAINED_KINDS:
        t0 = time.perf_counter()
        key, dim, regions = regions_for_ads(cat.ids, cat.image_hashes, options.get("detector"), engine=engine,
                                            progress=_stage(progress, 0.0, 0.2))
        if not dim:
            raise RetrievalError("no region features were found for the catalog images (the detector found nothing)")
        config = {**config, "regions_key": key, "region_dim": dim}
        update_run(run_id, engine=engine, config=config, message="training")
        timings["regions"] = round(time.perf_counter() - t0, 2)
        feats, confs = _region_arrays(cat, regions, dim)
        model_options = {k: options[k] for k in MODEL_OPTIONS if k in options}
        if ablate:
            model_options["ablate"] = frozenset(ablate)
        cfg = TrainConfig(epochs=options.get("epochs"), seed=int(options.get("seed", 0)), lr=float(options.get("lr", 1e-3)),
                          sampler="balanced" if kind == "ion" else "random")
        t0 = time.perf_counter()
        fit = fit_and_evaluate(kind, [cat.texts[i] for i in labelled], [feats[i] for i in labelled], [confs[i] for i in labelled],
                               cat.labels[labelled].tolist(), split, model_options=model_options, train_config=cfg,
                               progress=_stage(progress, 0.2, 0.65), should_stop=should_stop)
        timings["train"] = round(time.perf_counter() - t0, 2)
        if fit.training.cancelled:
            return "cancelled"
        checkpoint_rel = f"{run_dir(run_id)}/model.pt"
        save_checkpoint(resolve(checkpoint_rel), fit.model, fit.vocab, {"run_id": run_id, "code_version": code_version()})
        metrics.update(_metrics(fit.metrics) if fit.metrics else {})
        metrics["best_epoch"] = fit.training.best_epoch
        metrics["epochs"] = cfg.epochs
        metrics["history"] = [{"epoch": h.epoch, "train_loss": round(h.train_loss, 5),
                               "val_loss": None if h.val_loss is None else round(h.val_loss, 5)} for h in fit.training.history]
        t0 = time.perf_counter()
        vectors = embed_ads(fit.model, fit.vocab, cat.texts, feats, confs, device=cfg.device, progress=_stage(progress, 0.85, 0.1))
        timings["embed"] = round(time.perf_counter() - t0, 2)
    else:
        t0 = time.perf_counter()
        vectors = baseline_vectors(kind, cat.texts, lambda: _load_images(cat.image_paths), _stage(progress, 0.0, 0.9))
        timings["embed"] = round(time.perf_counter() - t0, 2)
        test_rows = labelled[split.test]
        if len(test_rows) > 1:
            metrics.update(_metrics(seen_unseen_precision(vectors[test_rows], cat.labels[test_rows], cat.labels[labelled[split.train]])))
    test_rows = labelled[split.test]
    metrics["chance"] = chance_levels(cat.labels[test_rows], cat.labels[labelled[split.train]])
    if should_stop is not None and should_stop():
        return "cancelled"
    progress(950, 1000, "index: building")
    index = VectorIndex.build(vectors, cat.ids)
    index_rel = f"{run_dir(run_id)}/index.faiss"
    index.save(resolve(index_rel))
    update_run(run_id, engine=engine, checkpoint_path=checkpoint_rel, index_path=index_rel)
    metrics.update({"indexed": len(index), "dim": int(vectors.shape[1]), "factory": index.factory, "timings": timings})
    progress(1000, 1000, "done")
    return metrics


# ---------------------------------------------------------------------------------------------------------
# index and search
# ---------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _index(path: str, mtime: float) -> VectorIndex:  # noqa: ARG001 - mtime keys the cache
    return VectorIndex.load(path)


def load_index(run: dict[str, Any]) -> VectorIndex:
    if run["status"] != "done" or not run.get("index_path"):
        raise RetrievalError(f"model run {run['id']} ({run['kind']}) is {run['status']} and has no index yet")
    path = Path(resolve(run["index_path"]))
    if not path.with_suffix(".faiss").is_file() or not path.with_suffix(".ids.json").is_file():
        raise RetrievalError(f"the index of model run {run['id']} is missing ({run['index_path']}): run `python -m core index --run "
                             f"{run['id']} --rebuild`")
    return _index(str(path), path.with_suffix(".ids.json").stat().st_mtime)


def resolve_run(run_id: int | None, *, engine: Engine | None = None) -> dict[str, Any]:
    """The run ``run_id``, or the newest finished ION run (else any finished run) when None."""
    if run_id is not None:
        return get_run(run_id, engine=engine)
    run = latest_done("ion", engine=engine) or latest_done(engine=engine)
    if run is None:
        raise RetrievalError("no finished model run with an index: train one (`python -m core train --model ion`)")
    return run


def build_index(run_id: int, *, rebuild: bool = False, engine: Engine | None = None, progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Add the catalog ads missing from the run's index (default), or re-embed and rebuild it from scratch."""
    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    if run["status"] != "done":
        raise RetrievalError(f"model run {run_id} is {run['status']}: only finished runs can be indexed")
    if not rebuild and run.get("index_path") and Path(resolve(run["index_path"])).with_suffix(".faiss").is_file():
        return add_new_ads(run_id, engine=engine, progress=progress)
    cat = load_catalog_ads(engine=engine)
    if not len(cat):
        raise RetrievalError("the catalog is empty")
    vectors = _embed_catalog_rows(run, cat, engine, progress)
    index = VectorIndex.build(vectors, cat.ids)
    rel = f"{run_dir(run_id)}/index.faiss"
    index.save(resolve(rel))
    update_run(run_id, engine=engine, index_path=rel)
    return {"ok": True, "run_id": run_id, "rebuilt": True, "added": len(index), "total": len(index), "factory": index.factory}


def add_new_ads(run_id: int, *, engine: Engine | None = None, progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Embed the catalog ads not yet in the run's index and append them (no rebuild); saves the index."""
    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    index = load_index(run)
    with session_scope(engine) as s:
        all_ids = list(s.scalars(select(Ad.id).order_by(Ad.id)))
    new = [a for a in all_ids if a not in index]
    if new:
        cat = load_catalog_ads(new, engine=engine)
        vectors = _embed_catalog_rows(run, cat, engine, progress)
        index = VectorIndex.load(resolve(run["index_path"]))  # a private copy, not the cached one
        index.add(vectors, cat.ids)
        index.save(resolve(run["index_path"]))
    return {"ok": True, "run_id": run_id, "rebuilt": False, "added": len(new), "total": len(index),
            "factory": index.factory}


def _records(ad_ids: Sequence[str], engine: Engine) -> dict[str, dict[str, Any]]:
    from core.catalog import ad_record

    with session_scope(engine) as s:
        rows = s.execute(select(Ad, Category.name, Category.unseen).outerjoin(Category, Ad.category_id == Category.id)
                         .where(Ad.id.in_(list(ad_ids)))).all()
        return {ad.id: {**ad_record(ad, name, unseen), "category_id": ad.category_id} for ad, name, unseen in rows}


def search(run_id: int | None = None, *, ad_id: str | None = None, image: Image.Image | None = None, text: str | None = None,
           phrase: str | None = None, k: int = 10, engine: Engine | None = None) -> dict[str, Any]:
    """The k nearest catalog ads to a catalog ad, a new creative (image and/or text) or a phrase.

    -> {"run": {...}, "query": {...}, "results": [{rank, ad_id, distance, category, same_category, text, image_path, ...}]}
    Distances are Euclidean (the paper's metric); ``same_category`` is None when either side has no category.
    """
    engine = engine or get_engine()
    if sum(x is not None and x != "" for x in (ad_id, phrase)) + (image is not None or bool(text)) != 1:
        raise RetrievalError("give exactly one query: a catalog ad, a creative (image and/or text), or a phrase")
    if not 1 <= k <= 1000:
        raise RetrievalError(f"k must lie in [1, 1000] (got {k})")
    run = resolve_run(run_id, engine=engine)
    index = load_index(run)
    query: dict[str, Any]
    exclude = None
    query_category = None
    if ad_id:
        records = _records([ad_id], engine)
        if ad_id not in records:
            raise RetrievalError(f"no ad with id '{ad_id}'")
        query = {"type": "ad", "ad_id": ad_id, "text": records[ad_id]["text"], "category": records[ad_id]["category"]}
        query_category = records[ad_id]["category_id"]
        if ad_id in index:
            vector = index.vector(ad_id)[None, :]
        else:
            vector = _embed_catalog_rows(run, load_catalog_ads([ad_id], engine=engine), engine, no_progress)
        exclude = [ad_id]
    elif phrase:
        query = {"type": "phrase", "phrase": phrase}
        vector = embed_query(run, text=phrase)
    else:
        query = {"type": "creative", "text": text or "", "image": image is not None}
        vector = embed_query(run, text=text or "", image=image)
    found = index.search(np.asarray(vector, np.float32), k, exclude=exclude)
    ids = found.ids[0]
    records = _records(ids, engine)
    results = []
    for rank, (rid, dist) in enumerate(zip(ids, found.distances[0], strict=False), start=1):
        rec = records.get(rid, {"id": rid, "text": "", "category": None, "category_id": None, "image_path": None})
        same = None if query_category is None or rec.get("category_id") is None else rec["category_id"] == query_category
        results.append({**rec, "rank": rank, "ad_id": rid, "distance": round(float(np.sqrt(max(float(dist), 0.0))), 6),
                        "same_category": same})
    return {"ok": True, "run": {"id": run["id"], "kind": run["kind"], "name": run["name"]}, "query": query, "k": k, "results": results}


def similar_ads_for_audience(run_id: int, *, engine: Engine | None = None):
    """A :class:`core.audience.retrieval.SimilarAds` callable backed by the run's FAISS index."""
    from core.audience.retrieval import EmbeddingAds

    run = get_run(run_id, engine=engine)
    return EmbeddingAds(load_index(run), name=f"{run['kind']}#{run['id']}", model_run_id=run["id"])


# ---------------------------------------------------------------------------------------------------------
# evaluation table and the embedding map
# ---------------------------------------------------------------------------------------------------------
def _at(values: list | None, k: int) -> float | None:
    return values[k - 1] if values and len(values) >= k else None


def evaluate_runs(*, engine: Engine | None = None, status: str | None = "done") -> list[dict[str, Any]]:
    """One row per run: Hit P@1/5/10 on seen and unseen test categories (oldest first)."""
    rows = []
    for run in reversed(list_runs_for_eval(engine, status)):
        m = run["metrics"]
        row = {"run_id": run["id"], "kind": run["kind"], "name": run["name"], "ablate": run["config"].get("ablate", []),
               "status": run["status"], "n_seen": m.get("n_seen"), "n_unseen": m.get("n_unseen")}
        for part in ("seen", "unseen"):
            for k in (1, 5, 10):
                row[f"{part}_p{k}"] = _at(m.get(part), k)
        rows.append(row)
    return rows


def list_runs_for_eval(engine: Engine | None, status: str | None) -> list[dict[str, Any]]:
    from core.runs import list_runs

    return list_runs(status=status, engine=engine)


def run_vectors(run_id: int, *, engine: Engine | None = None) -> tuple[list[str], np.ndarray]:
    """(ad ids, vectors [N, d]) stored in the run's index."""
    index = load_index(get_run(run_id, engine=engine))
    if index.factory == "Flat":
        vectors = index.index.reconstruct_n(0, len(index))
    else:
        vectors = np.stack([index.vector(a) for a in index.ids])
    return list(index.ids), np.asarray(vectors, np.float32)


def embedding_map(run_id: int, method: str = "pca", *, limit: int = 3000, seed: int = 0, engine: Engine | None = None) -> dict[str, Any]:
    """2-D coordinates of (up to ``limit``) indexed ads with their categories: PCA or t-SNE (scikit-learn)."""
    engine = engine or get_engine()
    ids, vectors = run_vectors(run_id, engine=engine)
    if len(ids) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=limit, replace=False))
        ids, vectors = [ids[i] for i in keep], vectors[keep]
    if len(ids) < 3:
        raise RetrievalError("the map needs at least 3 indexed ads")
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=min(30.0, (len(ids) - 1) / 3), init="pca", random_state=seed).fit_transform(vectors)
    elif method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    else:
        raise RetrievalError(f"unknown map method {method!r}: pca or tsne")
    records = _records(ids, engine)
    return {"ids": ids, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
            "category": [records.get(a, {}).get("category") or "(none)" for a in ids],
            "text": [records.get(a, {}).get("text", "") for a in ids], "method": method}
