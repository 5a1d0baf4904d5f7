"""Shared databases: the demo world's fingerprint on every run, --force to replace or delete a demo world that
other data lives next to, only demo rows touched, and runs of a world that is gone marked stale (not defaults)."""

from __future__ import annotations

import json

import pytest
from ingest_data import write_csv, write_images
from sqlalchemy import select
from typer.testing import CliRunner

from core.demo import DemoKnobs, build_world
from core.stale import FINGERPRINT_KEY, REASON_KEY, ReplaceRefused, current_world, describe, is_stale

KNOBS = DemoKnobs(n_categories=6, n_packages=2, n_unseen_packages=1, impressions_per_ad=10)


def world(engine, seed: int = 0, **kwargs):
    return build_world(40, 60, seed, engine=engine, knobs=KNOBS, **kwargs)


def run_with_file(name: str, engine, kind: str = "text") -> int:
    """A finished run with an index file under home/runs/<id>/ (what a trained model leaves)."""
    from core.filestore import resolve
    from core.runs import record_run, run_dir, update_run

    run_id = record_run(kind, name, {"epochs": 1}, metrics={"seen": [0.5]}, engine=engine)
    folder = resolve(run_dir(run_id))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.faiss").write_bytes(b"index of " + name.encode())
    update_run(run_id, engine=engine, index_path=f"{run_dir(run_id)}/index.faiss")
    return run_id


def import_ads(tmp_path, engine, n: int = 3) -> list[str]:
    """``n`` ads of source "manifest" through the real importer."""
    from core.ingest.manifest import import_manifest

    names = write_images(tmp_path / "imgs", n, prefix="shop")
    ids = [f"shop-{i}" for i in range(n)]
    manifest = write_csv(tmp_path / "ads.csv", ["ad_id", "text", "image", "category"],
                         [[ad, f"handmade shoe {i}", name, "shoes"] for i, (ad, name) in enumerate(zip(ids, names, strict=True))])
    assert import_manifest(manifest, tmp_path / "imgs", engine=engine).imported == n
    return ids


def imported_rows(engine) -> list[tuple]:
    from core.store import Ad, Category, session_scope

    with session_scope(engine) as s:
        return sorted((a.id, a.text, a.image_hash, a.split, a.category.name if a.category else None, a.source)
                      for a in s.scalars(select(Ad).where(Ad.source != "demo"))) + \
            sorted((c.id, c.name, c.source) for c in s.scalars(select(Category).where(Category.source != "demo")))


def test_describe_lists_what_is_held():
    assert describe({"model runs": 14, "on_world": 12, "imported ads": 320, "imported users": 0, "audience runs": 0}) == \
        "14 model runs (12 built on this demo world) and 320 imported ads"
    assert describe({"model runs": 1, "on_world": 0, "imported ads": 1, "imported packages": 2, "audience runs": 1}) == \
        "1 model run, 1 imported ad, 2 imported packages and 1 audience run"
    assert describe({"model runs": 0, "on_world": 0, "imported ads": 0}) == ""


@pytest.mark.both_backends
def test_every_run_records_the_world_it_was_built_on(engine):
    from core.demo.models import world_fingerprint
    from core.runs import create_run, get_run, record_run
    from core.store import ImportRun, session_scope

    before = record_run("text", "no world yet", {}, metrics={}, engine=engine)
    assert get_run(before, engine=engine)["config"] == {}  # no demo world: nothing to record, never stale
    summary = world(engine)
    computed = world_fingerprint(engine)
    assert summary[FINGERPRINT_KEY] == computed and len(computed) == 64  # stored once == recomputed from the rows
    assert current_world(engine) == computed
    run = create_run("ion", "ion", {"epochs": 2}, engine=engine)
    assert get_run(run, engine=engine)["config"] == {"epochs": 2, FINGERPRINT_KEY: computed}

    with session_scope(engine) as s:  # a world stored before fingerprints were kept: computed once, then stored
        row = s.scalars(select(ImportRun).where(ImportRun.kind == "demo")).one()
        stored = json.loads(row.source)
        del stored["summary"][FINGERPRINT_KEY]
        row.source = json.dumps(stored)
    assert current_world(engine) == computed
    with session_scope(engine) as s:
        assert json.loads(s.scalars(select(ImportRun.source).where(ImportRun.kind == "demo")).one())["summary"][FINGERPRINT_KEY] == computed
    assert world(engine)["unchanged"] is True


@pytest.mark.both_backends
def test_replacing_the_world_needs_force_and_marks_its_runs_stale(engine):
    from core.demo import models as dm
    from core.filestore import resolve
    from core.runs import get_run, latest_done, list_runs
    from core.store import ImportRun, ModelRun, session_scope

    world(engine)
    legacy = run_with_file("legacy", engine)  # a run from before fingerprints: current, whatever happens
    with session_scope(engine) as s:
        s.get(ModelRun, legacy).config = {"epochs": 1}
    old = run_with_file("on seed 0", engine)
    assert world(engine)["unchanged"] is True  # the same world again is not a rebuild: no --force needed
    with pytest.raises(ReplaceRefused, match=r"holds 2 model runs \(1 built on this demo world\).*--force to replace"):
        world(engine, seed=1)
    with session_scope(engine) as s:  # refused: nothing changed
        assert json.loads(s.scalars(select(ImportRun.source).where(ImportRun.kind == "demo")).one())["params"]["seed"] == 0
    assert not is_stale(get_run(old, engine=engine))

    summary = world(engine, seed=1, force=True)
    assert summary["unchanged"] is False and summary["stale_runs"] == 1
    stale = get_run(old, engine=engine)
    assert is_stale(stale) and "previous demo world" in stale["config"][REASON_KEY]
    assert stale["status"] == "done" and stale["metrics"] == {"seen": [0.5]}
    assert resolve(stale["index_path"]).read_bytes() == b"index of on seed 0"  # its files are kept
    assert not is_stale(get_run(legacy, engine=engine))
    assert [r["id"] for r in list_runs("text", "done", engine=engine)] == [old, legacy]  # listed, with the flag
    assert [r["id"] for r in list_runs("text", "done", engine=engine, fresh=True)] == [legacy]
    assert list_runs("text", "done", engine=engine, limit=1, fresh=True)[0]["id"] == legacy  # limit after the filter
    assert latest_done("text", engine=engine)["id"] == legacy

    text_stage = next(s for s in dm.STAGES if s.name == "text")
    expansion = next(s for s in dm.STAGES if s.name == "expansion")
    ctx = dm.Context(engine)
    assert text_stage.done(ctx)  # the legacy run still counts
    with session_scope(engine) as s:
        s.delete(s.get(ModelRun, legacy))
    assert not text_stage.done(ctx)  # a stale run is not a built model: `core demo` builds it again
    new = run_with_file("on seed 1", engine)
    assert get_run(new, engine=engine)["config"][FINGERPRINT_KEY] == summary[FINGERPRINT_KEY] and text_stage.done(ctx)
    assert latest_done("text", engine=engine)["id"] == new

    from core.runs import record_run

    record_run("expansion-table", "table", {}, metrics={}, engine=engine)
    assert expansion.done(ctx)
    with pytest.raises(ReplaceRefused, match="2 model runs"):  # the stale run is not counted again
        world(engine, seed=2)
    world(engine, seed=2, force=True)
    assert not expansion.done(ctx) and not text_stage.done(ctx)


def test_a_stale_detector_is_not_the_built_detector(engine):
    from core.demo import models as dm
    from core.regions.train import LATEST, detectors_dir
    from core.runs import DETECTOR_KIND, record_run

    world(engine)
    detectors_dir().mkdir(parents=True)
    (detectors_dir() / LATEST).write_bytes(b"weights")
    record_run(DETECTOR_KIND, "detector", {}, metrics={}, engine=engine)
    stage = next(s for s in dm.STAGES if s.name == "detector")
    assert stage.done(dm.Context(engine))
    world(engine, seed=1, force=True)
    assert not stage.done(dm.Context(engine)) and (detectors_dir() / LATEST).read_bytes() == b"weights"


@pytest.mark.both_backends
def test_replacing_or_deleting_touches_only_demo_rows(engine, tmp_path):
    from core.demo.store import delete_world
    from core.filestore import resolve
    from core.runs import get_run
    from core.store import Ad, session_scope

    import_ads(tmp_path, engine)
    on_imported = run_with_file("on the imported ads", engine)  # built before any demo world
    world(engine)
    on_demo = run_with_file("on seed 0", engine)
    rows = imported_rows(engine)
    run_before = get_run(on_imported, engine=engine)
    with pytest.raises(ReplaceRefused, match=r"2 model runs \(1 built on this demo world\) and 3 imported ads"):
        world(engine, seed=1)

    world(engine, seed=1, force=True)
    assert imported_rows(engine) == rows and get_run(on_imported, engine=engine) == run_before
    assert resolve(run_before["index_path"]).is_file() and is_stale(get_run(on_demo, engine=engine))

    after_rebuild = run_with_file("on seed 1", engine)
    with pytest.raises(ReplaceRefused, match="--force to delete the demo world"):
        delete_world(engine)
    with session_scope(engine) as s:
        assert s.scalar(select(Ad.id).where(Ad.source == "demo").limit(1)) is not None
    result = delete_world(engine, force=True)
    assert result["deleted_ads"] == 40 and result["stale_runs"] == 1
    with session_scope(engine) as s:
        assert s.scalar(select(Ad.id).where(Ad.source == "demo").limit(1)) is None
    assert imported_rows(engine) == rows and get_run(on_imported, engine=engine) == run_before
    assert "deleted" in get_run(after_rebuild, engine=engine)["config"][REASON_KEY]
    assert current_world(engine) is None


def test_cli_demo_force_and_demo_delete(home, tmp_path):
    from core.cli import app
    from core.runs import get_run, list_runs
    from core.store import get_engine

    args = ["demo", "--ads", "40", "--users", "100", "--models", "none", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.stdout
    engine = get_engine()
    import_ads(tmp_path, engine, n=2)
    run_id = run_with_file("on seed 0", engine)
    again = CliRunner().invoke(app, args)  # the README's command, re-run: no --force needed
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] is True

    refused = CliRunner().invoke(app, [*args, "--seed", "1"])
    assert refused.exit_code != 0
    error = json.loads(refused.stdout)["error"]
    assert "1 model run (1 built on this demo world) and 2 imported ads" in error and "re-run with --force" in error
    assert not is_stale(get_run(run_id))
    forced = CliRunner().invoke(app, [*args, "--seed", "1", "--force"])
    assert forced.exit_code == 0 and json.loads(forced.stdout)["stale_runs"] == 1 and is_stale(get_run(run_id))

    listed = CliRunner().invoke(app, ["runs"])
    assert "on seed 0" in listed.stdout and "(stale: built on a previous demo world)" in listed.stdout
    assert CliRunner().invoke(app, ["demo-delete", "--json"]).exit_code != 0
    deleted = CliRunner().invoke(app, ["demo-delete", "--force", "--json"])
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["deleted_ads"] == 40
    assert [r["id"] for r in list_runs("text")] == [run_id]
