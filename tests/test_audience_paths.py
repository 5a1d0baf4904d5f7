"""Audience expansion through other paths: embedding model runs, the Dask trainer, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audience_world import build_world
from sqlalchemy import func, select

from core.audience import EmbeddingAds, ExpansionConfig, NotFoundError, SimilarAdsError, make_retriever, run_expansion
from core.search.index import VectorIndex
from core.store import ExpansionRun, ModelRun, get_engine, session_scope

FAST = {"n_estimators": 40, "n_jobs": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from core.config import get_settings

    home = tmp_path_factory.mktemp("audience-paths")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADLENS_HOME", str(home))
        mp.delenv("ADLENS_DATABASE_URL", raising=False)
        get_settings.cache_clear()
        engine = get_engine()
        info = build_world(engine, n_users=4000, n_categories=3, package_imps=2500, other_imps=3000, seed=5)
        yield engine, info, home
    get_settings.cache_clear()


def _category_index(n_categories: int = 3, ads: int = 8, noise: float = 0.05, seed: int = 0) -> VectorIndex:
    """Ad vectors = category direction + small noise (a good embedding model)."""
    rng = np.random.default_rng(seed)
    ids = [f"c{c}a{j}" for c in range(n_categories) for j in range(ads)]
    vecs = np.stack([np.eye(16)[int(a[1])] + noise * rng.normal(size=16) for a in ids]).astype(np.float32)
    return VectorIndex.build(vecs, ids, factory="Flat")


def test_embedding_retriever_returns_nearest_ads_outside_the_package():
    index = _category_index()
    ret = EmbeddingAds(index, name="ion")
    got = ret(["c2a0", "c2a1"], 6)
    assert sorted(got) == [f"c2a{j}" for j in range(2, 8)]
    # a package ad outside the index is queried by its given vector
    new = EmbeddingAds(index, {"new": np.eye(16)[1]}, name="ion")
    assert {a[:2] for a in new(["new"], 8)} == {"c1"}
    with pytest.raises(SimilarAdsError, match="asked for 30 similar ads"):
        ret(["c2a0"], 30)
    with pytest.raises(SimilarAdsError, match="no embedding"):
        EmbeddingAds(index)(["zzz"], 3)


def test_model_run_retriever_expands_like_the_oracle(world):
    engine, _, home = world
    index = _category_index()
    index.save(home / "indexes" / "ion-test")
    with session_scope(engine) as s:
        run = ModelRun(kind="ion", name="test ion", status="done", index_path="indexes/ion-test.faiss")
        broken = ModelRun(kind="text", name="no index", status="done", index_path=None)
        s.add_all([run, broken])
        s.flush()
        run_id, broken_id = run.id, broken.id
    by_id = make_retriever("model", engine=engine, model_run_id=run_id)
    by_kind = make_retriever("ion", engine=engine)
    assert by_id.model_run_id == by_kind.model_run_id == run_id
    result = run_expansion(1, by_id, ExpansionConfig(similar=5, store=True, **FAST), engine=engine)
    assert result.retrieval_precision == 1.0 and result.model_run_id == run_id
    with session_scope(engine) as s:
        assert s.get(ExpansionRun, result.run_id).model_run_id == run_id
    with pytest.raises(NotFoundError, match="model run 999 does not exist"):
        make_retriever("model", engine=engine, model_run_id=999)
    with pytest.raises(SimilarAdsError, match="has no vector index"):
        make_retriever("model", engine=engine, model_run_id=broken_id)
    with pytest.raises(NotFoundError, match="no finished 'totyemb' model run"):
        make_retriever("totyemb", engine=engine)
    with pytest.raises(NotFoundError, match="no finished 'totyemb' model run"):  # --model is for "model", not for a kind
        make_retriever("totyemb", engine=engine, model_run_id=run_id)


def test_dask_trainer_gives_the_same_kind_of_model(world):
    import xgboost
    from distributed import LocalCluster

    engine, _, _ = world
    config = ExpansionConfig(similar=5, store=False, seed=0, **FAST)
    local = run_expansion(2, make_retriever("oracle", engine=engine), config, engine=engine)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        config.dask_scheduler = cluster.scheduler_address
        distributed = run_expansion(2, make_retriever("oracle", engine=engine), config, engine=engine)
        from core.audience.model import TreeParams, fit

        prep_model = fit(np.eye(6, dtype=np.float32), np.array([0, 1] * 3, dtype=np.float32), TreeParams(n_estimators=7),
                         cluster.scheduler_address)
    assert isinstance(prep_model.booster, xgboost.Booster) and prep_model.n_trees == 7 and prep_model.trainer == "dask"
    assert (local.trainer, distributed.trainer) == ("local", "dask")
    assert distributed.n_trees == local.n_trees == 40
    assert distributed.positives_after == local.positives_after  # same data, only the trainer differs
    for key in ("auc_initial", "auc_expanded"):
        assert abs(getattr(distributed, key) - getattr(local, key)) < 0.08, key
    assert distributed.auc_expanded > 0.6


def test_dask_scheduler_unreachable_is_a_clear_error(world):
    from core.audience.model import TreeParams, fit

    X = np.eye(4, dtype=np.float32)
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        fit(X, np.array([0, 1, 0, 1.0]), TreeParams(n_estimators=2), dask_scheduler="tcp://127.0.0.1:9", connect_timeout=2)


def _cli(*args):
    from typer.testing import CliRunner

    from core.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_expand_json_prints_one_object(world):
    engine, info, _ = world
    with session_scope(engine) as s:
        before = s.scalar(select(func.count()).select_from(ExpansionRun))
    res = _cli("expand", "--package", "3", "--similar", "5", "--ratio", "3", "--retriever", "oracle", "--trees", "40", "--json")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["ok"] and out["package_id"] == 3 and out["retriever"] == "oracle"
    assert 0 < out["auc_initial"] <= 1 and 0 < out["auc_expanded"] <= 1
    assert out["positives_after"] > out["positives_before"] > 0
    assert [c["size"] for c in out["ctr"]] == [0.01, 0.02, 0.05, 0.1, 0.2]
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ExpansionRun)) == before + 1

    table = _cli("expand", "--all-packages", "--similar", "5", "--retriever", "random", "--retriever", "oracle",
                 "--trees", "40", "--no-store", "--json")
    assert table.exit_code == 0, table.output
    data = json.loads(table.stdout)
    assert [r["model"] for r in data["rows"]] == ["initial", "expanded: random", "expanded: oracle"]
    assert all(r["packages"] == len(info["packages"]) for r in data["rows"])

    export = _cli("audience-export", "--run", str(out["run_id"]), "--size", "0.1", "--out", str(world[2] / "a.csv"), "--json")
    assert export.exit_code == 0 and json.loads(export.stdout)["users"] == round(0.1 * info["users"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--package", "77"], "package 77 does not exist"),
    (["--package", "1", "--similar", "500"], "catalog holds only 22 ads outside the package"),
    (["--package", "1", "--retriever", "model", "--model", "4242"], "model run 4242 does not exist"),
    (["--package", "1", "--ratio", "0"], "negative ratio"),
    (["--all-packages", "--package", "1"], "either --package ID or --all-packages"),
])
def test_cli_bad_input_is_one_json_error(world, args, needle):
    engine, _, _ = world
    with session_scope(engine) as s:
        before = s.scalar(select(func.count()).select_from(ExpansionRun))
    res = _cli("expand", *args, "--trees", "5", "--json")
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["ok"] is False and needle in out["error"]
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ExpansionRun)) == before
