"""Model runs and audience-expansion runs stored and read back through the public functions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from core.store import ExpansionRun, ModelRun, session_scope


def test_model_run_rows_round_trip(db_engine):
    from core.runs import (
        RunNotFound,
        create_run,
        delete_run,
        get_run,
        latest_done,
        list_runs,
        request_cancel,
        run_status,
        start_run,
        update_run,
    )

    config = {"epochs": 3, "lr": 1e-3, "ablate": [], "note": "跑鞋 / ünïcode", "nested": {"a": [1, 2.5, None, True]}}
    first = create_run("ion", "first", config, engine=db_engine)
    second = create_run("ion", "second", {"neck": "none"}, engine=db_engine)
    assert second > first
    run = get_run(first, engine=db_engine)
    assert (run["kind"], run["name"], run["status"], run["config"]) == ("ion", "first", "created", config)
    assert isinstance(run["created_at"], datetime) and run["finished_at"] is None and run["progress"] == 0.0

    assert start_run(first, "training", engine=db_engine) is True
    update_run(first, engine=db_engine, progress=0.5, metrics={"loss": [0.9, 0.4]}, message="epoch 2/3")
    assert run_status(first, engine=db_engine) == "running"
    assert get_run(first, engine=db_engine)["metrics"] == {"loss": [0.9, 0.4]}
    update_run(first, engine=db_engine, finished=True, status="done", progress=1.0, index_path="runs/1/index.faiss",
               checkpoint_path="runs/1/model.pt", data_split={"train": 10, "test": 2})
    done = get_run(first, engine=db_engine)
    assert done["status"] == "done" and isinstance(done["finished_at"], datetime) and done["data_split"]["train"] == 10
    update_run(second, engine=db_engine, finished=True, status="done", index_path="runs/2/index.faiss")

    assert [r["id"] for r in list_runs("ion", engine=db_engine)] == [second, first]  # newest first
    assert latest_done("ion", engine=db_engine)["id"] == first  # the full model before the neck=none variant
    third = create_run("text", engine=db_engine)
    assert request_cancel(third, engine=db_engine) is True and start_run(third, engine=db_engine) is False
    assert run_status(third, engine=db_engine) == "cancelled"

    with session_scope(db_engine) as s:  # an expansion run that used the model keeps its row, unlinked
        s.add(ExpansionRun(model_run_id=first, retrieval="model", config={}, metrics={}))
    delete_run(first, engine=db_engine)
    with pytest.raises(RunNotFound):
        get_run(first, engine=db_engine)
    with session_scope(db_engine) as s:
        assert s.scalars(select(ExpansionRun.model_run_id)).all() == [None]
        assert s.scalar(select(func.count()).select_from(ModelRun)) == 2
    fourth = create_run("ion", engine=db_engine)
    assert fourth > third  # ids keep counting (PostgreSQL: the sequence), never reused


def test_expansion_run_is_stored_and_read_back(db_engine):
    from audience_world import build_world

    from core.audience import ExpansionConfig, make_retriever, run_expansion
    from core.audience.packages import list_packages
    from core.audience.store import audience, get_run, list_runs

    info = build_world(db_engine, n_users=1500, n_categories=2, ads_per_category=5, package_imps=600, other_imps=900,
                       ctr=0.05, package_ctr=0.03)
    packages = {p["id"]: p for p in list_packages(db_engine)}
    assert set(packages) == set(info["packages"]) and all(p["impressions"] > 0 and p["clicks"] > 0 for p in packages.values())
    package_id = min(info["packages"])
    config = ExpansionConfig(similar=3, n_estimators=20, n_jobs=1, audience_sizes=(0.1, 0.5))
    result = run_expansion(package_id, make_retriever("oracle", engine=db_engine), config, engine=db_engine)
    assert result.run_id is not None and result.added_positives > 0

    stored = get_run(result.run_id, engine=db_engine)
    assert stored["package_id"] == package_id and stored["retriever"] == result.retriever[:40]
    assert stored["metrics"]["auc_expanded"] == pytest.approx(result.auc_expanded)
    assert stored["metrics"]["positives_after"] == result.positives_after and stored["config"]["similar"] == 3
    assert [r["run_id"] for r in list_runs(package_id, engine=db_engine)] == [result.run_id]
    top = audience(result.run_id, 0.1, engine=db_engine)
    assert list(top.columns) == ["user_id", "score"] and top["score"].is_monotonic_decreasing and len(top) > 0
    with session_scope(db_engine) as s:
        assert s.scalar(select(func.count()).select_from(ExpansionRun)) == 1


def test_names_longer_than_their_column_are_refused_on_every_backend(db_engine):
    """PostgreSQL enforces VARCHAR(200), SQLite does not: the engine checks first, so both say the same."""
    from core.audience.errors import AudienceError
    from core.audience.packages import create_package
    from core.runs import create_run, list_runs
    from core.store import Ad, Package

    with pytest.raises(ValueError, match="at most 200 characters .this one has 201"):
        create_run("ion", "x" * 201, engine=db_engine)
    assert list_runs("ion", engine=db_engine) == []
    assert create_run("ion", "x" * 200, engine=db_engine) > 0
    with session_scope(db_engine) as s:
        s.add(Ad(id="a1", text="t", image_hash="0" * 64, image_path="p.png", content_hash="1" * 64, width=1, height=1))
    with pytest.raises(AudienceError, match="at most 200 characters"):
        create_package("p" * 201, ["a1"], engine=db_engine)
    assert create_package("p" * 200, ["a1"], engine=db_engine) > 0
    with session_scope(db_engine) as s:
        assert s.scalars(select(func.length(Package.name))).all() == [200]
