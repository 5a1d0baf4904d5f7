"""Train, store, load, apply and evaluate relevance scorers (what the CLI and the Phrase match page call).

Trained scorers are ``ModelRun`` rows of kind ``matcher-<scorer>`` with their checkpoint under ``home/runs/``;
evaluations are ``ModelRun`` rows of kind ``matcher-eval`` whose metrics hold every scorer's figures. The rows are
written and read through core.runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import Engine, select

from core.filestore import atomic_torch_save, load_torch_payload
from core.health import training_warnings
from core.loaders import load_once
from core.matching.base import FitConfig, MatchScorer
from core.matching.evaluate import evaluate_scores
from core.matching.features import Creative, load_creatives
from core.matching.registry import SCORERS, build_scorer, check_scorer, choose_variant
from core.matching.triples import TripleSet, build_weak_triples, read_judgements
from core.progress import ProgressFn, no_progress
from core.runs import (
    RunCancelled,
    cancellable,
    create_run,
    db_should_stop,
    ends_failed_on_error,
    get_run,
    list_runs,
    merge_run_config,
    record_run,
    start_run,
    update_run,
    with_db_progress,
)
from core.store import Ad, get_engine, session_scope
from core.store.models import utcnow

FORMAT = "adlens-matcher/1"
DEFAULT_LR = {"lxmert": 1e-4, "clip": 1e-3, "early": 1e-3, "ion": 0.0}
MIN_CACHED_ADS = 20
# absent from older checkpoints: ION centring (zeros = no centring), LXMERT region statistics (older ones used raw regions)
OPTIONAL_KEYS = {"phrase_mean", "creative_mean", "region_mean", "region_std"}


def cached_ad_ids(engine: Engine, detector: str | None = None) -> list[str]:
    """Ads whose regions are already in the region cache for the active detector."""
    from core.regions.extract import detector_key
    from core.regions.registry import get_detector
    from core.store import RegionSet

    key = detector_key(get_detector(detector).detector, 0.05, 0.5, 50)
    with session_scope(engine) as s:
        hashes = set(s.scalars(select(RegionSet.image_hash).where(RegionSet.detector == key)))
        return [a for a, h in s.execute(select(Ad.id, Ad.image_hash).order_by(Ad.id)) if h in hashes]


def training_ads(engine: Engine, scope: str = "cached") -> tuple[list[str] | None, str]:
    """(ad ids or None for all, description). ``cached``: ads with cached regions (all ads when fewer than 20)."""
    if scope == "all":
        return None, "all ads"
    if scope != "cached":
        raise ValueError("scope must be 'cached' or 'all'")
    ids = cached_ad_ids(engine)
    if len(ids) < MIN_CACHED_ADS:
        return None, f"all ads (only {len(ids)} have cached regions)"
    return ids, f"{len(ids)} ads with cached regions"


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["pool=cls", "new_lr_scale=3"]`` -> {"pool": "cls", "new_lr_scale": 3.0}: numbers become numbers, true/false booleans."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"scorer options are KEY=VALUE, got {pair!r}")
        value: Any = raw.strip()
        if value.lower() in ("true", "false"):
            value = value.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(value)
                    break
                except ValueError:
                    continue
        out[key.strip()] = value
    return out


# -- checkpoints --------------------------------------------------------------------------------------
def save_matcher(path: str | Path, scorer: MatchScorer, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"format": FORMAT, "scorer": scorer.name, "config": scorer.config_dict(), "info": scorer.info(),
                               "meta": dict(meta or {}),
                               "state_dict": {k: v.detach().cpu() for k, v in scorer.state_dict().items()}}
    if scorer.name == "ion":
        payload["ion"] = {"config": scorer.model.config.to_dict(), "vocab": scorer.vocab.to_dict()}
        if scorer.bank_text is not None:
            payload["ion"]["bank"] = {"text": torch.from_numpy(scorer.bank_text), "vec": torch.from_numpy(scorer.bank_vec)}
    return atomic_torch_save(payload, path)


def load_matcher(path: str | Path) -> MatchScorer:
    """Rebuild a trained scorer (eval mode, CPU) from its checkpoint; clear errors for bad files."""
    path = Path(path)
    payload = load_torch_payload(path, kind="matcher", fmt=FORMAT)
    name, cfg = payload["scorer"], dict(payload.get("config", {}))
    if name == "lxmert":
        from core.matching.lxmert import LxmertScorer

        cfg = {"pool": "cls", "region_norm": "none", **cfg}  # what checkpoints written before these options used
        if cfg.get("variant") == "pretrained":  # rebuilt from its stored architecture: loading needs no model hub
            cfg["variant"] = "random-base"
        scorer: MatchScorer = LxmertScorer(cfg.pop("region_dim"), init_language=False, **cfg)
    elif name == "clip":
        from core.matching.clip import ClipScorer

        cfg = {"image": "global", **cfg}  # checkpoints written before region inputs used the global image vector
        variant = cfg.pop("variant", "offline")
        # a fine-tuned open_clip model is rebuilt from its architecture (random weights, no download), then loaded
        scorer = ClipScorer("random-base" if variant == "pretrained" else variant, **cfg)
    elif name == "early":
        from core.matching.early_fusion import EarlyFusionScorer

        scorer = EarlyFusionScorer(**{"image": "global", "fusion": "mlp", **cfg})  # older checkpoints: the MLP over the global vector
    elif name == "ion":
        from core.embed.ion import ION, IONConfig
        from core.embed.text import Vocabulary
        from core.matching.ion_scorer import IonScorer

        ion = ION(IONConfig.from_dict(payload["ion"]["config"]))
        scorer = IonScorer(ion, Vocabulary.from_dict(payload["ion"]["vocab"]), source=cfg.get("source", ""),
                           phrase_route=cfg.get("phrase_route", "direct"), neighbours=cfg.get("neighbours", 3))
        bank = payload["ion"].get("bank")
        if bank is not None:
            scorer.bank_text, scorer.bank_vec = bank["text"].numpy(), bank["vec"].numpy()
    else:
        raise ValueError(f"{path}: unknown scorer {name!r}")
    result = scorer.load_state_dict(payload["state_dict"], strict=False)
    missing = [k for k in result.missing_keys if k not in OPTIONAL_KEYS]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: the checkpoint does not fit the {name} scorer (missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]})")
    info = payload.get("info", {})
    scorer.variant, scorer.reason = info.get("variant", scorer.variant), info.get("reason", scorer.reason)
    return scorer.eval()


@load_once(maxsize=8)
def _load_cached(path: str, mtime: float) -> MatchScorer:  # noqa: ARG001 - mtime keys the cache
    return load_matcher(path)


def latest_matchers(engine: Engine | None = None, scorers: Sequence[str] = SCORERS,
                    pinned: dict[str, int] | None = None) -> dict[str, dict]:
    """The newest finished run of each scorer (or the run ``pinned`` names for it):
    {scorer: {"run_id", "path", "variant", "reason", "trained_at"}}."""
    from core.filestore import resolve

    engine = engine or get_engine()
    out: dict[str, dict] = {}
    for name in scorers:
        if pinned and name in pinned:
            run = get_run(int(pinned[name]), engine=engine)
            if run["kind"] != f"matcher-{name}" or run["status"] != "done":
                raise ValueError(f"run {pinned[name]} is not a finished {name} scorer (it is a {run['status']} {run['kind']} run)")
        else:
            newest = list_runs(f"matcher-{name}", "done", engine=engine, limit=1, fresh=True)
            run = newest[0] if newest else None
        if run is not None and run["checkpoint_path"] and resolve(run["checkpoint_path"]).is_file():
            config = run["config"]
            out[name] = {"run_id": run["id"], "path": str(resolve(run["checkpoint_path"])), "variant": config.get("variant_text", ""),
                         "reason": config.get("reason", ""), "trained_at": str(run["finished_at"]),
                         "train_phrases": list(run["data_split"].get("train_phrases", []))}
    return out


def get_matcher(info: dict) -> MatchScorer:
    """The trained scorer of a ``latest_matchers`` entry, loaded once per process, on the configured device."""
    from core.device import resolve_device

    path = info["path"]
    return _load_cached(path, os.path.getmtime(path)).to(resolve_device().name)


# -- training -----------------------------------------------------------------------------------------
def _categories(engine: Engine, ad_ids: Sequence[str]) -> dict[str, int]:
    with session_scope(engine) as s:
        return {a: c for a, c in s.execute(select(Ad.id, Ad.category_id).where(Ad.id.in_(list(ad_ids)))) if c is not None}


def _ion_scorer(engine: Engine, creatives: dict[str, Creative], train_ads: Sequence[str], epochs: int, seed: int,
                progress: ProgressFn, ion_run: int | None = None) -> MatchScorer:
    from core.embed.checkpoint import load_checkpoint
    from core.filestore import resolve
    from core.matching.ion_scorer import IonScorer, latest_ion_checkpoint, train_small_ion

    if ion_run is not None:  # a given ION run (e.g. one per training seed)
        run = get_run(int(ion_run), engine=engine)
        if run["kind"] != "ion" or run["status"] != "done" or not run["checkpoint_path"]:
            raise ValueError(f"run {ion_run} is not a finished ION run with a checkpoint")
        found = (resolve(run["checkpoint_path"]), run["id"])
    else:
        found = latest_ion_checkpoint(engine)
    if found is not None:
        ckpt = load_checkpoint(found[0])
        dims = {c.region_dim for c in creatives.values() if len(c.region_conf)}
        if dims == {ckpt.model.config.region_dim}:
            scorer = IonScorer(ckpt.model, ckpt.vocab, source=f"ION run {found[1]}")
            scorer.reason = f"the newest finished ION run ({found[1]})"
            return scorer
    sub = {a: creatives[a] for a in train_ads if a in creatives}
    from core.device import resolve_device

    model, vocab = train_small_ion(sub, _categories(engine, list(sub)), epochs=epochs, seed=seed, device=resolve_device().name,
                                   progress=progress)
    scorer = IonScorer(model, vocab, source=f"small ION trained here on {len(sub)} training creatives")
    scorer.reason = "no finished ION run with matching region features: a small ION was trained on the training creatives"
    return scorer



def _fit_matcher(name: str, variant: str, options: dict | None, engine: Engine, triples: TripleSet, fit_triples: list, val_triples: list,
                 cfg: FitConfig, extract: bool, progress: ProgressFn, on_epoch=None) -> tuple[MatchScorer, dict[str, Any]]:
    """Prepare the creatives, build and fit the scorer, validate it: (model, metrics)."""
    # every creative of the triple set is prepared (test ones too), so the region cache - and the "cached" scope of a
    # later evaluation - covers the same ads as this training
    from core.device import resolve_device

    device = resolve_device().name
    cfg.device = device
    creatives = load_creatives(sorted({t.ad_id for t in triples.triples}), engine, extract=extract, device=device, progress=progress)
    dims = {c.region_dim for c in creatives.values() if len(c.region_conf)}
    region_dim = dims.pop() if len(dims) == 1 else 1280
    torch.manual_seed(cfg.seed)
    if name == "ion":
        model = _ion_scorer(engine, creatives, [t.ad_id for t in fit_triples], max(1, cfg.epochs), cfg.seed, progress,
                            (options or {}).get("ion_run"))
    else:
        model = build_scorer(name, variant, region_dim=region_dim, options=options)
    model.to(device)
    model.reason = model.reason or choose_variant(name, variant).reason
    before = model.mean_loss(fit_triples[:256], creatives) if name in ("lxmert", "early", "clip") else None
    fit = model.fit(fit_triples, creatives, cfg, progress, on_epoch)
    after = model.mean_loss(fit_triples[:256], creatives) if before is not None else None
    metrics: dict[str, Any] = {"fit": fit, "train_loss_before": before, "train_loss_after": after}
    if val_triples and len({t.label for t in val_triples}) == 2:
        val = [t for t in val_triples if t.ad_id in creatives]
        probs = _pair_scores(model, val, creatives)
        metrics["val"] = {k: v for k, v in evaluate_scores([t.phrase for t in val], probs, [t.label for t in val], n_boot=200).items()
                          if k in ("auc", "auc_low", "auc_high", "n", "map@10", "ndcg@10")}
    metrics["warnings"] = training_warnings(fit.get("epoch_loss", []), loss_before=before, loss_after=after,
                                            val_auc=(metrics.get("val") or {}).get("auc") if name != "ion" else None)
    return model, metrics


def train_matcher(scorer: str, *, engine: Engine | None = None, variant: str = "auto", triples: TripleSet | None = None,
                  scope: str = "cached", epochs: int = 3, batch_size: int = 32, lr: float | None = None, max_steps: int | None = None,
                  seed: int = 0, options: dict | None = None, extract: bool = True, pairs: int = 1, split_seed: int = 0,
                  progress: ProgressFn = no_progress) -> dict:
    """Train one scorer on the training phrases' triples and store it as a ModelRun (kind ``matcher-<scorer>``).

    ``pairs``: training triples per phrase, as a multiple of the evaluation sets' (8 positives, 4 hard and 4 other
    negatives per phrase); the validation and test triples are the same whatever it is. ``seed`` seeds the training
    (initialisation, batch order); ``split_seed`` the phrase split and the sampled pairs (``evaluate_matching``'s
    ``seed``), so that runs of several training seeds are evaluated on the same held-out phrases."""
    from core.filestore import resolve

    name = check_scorer(scorer)
    engine = engine or get_engine()
    started = time.perf_counter()
    scope_text = "given triples"
    if triples is None:
        ad_ids, scope_text = training_ads(engine, scope)
        triples = build_weak_triples(engine, ad_ids=ad_ids, seed=split_seed)
        if pairs > 1:  # more pairs of the same training phrases (the phrase split is a hash: val / test do not move)
            more = build_weak_triples(engine, ad_ids=ad_ids, seed=split_seed, n_pos=8 * pairs, n_neg=4 * pairs, n_hard=4 * pairs)
            triples = TripleSet(more.part("train") + triples.part("val", "test"), triples.phrase_split, triples.phrase_categories,
                                triples.source)
    fit_triples, val_triples = triples.part("train"), triples.part("val")
    if not fit_triples:
        raise ValueError("no training triples: the catalog needs phrases in the train split")
    cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr if lr is not None else DEFAULT_LR[name], seed=seed, max_steps=max_steps)
    run_id = create_run(f"matcher-{name}", f"{name} matcher",
                        {"options": dict(options or {}), "fit": cfg.to_dict(), "scorer": name, "pairs": pairs, "variant": variant,
                         "job": {"mode": "process", "pid": os.getpid(), "host": socket.gethostname()}},
                        data_split={"source": triples.source, "scope": scope_text, **triples.summary(),
                                    "train_phrases": sorted({t.phrase for t in fit_triples})},
                        version=FORMAT, engine=engine)
    if not start_run(run_id, "loading the creatives", engine=engine):
        raise RunCancelled("cancelled before it started")
    with ends_failed_on_error(run_id, engine=engine):  # a failed fit, save or final write ends the run failed (cancelled on Cancel)
        progress = cancellable(with_db_progress(progress, run_id, engine), db_should_stop(run_id, engine))
        live = lambda losses: update_run(run_id, engine=engine, metrics={"fit": {"epoch_loss": losses}})  # noqa: E731 - live curve
        model, metrics = _fit_matcher(name, variant, options, engine, triples, fit_triples, val_triples, cfg, extract, progress, live)
        progress(1, 1, "saving the checkpoint")
        rel = f"runs/matcher-{name}-{run_id}.pt"
        save_matcher(resolve(rel), model, {"run_id": run_id})
        merge_run_config(run_id, {"variant_text": model.variant, "reason": model.reason, "fit": cfg.to_dict()}, engine=engine,
                         status="done", checkpoint_path=rel, metrics=metrics, progress=1.0, message="done", finished_at=utcnow())
    return {"ok": True, "scorer": name, "run_id": run_id, "variant": model.variant, "reason": model.reason, "checkpoint": rel,
            "scope": scope_text, "triples": triples.summary(), "metrics": metrics, "seconds": round(time.perf_counter() - started, 2)}


def _pair_scores(model: MatchScorer, triples, creatives: dict[str, Creative]) -> np.ndarray:
    """Probabilities of aligned (phrase, creative) triples, scoring each phrase against its creatives at once."""
    out = np.zeros(len(triples), np.float32)
    by_phrase: dict[str, list[int]] = {}
    for i, t in enumerate(triples):
        by_phrase.setdefault(t.phrase, []).append(i)
    for phrase, idx in by_phrase.items():
        out[idx] = model.score([phrase], [creatives[triples[i].ad_id] for i in idx])[0]
    return out


# -- applying -----------------------------------------------------------------------------------------
def score_creatives(phrases: Sequence[str], creatives: Sequence[Creative], *, engine: Engine | None = None,
                    scorers: Sequence[str] = SCORERS) -> dict:
    """Probabilities per scorer [P, C] with the trained matchers; untrained scorers are listed in ``missing``."""
    phrases = [p.strip() for p in phrases if p and p.strip()]
    if not phrases:
        raise ValueError("give at least one phrase")
    trained = latest_matchers(engine, [check_scorer(s) for s in scorers])
    out: dict[str, Any] = {"ok": True, "phrases": phrases, "creatives": [c.key for c in creatives], "scores": {}, "variants": {},
                           "seconds": {}, "missing": [s for s in scorers if s not in trained]}
    for name, info in trained.items():
        started = time.perf_counter()
        model = get_matcher(info)
        try:
            out["scores"][name] = model.score(phrases, list(creatives)).round(4).tolist()
        except ValueError as exc:  # e.g. region features of another detector
            out.setdefault("errors", {})[name] = str(exc)
            continue
        out["variants"][name] = {"variant": model.variant, "reason": model.reason, "run_id": info["run_id"]}
        out["seconds"][name] = round(time.perf_counter() - started, 3)
    return out


def match(phrases: Sequence[str], ad_ids: Sequence[str] | None = None, *, engine: Engine | None = None, scorers: Sequence[str] = SCORERS,
          limit: int = 100, extract: bool = True, progress: ProgressFn = no_progress) -> dict:
    """Score catalog ads (given ids, else the first ``limit`` ads with cached regions) for each phrase with every trained scorer."""
    engine = engine or get_engine()
    if not any(p and p.strip() for p in phrases):
        raise ValueError("give at least one phrase")
    if not latest_matchers(engine, [check_scorer(s) for s in scorers]):
        raise ValueError("no trained scorer: run train-matcher --scorer lxmert|clip|early|ion first")
    if not ad_ids:
        ad_ids = cached_ad_ids(engine)[:limit]
        if not ad_ids:
            with session_scope(engine) as s:
                ad_ids = list(s.scalars(select(Ad.id).order_by(Ad.id).limit(limit)))
    creatives = load_creatives(list(ad_ids), engine, extract=extract, progress=progress)
    unknown = [a for a in ad_ids if a not in creatives]
    if unknown:
        raise ValueError(f"unknown ad id(s): {', '.join(unknown[:10])}")
    return score_creatives(phrases, [creatives[a] for a in ad_ids], engine=engine, scorers=scorers)


# -- evaluation ---------------------------------------------------------------------------------------
def evaluate_matching(*, engine: Engine | None = None, judgements: str | Path | None = None, scorers: Sequence[str] = SCORERS,
                      n_boot: int = 1000, seed: int = 0, scope: str = "cached", extract: bool = True,
                      runs: dict[str, int] | None = None, progress: ProgressFn = no_progress) -> dict:
    """AUC with bootstrap 95% interval, MAP@10, NDCG@10 and calibration per trained scorer (its newest run, or the run
    ``runs`` names for it), on held-out phrases of the weak triples (phrases any evaluated scorer trained on are dropped)
    or on an imported judgement set. The result is stored as a ModelRun of kind ``matcher-eval``."""
    engine = engine or get_engine()
    trained = latest_matchers(engine, [check_scorer(s) for s in scorers], pinned=runs)
    if not trained:
        raise ValueError("no trained scorer: run train-matcher --scorer lxmert|clip|early|ion first")
    if judgements is not None:
        tset = read_judgements(judgements, engine)
        triples, set_name = tset.triples, tset.source
    else:
        ad_ids, _ = training_ads(engine, scope)
        tset = build_weak_triples(engine, ad_ids=ad_ids, seed=seed)
        seen = set().union(*(set(info["train_phrases"]) for info in trained.values()))
        triples = [t for t in tset.part("test") if t.phrase not in seen]
        set_name = "weak triples: held-out phrases on test creatives"
    creatives = load_creatives(sorted({t.ad_id for t in triples}), engine, extract=extract, progress=progress)
    triples = [t for t in triples if t.ad_id in creatives]
    if len({t.label for t in triples}) < 2:
        raise ValueError("the evaluation set needs both relevant and irrelevant pairs")
    results: dict[str, Any] = {}
    all_probs: dict[str, np.ndarray] = {}
    for name, info in trained.items():
        model = get_matcher(info)
        started = time.perf_counter()
        probs = all_probs[name] = _pair_scores(model, triples, creatives)
        figures = evaluate_scores([t.phrase for t in triples], probs, [t.label for t in triples], n_boot=n_boot, seed=seed)
        results[name] = figures | {"variant": model.variant, "reason": model.reason, "run_id": info["run_id"],
                                   "seconds": round(time.perf_counter() - started, 2)}
        progress(len(results), len(trained), f"evaluate: {name} AUC {figures['auc']:.3f}")
    from core.matching.ceiling import breakdown

    groups = breakdown(engine, triples, all_probs, tset.phrase_categories)
    for name in results:
        results[name]["groups"] = groups["scorers"][name]
    summary = {"set": set_name, "triples": len(triples), "phrases": len({t.phrase for t in triples}),
               "positives": sum(t.label for t in triples), "ceiling": groups["ceiling"]}
    run_id = record_run("matcher-eval", f"matching evaluation: {set_name}", {"n_boot": n_boot, "seed": seed},
                        metrics={"scorers": results}, data_split=summary, version=FORMAT, engine=engine)
    table = {n: {"auc": r["auc"], "ci95": [r["auc_low"], r["auc_high"]], "map@10": r["map@10"], "ndcg@10": r["ndcg@10"],
                 "ece": round(r["calibration"]["ece"], 4), "variant": r["variant"]} for n, r in results.items()}
    return {"ok": True, "evaluation_id": run_id, **summary, "table": table, "scorers": results,
            "untrained": [s for s in scorers if s not in trained]}


def list_evaluations(engine: Engine | None = None, limit: int = 10) -> list[dict]:
    """Stored evaluations, newest first: {"id", "set", "created_at", "scorers": {name: figures}}."""
    runs = list_runs("matcher-eval", engine=engine or get_engine(), limit=limit)
    return [{"id": r["id"], "set": r["data_split"].get("set", ""), "created_at": str(r["created_at"]), "summary": dict(r["data_split"]),
             "scorers": dict(r["metrics"].get("scorers", {}))} for r in runs]


def uncached_ads(ad_ids: Sequence[str], engine: Engine | None = None) -> list[str]:
    """The ads among ``ad_ids`` whose regions are not cached yet (they would be detected first: slow on CPU)."""
    engine = engine or get_engine()
    cached = set(cached_ad_ids(engine))
    return [a for a in ad_ids if a not in cached]
