"""Training a model run: train (ION, ToTYEmb) or embed (baselines), evaluate on the test split, index the whole catalog.

The run's row (core.runs) follows the work: status, progress, split, metrics and the paths of its files.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

import core.retrieval.regions as region_reads  # looked up at call time: tests replace the region reads there
from core.errors import RetrievalError
from core.filestore import resolve
from core.health import training_warnings
from core.jobqueue import wait_turn
from core.progress import ProgressFn, no_progress
from core.retrieval.catalog import load_catalog_ads, make_split, readable_ads
from core.retrieval.evaluation import chance_levels, precision_metrics
from core.retrieval.index import unreadable_metrics, write_run_index
from core.retrieval.models import (
    BASELINE_KINDS,
    IMAGE_KINDS,
    REGION_IMAGE_KIND,
    TRAINED_KINDS,
    baseline_vectors,
    region_image_catalog_vectors,
)
from core.retrieval.regions import region_arrays
from core.runs import (
    RUN_KINDS,
    RunCancelled,
    cancellable,
    code_version,
    create_run,
    db_should_stop,
    ends_failed_on_error,
    merge_run_config,
    run_dir,
    start_run,
    update_run,
    with_db_progress,
)
from core.store import get_engine

MODEL_OPTIONS = ("k1", "k2", "margin", "keyword_weight", "d_model", "layers", "heads", "top_k", "max_words", "dropout", "neck", "text_norm",
                 "word_init", "sca", "region_norm", "vocab", "word_tuning")
TRAIN_OPTIONS = ("epochs", "seed", "lr", "sampler", "batch_size", "region_drop", "detector", "recipe")


def epoch_rows(history: Sequence) -> list[dict[str, Any]]:
    """The per-epoch curve stored with the run: epoch, train_loss, val_loss."""
    return [{"epoch": h.epoch, "train_loss": round(h.train_loss, 5), "val_loss": None if h.val_loss is None else round(h.val_loss, 5)}
            for h in history]


def _stage(progress: ProgressFn, start: float, span: float) -> ProgressFn:
    """A progress callback mapping a stage's own done/total into [start, start + span] of the whole run (scaled to 1000)."""
    def report(done: int, total: int, message: str) -> None:
        frac = done / total if total else 1.0
        progress(int(1000 * (start + span * min(1.0, frac))), 1000, message)
    return report


def train_run(kind: str, ablate: Sequence[str] = (), options: dict[str, Any] | None = None, progress: ProgressFn = no_progress,
              should_stop: Callable[[], bool] | None = None, *, engine: Engine | None = None, run_id: int | None = None,
              name: str | None = None) -> int:
    """Train (ion, totyemb) or embed (text, image, concat), evaluate on the test split, index the whole catalog.

    ``options``: epochs, seed, lr, sampler, detector (auto|yolo|offline), recipe (adlens|paper: core.embed.recipe;
    explicit options win over it) and model sizes / loss weights / switches (k1, k2, margin = gamma,
    keyword_weight = rho, d_model, layers, heads, top_k, max_words, dropout, neck, text_norm, word_init, sca, region_norm,
    vocab, word_tuning).
    Returns the run id; the run ends ``done``, ``cancelled`` (should_stop returned True) or ``failed``
    (the error is re-raised).
    """
    from core.embed.train import TrainingCancelled

    engine = engine or get_engine()
    options = dict(options or {})
    if kind not in RUN_KINDS:
        raise RetrievalError(f"unknown model kind {kind!r}; choose from {', '.join(RUN_KINDS)}")
    unknown = set(options) - {*TRAIN_OPTIONS, *MODEL_OPTIONS}
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
        merge_run_config(run_id, config, engine=engine)  # locked: the job's pid may be merged in at the same time
        if not wait_turn(run_id, engine=engine):  # a queued background job waits for a free slot; False: cancelled meanwhile
            return run_id
    if not start_run(run_id, "loading the catalog", engine=engine):
        return run_id
    with ends_failed_on_error(run_id, engine=engine):  # whatever fails after the start (a save too) ends the run failed
        started = time.perf_counter()
        # a Cancel from the app reaches every stage (region detection included) through the progress reports
        should_stop = should_stop or db_should_stop(run_id, engine)
        progress = cancellable(with_db_progress(progress or no_progress, run_id, engine), should_stop)
        try:
            run = _train(run_id, kind, ablate, options, progress, should_stop, engine)
        except (TrainingCancelled, RunCancelled) as exc:
            where = "before the first epoch finished" if isinstance(exc, TrainingCancelled) else "while it ran"
            update_run(run_id, engine=engine, status="cancelled", message=f"cancelled {where}", finished=True)
            return run_id
        if run == "cancelled":
            update_run(run_id, engine=engine, status="cancelled", message="cancelled during training", finished=True)
        else:
            run["seconds"] = round(time.perf_counter() - started, 2)
            update_run(run_id, engine=engine, status="done", progress=1.0, message="done", metrics=run, finished=True)
    return run_id


def _train(run_id: int, kind: str, ablate: list[str], options: dict, progress: ProgressFn,
           should_stop: Callable[[], bool] | None, engine: Engine) -> dict | str:
    from core.embed.checkpoint import save_checkpoint
    from core.embed.evaluate import seen_unseen_precision
    from core.embed.pipeline import embed_ads, fit_and_evaluate
    from core.embed.recipe import deviations_in_use, recipe_options
    from core.embed.train import TrainConfig

    cat = load_catalog_ads(engine=engine)
    images, left_out = None, []
    if kind in IMAGE_KINDS:  # an unreadable creative is left out (and counted), never indexed as a blank picture
        cat, images, left_out = readable_ads(cat)
    split, labelled, description = make_split(cat, int(options.get("seed", 0)))
    update_run(run_id, engine=engine, data_split=description, code_version=code_version())
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    checkpoint_rel = None
    if kind in TRAINED_KINDS:
        t0 = time.perf_counter()
        key, dim, regions = region_reads.regions_for_ads(cat.ids, cat.image_hashes, options.get("detector"), engine=engine,
                                                         progress=_stage(progress, 0.0, 0.2))
        if not dim:
            raise RetrievalError("no region features were found for the catalog images (the detector found nothing)")
        merge_run_config(run_id, {"regions_key": key, "region_dim": dim}, engine=engine, message="training")
        timings["regions"] = round(time.perf_counter() - t0, 2)
        feats, confs = region_arrays(cat, regions, dim)
        recipe_model, recipe_train = recipe_options(kind, options.get("recipe", "adlens"))
        model_options = {**recipe_model, **{k: options[k] for k in MODEL_OPTIONS if k in options}}  # explicit options win
        if ablate:
            model_options["ablate"] = frozenset(ablate)
        train_options = {"sampler": "random", "batch_size": 32, "region_drop": 0.0, **recipe_train,
                         **{k: options[k] for k in ("epochs", "sampler", "batch_size", "region_drop") if k in options}}
        cfg = TrainConfig(epochs=train_options.get("epochs"), seed=int(options.get("seed", 0)), lr=float(options.get("lr", 1e-3)),
                          sampler=train_options["sampler"], batch_size=int(train_options["batch_size"]),
                          region_drop=float(train_options["region_drop"]))
        t0 = time.perf_counter()
        fit = fit_and_evaluate(kind, [cat.texts[i] for i in labelled], [feats[i] for i in labelled], [confs[i] for i in labelled],
                               cat.labels[labelled].tolist(), split, model_options=model_options, train_config=cfg,
                               progress=_stage(progress, 0.2, 0.65), should_stop=should_stop,
                               on_epoch=lambda history: update_run(run_id, engine=engine, metrics={"history": epoch_rows(history)}),
                               catalogue_texts=[cat.texts[i] for i in sorted(set(range(len(cat.texts))) - set(labelled.tolist()))])
        timings["train"] = round(time.perf_counter() - t0, 2)
        if fit.training.cancelled:
            return "cancelled"
        checkpoint_rel = f"{run_dir(run_id)}/model.pt"
        save_checkpoint(resolve(checkpoint_rel), fit.model, fit.vocab, {"run_id": run_id, "code_version": code_version()})
        metrics.update(precision_metrics(fit.metrics) if fit.metrics else {})
        metrics["best_epoch"] = fit.training.best_epoch
        metrics["epochs"] = cfg.epochs
        metrics["deviations"] = deviations_in_use(kind, fit.model.config.to_dict(),
                                                  {"sampler": cfg.sampler, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                                                   "region_drop": cfg.region_drop})
        metrics["history"] = epoch_rows(fit.training.history)
        t0 = time.perf_counter()
        vectors = embed_ads(fit.model, fit.vocab, cat.texts, feats, confs, device=cfg.device, progress=_stage(progress, 0.85, 0.1))
        timings["embed"] = round(time.perf_counter() - t0, 2)
        metrics["warnings"] = training_warnings([h["train_loss"] for h in metrics["history"]], vectors)
    else:
        t0 = time.perf_counter()
        if kind == REGION_IMAGE_KIND:  # region descriptors from the cache (extracted where missing)
            vectors = region_image_catalog_vectors(cat, engine, options.get("detector"), progress=_stage(progress, 0.0, 0.9))
        else:
            vectors = baseline_vectors(kind, cat.texts, images, _stage(progress, 0.0, 0.9))
        timings["embed"] = round(time.perf_counter() - t0, 2)
        metrics.update(unreadable_metrics(left_out, training_warnings([], vectors)))
        test_rows = labelled[split.test]
        if len(test_rows) > 1:
            metrics.update(precision_metrics(seen_unseen_precision(vectors[test_rows], cat.labels[test_rows],
                                                                   cat.labels[labelled[split.train]])))
    test_rows = labelled[split.test]
    metrics["chance"] = chance_levels(cat.labels[test_rows], cat.labels[labelled[split.train]])
    if should_stop is not None and should_stop():
        return "cancelled"
    index, index_rel = write_run_index(run_id, kind, cat.ids, cat.texts, vectors, progress)
    update_run(run_id, engine=engine, checkpoint_path=checkpoint_rel, index_path=index_rel)
    metrics.update({"indexed": len(index), "dim": int(vectors.shape[1]), "factory": index.factory, "timings": timings})
    progress(1000, 1000, "done")
    return metrics
