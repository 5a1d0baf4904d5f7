"""The audience-expansion procedure (ION section 4.7; ToTYEmb's crowd-package update).

For an ad package and a training period P:
1. positives = the package's clickers in P; negatives = 1:``ratio`` sample of its non-clicking
   impression users in P; a stratified 10 % held out as the test set T;
2. M_initial = XGBoost on the users' one-hot features;
3. the similar-ad step returns N ads (never the package's); their clickers in P join the positives
   (never T, never users already positive) and negatives are topped up to keep the ratio: M_expanded;
4. offline AUC of both models on the same T; simulation in the later period P': each model targets
   its top-scored users among the package's impression users in P', CTR at several audience sizes.

:func:`run_expansion` (one package, one retriever) and :func:`run_all_packages` (the averaged
table, like the paper's Table 3) are what the CLI and the app call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from core.audience import logs
from core.audience.errors import AudienceError, NoImpressionsError, SimilarAdsError
from core.audience.features import FeatureMatrix, load_features
from core.audience.metrics import auc_and_roc, ctr_at_sizes, paired_auc_bootstrap, top_order
from core.audience.model import TargetingModel, TreeParams, fit
from core.audience.retrieval import SimilarAds
from core.audience.sampling import Dataset, expanded_dataset, initial_dataset
from core.progress import ProgressFn, no_progress
from core.store import Ad, Impression, Package, get_engine, session_scope

DEFAULT_SIZES = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class ExpansionConfig:
    """Settings of one expansion experiment (defaults: the paper's)."""

    similar: int = 10
    ratio: float = 3.0
    test_fraction: float = 0.1
    n_estimators: int = 550
    max_depth: int = 6
    learning_rate: float = 0.1
    n_jobs: int | None = None  # XGBoost threads; None: see core.audience.model.threads_for
    seed: int = 0
    split_at: datetime | None = None
    period: tuple[datetime, datetime] | None = None
    later_period: tuple[datetime, datetime] | None = None
    audience_sizes: tuple[float, ...] = DEFAULT_SIZES
    headline_size: float = 0.05  # the audience size reported as "the" CTR in the averaged table
    dask_scheduler: str | None = None  # None: settings.dask_scheduler (None there too: train locally)
    store: bool = True

    def validate(self) -> None:
        problems = []
        if self.similar < 1:
            problems.append(f"the number of similar ads must be at least 1 (got {self.similar})")
        if not 0 < self.ratio <= 100:
            problems.append(f"the negative ratio must be in (0, 100] (got {self.ratio})")
        if not 0 < self.test_fraction < 0.5:
            problems.append(f"the test fraction must be in (0, 0.5) (got {self.test_fraction})")
        if self.n_estimators < 1 or self.max_depth < 1 or not 0 < self.learning_rate <= 1:
            problems.append("trees, depth must be >= 1 and the learning rate in (0, 1]")
        if not self.audience_sizes or any(not 0 < s <= 1 for s in self.audience_sizes):
            problems.append(f"audience sizes must be fractions in (0, 1] (got {list(self.audience_sizes)})")
        if not 0 < self.headline_size <= 1:
            problems.append(f"the headline audience size must be in (0, 1] (got {self.headline_size})")
        if problems:
            raise AudienceError("; ".join(problems))

    @property
    def sizes(self) -> list[float]:
        return sorted({*map(float, self.audience_sizes), float(self.headline_size)})

    def tree_params(self) -> TreeParams:
        return TreeParams(self.n_estimators, self.max_depth, self.learning_rate, self.n_jobs, self.seed)

    def scheduler(self) -> str | None:
        from core.config import get_settings

        return self.dask_scheduler or get_settings().dask_scheduler

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("split_at",):
            out[key] = out[key].isoformat() if out[key] else None
        for key in ("period", "later_period"):
            out[key] = [t.isoformat() for t in out[key]] if out[key] else None
        out["audience_sizes"] = list(self.audience_sizes)
        return out


@dataclass
class Prepared:
    """A package's data and its initial model (shared by every retriever in a comparison)."""

    package_id: int
    package_name: str
    ad_ids: list[str]
    period: logs.Period
    later: logs.Period
    clickers: set[str]
    impressions: set[str]
    dataset: Dataset
    model: TargetingModel
    auc: float
    roc: dict[str, list[float]]
    later_users: list[str]
    later_clicked: np.ndarray
    ctr: list[dict]
    package_ctr: float


@dataclass
class ExpansionResult:
    """Everything one run measured (``to_dict`` is what the CLI prints and the database stores)."""

    package_id: int
    package_name: str
    retriever: str
    model_run_id: int | None
    config: dict[str, Any]
    periods: dict[str, list[str]]
    package_ads: list[str]
    similar_ads: list[dict[str, Any]]
    retrieval_precision: float | None
    positives_before: int
    positives_after: int
    negatives_before: int
    negatives_after: int
    added_positives: int
    test_positives: int
    test_negatives: int
    auc_initial: float
    auc_expanded: float
    roc: dict[str, dict[str, list[float]]]
    ctr: list[dict[str, float]]
    base_ctr: float
    later_users: int
    later_clickers: int
    package_ctr: float
    importance: dict[str, list[dict]]
    trainer: str
    n_trees: int
    seconds: dict[str, float]
    audience_users: list[str] = field(default_factory=list, repr=False)
    audience_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    expanded_positive_ids: list[str] = field(default_factory=list, repr=False)
    run_id: int | None = None
    audience_path: str | None = None
    auc_intervals: dict[str, list[float] | None] = field(default_factory=dict)  # 95% paired bootstrap over T: initial, expanded, delta

    def headline(self, size: float) -> dict[str, float]:
        row = min(self.ctr, key=lambda r: abs(r["size"] - size))
        return {"ctr_initial": row["ctr_initial"], "ctr_expanded": row["ctr_expanded"], "size": row["size"]}

    def metrics(self) -> dict[str, Any]:
        skip = {"audience_users", "audience_scores", "expanded_positive_ids", "config", "run_id", "audience_path"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "audience_path": self.audience_path, "config": self.config, **self.metrics()}


# -- the procedure -----------------------------------------------------------------------------
def _scores_on(model: TargetingModel, features: FeatureMatrix, users: Sequence[str]) -> np.ndarray:
    return model.score(features.take(users))


def prepare_package(package_id: int, config: ExpansionConfig, *, engine: Engine, features: FeatureMatrix,
                    progress: ProgressFn = no_progress) -> Prepared:
    """Periods, dataset, T, M_initial, its AUC and its CTR in P' for one package."""
    with session_scope(engine) as s:
        name, ad_ids, _ = logs.package_info(s, package_id)
        period, later = logs.split_periods(s, config.split_at, config.period, config.later_period)
        clickers = logs.clickers(s, ad_ids, period)
        impressions = logs.impression_users(s, ad_ids, period)
        later_users = sorted(logs.impression_users(s, ad_ids, later))
        later_clickers = logs.clickers(s, ad_ids, later)
        n_imp, n_clk = logs.package_ctr(s, ad_ids, period)
    if not impressions:
        raise NoImpressionsError(f"package {package_id} ({name}) has no impressions in the training period "
                                 f"{period.start:%Y-%m-%d} .. {period.end:%Y-%m-%d}")
    if not later_users:
        raise NoImpressionsError(f"package {package_id} ({name}) has no impressions in the later period "
                                 f"{later.start:%Y-%m-%d} .. {later.end:%Y-%m-%d}: nothing to simulate targeting on")
    rng = np.random.default_rng([config.seed, package_id])
    dataset = initial_dataset(clickers, impressions, config.ratio, config.test_fraction, rng)
    features.require(dataset.train()[0] + dataset.test()[0], f"users of package {package_id}'s training data")
    features.require(later_users, f"impression users of package {package_id} in P'")
    progress(0, 2, f"initial model: {package_id}")
    users, y = dataset.train()
    model = fit(features.take(users), y, config.tree_params(), config.scheduler())
    t_users, t_y = dataset.test()
    auc, roc = auc_and_roc(t_y, _scores_on(model, features, t_users))
    clicked = np.fromiter((u in later_clickers for u in later_users), dtype=bool, count=len(later_users))
    ctr = ctr_at_sizes(_scores_on(model, features, later_users), clicked, config.sizes, np.random.default_rng([config.seed, 2]))
    progress(1, 2, f"initial model: {package_id}")
    return Prepared(package_id, name, ad_ids, period, later, clickers, impressions, dataset, model, auc, roc,
                    later_users, clicked, ctr, n_clk / n_imp if n_imp else 0.0)


def expand_prepared(prep: Prepared, retriever: SimilarAds, config: ExpansionConfig, *, engine: Engine,
                    features: FeatureMatrix, progress: ProgressFn = no_progress) -> ExpansionResult:
    """The similar-ad step, M_expanded, both models' metrics side by side, the scored audience."""
    started = time.perf_counter()
    similar = list(retriever(list(prep.ad_ids), config.similar))
    leaked = set(similar) & set(prep.ad_ids)
    if leaked:
        raise SimilarAdsError(f"retriever {retriever.name} returned the package's own ads {sorted(leaked)}")
    retrieval_s = time.perf_counter() - started
    with session_scope(engine) as s:
        similar_clickers = logs.clickers(s, similar, prep.period) if similar else set()
        per_ad = logs.clickers_per_ad(s, similar, prep.period)
        cats = logs.ad_categories(s, similar + prep.ad_ids)
    own_cats = {cats.get(a) for a in prep.ad_ids} - {None}
    labelled = [a for a in similar if cats.get(a) is not None]
    precision = (sum(cats[a] in own_cats for a in labelled) / len(labelled)) if labelled and own_cats else None
    rng = np.random.default_rng([config.seed, prep.package_id, 1])
    expanded, added = expanded_dataset(prep.dataset, similar_clickers, prep.clickers, prep.impressions, config.ratio, rng)
    features.require(added + expanded.train_neg, "clickers of the similar ads")
    progress(1, 2, f"expanded model: {prep.package_id} ({retriever.name})")
    users, y = expanded.train()
    model = fit(features.take(users), y, config.tree_params(), config.scheduler())
    t_users, t_y = expanded.test()  # the same T as the initial model's
    t_scores = _scores_on(model, features, t_users)
    auc, roc = auc_and_roc(t_y, t_scores)
    intervals = paired_auc_bootstrap(t_y, _scores_on(prep.model, features, t_users), t_scores, seed=config.seed)
    later = ctr_at_sizes(_scores_on(model, features, prep.later_users), prep.later_clicked, config.sizes,
                         np.random.default_rng([config.seed, 2]))
    ctr = [{"size": a["size"], "targeted": a["targeted"], "ctr_initial": a["ctr"], "ctr_expanded": b["ctr"],
            "clicked_initial": a["clicked"], "clicked_expanded": b["clicked"]} for a, b in zip(prep.ctr, later, strict=True)]
    audience_scores = model.score(features.X)
    order = top_order(audience_scores, np.random.default_rng([config.seed, 3]))
    progress(2, 2, f"expanded model: {prep.package_id} ({retriever.name})")
    return ExpansionResult(
        package_id=prep.package_id, package_name=prep.package_name, retriever=retriever.name,
        model_run_id=getattr(retriever, "model_run_id", None), config=config.to_dict(),
        periods={"P": prep.period.to_list(), "P'": prep.later.to_list()}, package_ads=list(prep.ad_ids),
        similar_ads=[{"ad_id": a, "clickers": per_ad.get(a, 0), "category_id": cats.get(a),
                      "same_category": (cats.get(a) in own_cats) if cats.get(a) is not None and own_cats else None}
                     for a in similar],
        retrieval_precision=precision,
        positives_before=len(prep.dataset.train_pos), positives_after=len(expanded.train_pos),
        negatives_before=len(prep.dataset.train_neg), negatives_after=len(expanded.train_neg),
        added_positives=len(added), test_positives=len(expanded.test_pos), test_negatives=len(expanded.test_neg),
        auc_initial=prep.auc, auc_expanded=auc, roc={"initial": prep.roc, "expanded": roc}, auc_intervals=intervals,
        ctr=ctr, base_ctr=float(prep.later_clicked.mean()), later_users=len(prep.later_users),
        later_clickers=int(prep.later_clicked.sum()), package_ctr=prep.package_ctr,
        importance={"initial": prep.model.importance(features.columns), "expanded": model.importance(features.columns)},
        trainer=model.trainer, n_trees=model.n_trees,
        seconds={"initial_fit": round(prep.model.seconds, 3), "expanded_fit": round(model.seconds, 3),
                 "retrieval": round(retrieval_s, 3), "total": round(time.perf_counter() - started + prep.model.seconds, 3)},
        audience_users=[features.user_ids[i] for i in order], audience_scores=audience_scores[order],
        expanded_positive_ids=list(expanded.train_pos),
    )


def _check_catalog(engine: Engine, package_size: int, n: int) -> None:
    with session_scope(engine) as s:
        total = s.scalar(select(func.count()).select_from(Ad)) or 0
    if n > total - package_size:
        raise SimilarAdsError(f"asked for {n} similar ads but the catalog holds only {total - package_size} ads outside the package")


def run_expansion(package_id: int, retriever: SimilarAds, config: ExpansionConfig | None = None, *,
                  engine: Engine | None = None, progress: ProgressFn | None = None,
                  features: FeatureMatrix | None = None) -> ExpansionResult:
    """One package, one retriever: train M_initial and M_expanded, measure both, store the run
    (ExpansionRun row + audience CSV, in one transaction) when ``config.store``."""
    config = config or ExpansionConfig()
    config.validate()
    engine = engine or get_engine()
    progress = progress or no_progress
    with session_scope(engine) as s:
        _, ad_ids, _ = logs.package_info(s, package_id)
    _check_catalog(engine, len(ad_ids), config.similar)
    if features is None:
        progress(0, 1, "features: loading users")
        with session_scope(engine) as s:
            features = load_features(s)
    prep = prepare_package(package_id, config, engine=engine, features=features, progress=progress)
    result = expand_prepared(prep, retriever, config, engine=engine, features=features, progress=progress)
    if config.store:
        from core.audience.store import save_run

        save_run(result, engine=engine)
    return result


# -- many packages: the averaged table ---------------------------------------------------------
@dataclass
class ExpansionTable:
    """Initial vs expanded, averaged over packages, one row per retriever (like ION's Table 3)."""

    rows: list[dict[str, Any]]
    per_package: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    headline_size: float
    sizes: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [f"{'model':<24}{'packages':>9}{'AUC':>8}{f'CTR@{self.headline_size:.0%}':>10}{'positives':>11}"]
        for r in self.rows:
            lines.append(f"{r['model']:<24}{r['packages']:>9}{r['auc']:>8.4f}{100 * r['ctr']:>9.2f}%{r['positives']:>11.0f}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} package(s): " + "; ".join(f"{s['package_id']}: {s['reason']}" for s in self.skipped))
        return "\n".join(lines)


def low_ctr_packages(engine: Engine, max_ctr: float | None = None) -> list[int]:
    """Package ids (all, or those whose CTR over the whole log is at most ``max_ctr``)."""
    with session_scope(engine) as s:
        ids = list(s.scalars(select(Package.id).order_by(Package.id)))
        if max_ctr is None:
            return ids
        out = []
        for pid in ids:
            _, ad_ids, _ = logs.package_info(s, pid)
            n, c = logs.package_ctr(s, ad_ids)
            if n and c / n <= max_ctr:
                out.append(pid)
        return out


def run_all_packages(retrievers: Mapping[str, SimilarAds] | Sequence[SimilarAds], config: ExpansionConfig | None = None, *,
                     package_ids: Sequence[int] | None = None, max_ctr: float | None = None,
                     engine: Engine | None = None, progress: ProgressFn | None = None) -> ExpansionTable:
    """Every package (or ``package_ids``) with every retriever; packages that cannot be run are
    skipped with their reason. M_initial is trained once per package and shared by the retrievers."""
    config = config or ExpansionConfig()
    config.validate()
    engine = engine or get_engine()
    progress = progress or no_progress
    named = dict(retrievers) if isinstance(retrievers, Mapping) else {r.name: r for r in retrievers}
    if not named:
        raise AudienceError("give at least one retriever")
    ids = list(package_ids) if package_ids is not None else low_ctr_packages(engine, max_ctr)
    if not ids:
        raise AudienceError("no packages to run (create packages, or build the demo world: python -m core demo)")
    with session_scope(engine) as s:
        if not s.scalar(select(func.count()).select_from(Impression)):
            raise NoImpressionsError("the impression log is empty: import clicks or build the demo world")
        features = load_features(s)
    per_package: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    results: dict[str, list[ExpansionResult]] = {name: [] for name in named}
    total = len(ids) * (1 + len(named))
    done = 0
    for pid in ids:
        progress(done, total, f"packages: {pid}")
        try:
            with session_scope(engine) as s:
                _, ad_ids, _ = logs.package_info(s, pid)
            _check_catalog(engine, len(ad_ids), config.similar)
            prep = prepare_package(pid, config, engine=engine, features=features)
        except (AudienceError, KeyError) as exc:
            skipped.append({"package_id": pid, "reason": str(exc)})
            done += 1 + len(named)
            continue
        done += 1
        for name, retriever in named.items():
            progress(done, total, f"packages: {pid} {name}")
            try:
                res = expand_prepared(prep, retriever, config, engine=engine, features=features)
            except AudienceError as exc:
                skipped.append({"package_id": pid, "retriever": name, "reason": str(exc)})
                done += 1
                continue
            if config.store:
                from core.audience.store import save_run

                save_run(res, engine=engine)
            results[name].append(res)
            h = res.headline(config.headline_size)
            per_package.append({"package_id": pid, "package": res.package_name, "retriever": name, "run_id": res.run_id,
                                "auc_initial": res.auc_initial, "auc_expanded": res.auc_expanded,
                                "ctr_initial": h["ctr_initial"], "ctr_expanded": h["ctr_expanded"], "base_ctr": res.base_ctr,
                                "positives_before": res.positives_before, "positives_after": res.positives_after,
                                "retrieval_precision": res.retrieval_precision})
            done += 1
    progress(total, total, "packages: done")
    table = ExpansionTable(_average_rows(results, config), per_package, skipped, config.headline_size, config.sizes)
    if config.store and per_package:
        from core.runs import EXPANSION_TABLE_KIND, record_run

        record_run(EXPANSION_TABLE_KIND, f"expansion over {len(ids)} packages: {', '.join(named)}",
                   {"retrievers": list(named), "packages": ids, "similar": config.similar, "ratio": config.ratio,
                    "trees": config.n_estimators, "test_fraction": config.test_fraction, "seed": config.seed},
                   metrics=table.to_dict(), engine=engine)
    return table


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _average_rows(results: Mapping[str, list[ExpansionResult]], config: ExpansionConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # the initial model is the same for every retriever: take each package once
    first: dict[int, ExpansionResult] = {}
    for runs in results.values():
        for r in runs:
            first.setdefault(r.package_id, r)
    if first:
        init = list(first.values())
        rows.append({"model": "initial", "packages": len(init), "auc": _mean([r.auc_initial for r in init]),
                     "ctr": _mean([r.headline(config.headline_size)["ctr_initial"] for r in init]),
                     "ctr_by_size": {str(s): _mean([_at(r, s, "ctr_initial") for r in init]) for s in config.sizes},
                     "base_ctr": _mean([r.base_ctr for r in init]),
                     "positives": _mean([r.positives_before for r in init]), "retrieval_precision": None})
    for name, runs in results.items():
        if not runs:
            continue
        rows.append({"model": f"expanded: {name}", "packages": len(runs), "auc": _mean([r.auc_expanded for r in runs]),
                     "ctr": _mean([r.headline(config.headline_size)["ctr_expanded"] for r in runs]),
                     "ctr_by_size": {str(s): _mean([_at(r, s, "ctr_expanded") for r in runs]) for s in config.sizes},
                     "base_ctr": _mean([r.base_ctr for r in runs]),
                     "positives": _mean([r.positives_after for r in runs]),
                     "retrieval_precision": _mean([r.retrieval_precision for r in runs])})
    return rows


def _at(result: ExpansionResult, size: float, key: str) -> float:
    return min(result.ctr, key=lambda r: abs(r["size"] - size))[key]
