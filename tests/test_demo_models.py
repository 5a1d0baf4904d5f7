"""The demo's model pipeline (core.demo.models): order and needs, failures, resumability, the lock, the shipped
detector and its world check, and one real stage run as the subprocess `core demo` starts."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from core.demo import models as dm


def _stage(name: str, log: list, *, needs=(), fail: bool = False, done: bool = False, sleep: float = 0.05) -> dm.Stage:
    def run(ctx):
        log.append(("start", name, time.monotonic()))
        time.sleep(sleep)
        log.append(("end", name, time.monotonic()))
        if fail:
            raise RuntimeError(f"{name} broke")
        return {"ok": True}

    return dm.Stage(name, name.title(), 10, (name,), tuple(needs), None, run, lambda _ctx: done)


def _times(log: list) -> dict[str, tuple[float, float]]:
    start = {n: t for e, n, t in log if e == "start"}
    end = {n: t for e, n, t in log if e == "end"}
    return {n: (start[n], end[n]) for n in start}


def test_stages_start_after_their_needs_and_two_run_at_once(home, engine):
    log: list = []
    stages = [_stage("a", log, sleep=0.3), _stage("b", log, sleep=0.3), _stage("c", log, needs=("a",)),
              _stage("d", log, needs=("a", "b"))]
    status = dm.build_models(engine, stages=stages, workers=2)
    t = _times(log)
    assert {v["state"] for v in status["stages"].values()} == {"done"}
    assert t["c"][0] >= t["a"][1] and t["d"][0] >= max(t["a"][1], t["b"][1])
    assert t["b"][0] < t["a"][1]  # a and b overlapped: two workers
    saved = dm.read_status()
    assert saved["finished"] and saved["stages"]["d"]["state"] == "done" and saved["stages"]["d"]["seconds"] >= 0
    assert not dm.is_building(saved)


def test_a_failed_stage_skips_what_needs_it_and_the_rest_goes_on(home, engine):
    log: list = []
    stages = [_stage("a", log, fail=True), _stage("b", log), _stage("c", log, needs=("a",)), _stage("d", log, needs=("c",))]
    status = dm.build_models(engine, stages=stages, workers=1)
    states = {k: v["state"] for k, v in status["stages"].items()}
    assert states == {"a": "failed", "b": "done", "c": "skipped", "d": "skipped"}
    assert "a broke" in status["stages"]["a"]["error"]
    assert status["stages"]["c"]["error"] == "needs a" and status["stages"]["d"]["error"] == "needs c"
    assert "c" not in _times(log)


def test_done_stages_are_skipped_unless_forced(home, engine):
    log: list = []
    stages = [_stage("a", log, done=True), _stage("b", log, needs=("a",))]
    status = dm.build_models(engine, stages=stages)
    assert status["stages"]["a"]["state"] == "up to date" and status["stages"]["b"]["state"] == "done"
    assert set(_times(log)) == {"b"}
    log.clear()
    dm.build_models(engine, stages=stages, force=("a",))
    assert set(_times(log)) == {"a", "b"}


def test_one_build_per_home(home, engine):
    log: list = []
    started, release = threading.Event(), threading.Event()

    def slow(ctx):
        started.set()
        release.wait(10)
        return {}

    first = threading.Thread(target=dm.build_models, args=(engine,),
                             kwargs={"stages": [dm.Stage("slow", "Slow", 1, (), (), None, slow, None)]})
    first.start()
    assert started.wait(10)
    try:
        assert dm.is_building()
        with pytest.raises(dm.BuildLocked, match="already being built"):
            dm.build_models(engine, stages=[_stage("x", log)])
    finally:
        release.set()
        first.join(10)
    assert not log


def test_budget_adds_up_over_two_workers():
    log: list = []
    a, b = _stage("a", log), _stage("b", log)
    c = dm.Stage("c", "C", 30, (), ("a",), None, None, None)
    stages = [dm.Stage("a", "A", 100, (), (), None, None, None), dm.Stage("b", "B", 50, (), (), None, None, None), c]
    assert dm.budget_total(stages, workers=2) == 130  # a (100) then c (30) on one core, b (50) beside them
    assert dm.budget_total(stages, workers=1) == 180
    assert a.name == "a" and b.name == "b"
    # the real pipeline fits the README's 20 minutes with the world (about 70 s)
    assert dm.budget_total() + 70 <= 20 * 60


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown model stage"):
        dm.select_stages(["ion", "nope"])


def test_every_page_kind_has_a_stage():
    for kind in ("detector", "ion", "totyemb", "text", "image", "matcher-lxmert", "matcher-clip", "matcher-early",
                 "matcher-ion", "matcher-eval", "expansion-table"):
        assert dm.stage_for_kind(kind) is not None, kind


# -- the world's fingerprint and the shipped detector -------------------------------------------------------------------

@pytest.fixture
def small_world(home, engine):
    from core.demo import DemoKnobs, build_world

    build_world(60, 200, 3, engine=engine, knobs=DemoKnobs(n_categories=6, impressions_per_ad=20))
    return engine


def test_fingerprint_follows_the_world(small_world):
    from core.demo import DemoKnobs, build_world

    first = dm.world_fingerprint(small_world)
    assert first and len(first) == 64
    assert dm.world_fingerprint(small_world) == first
    build_world(60, 200, 4, engine=small_world, knobs=DemoKnobs(n_categories=6, impressions_per_ad=20))
    assert dm.world_fingerprint(small_world) not in (None, first)


def test_fingerprint_of_an_empty_catalogue_is_none(home, engine):
    assert dm.world_fingerprint(engine) is None


def test_shipped_detector_matches_its_manifest():
    info = json.loads(dm.SHIPPED_DETECTOR_INFO.read_text())
    assert hashlib.sha256(dm.SHIPPED_DETECTOR.read_bytes()).hexdigest() == info["sha256"]
    assert info["world"] == {"seed": 0, "ads": 2000, "users": 20000} and len(info["world_fingerprint"]) == 64
    assert "train-detector" in info["command"] and info["metrics"]["mAP50"] > 0.5


def test_shipped_detector_installs_only_on_its_world(small_world, tmp_path, monkeypatch):
    from core.regions.train import latest_detector
    from core.runs import list_runs

    weights = tmp_path / "det.pt"
    weights.write_bytes(b"not really a checkpoint")
    manifest = tmp_path / "det.json"
    manifest.write_text(json.dumps({"world_fingerprint": "0" * 64, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                                    "command": "python -m core train-detector", "metrics": {"mAP50": 0.9}, "config": {}}))
    monkeypatch.setattr(dm, "SHIPPED_DETECTOR", weights)
    monkeypatch.setattr(dm, "SHIPPED_DETECTOR_INFO", manifest)
    trained = []
    monkeypatch.setattr(dm, "run_command", lambda _ctx, _stage, args: trained.append(args) or {"ok": True})
    ctx = dm.Context(small_world)

    dm.install_detector(ctx)  # another world: it trains its own
    assert trained == [("train-detector",)] and latest_detector() is None

    info = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**info, "world_fingerprint": dm.world_fingerprint(small_world)}))
    out = dm.install_detector(ctx)
    assert out["source"] == "shipped" and latest_detector().read_bytes() == weights.read_bytes()
    run = list_runs("detector", "done")[0]
    assert run["config"]["source"] == "shipped" and run["metrics"]["mAP50"] == 0.9 and run["checkpoint_path"]
    assert len(trained) == 1

    weights.write_bytes(b"tampered")
    (latest_detector()).unlink()
    with pytest.raises(RuntimeError, match="sha256"):
        dm.install_detector(ctx)


def test_a_real_stage_runs_as_a_subprocess_with_its_log(small_world):
    """The text baseline, as the pipeline runs it: `python -m core train --model text --json`, one thread."""
    from core.runs import list_runs

    stage = next(s for s in dm.STAGES if s.name == "text")
    assert not stage.done(dm.Context(small_world))
    status = dm.build_models(small_world, only=["text"])
    entry = status["stages"]["text"]
    assert entry["state"] == "done", entry
    assert list_runs("text", "done")
    log = open(entry["log"], encoding="utf-8").read()
    assert log.startswith("$ python -m core train --model text --json")
    again = dm.build_models(small_world, only=["text"])
    assert again["stages"]["text"]["state"] == "up to date"


def test_cli_models_none_builds_the_world_only(home):
    from typer.testing import CliRunner

    from core.cli import app

    result = CliRunner().invoke(app, ["demo", "--ads", "40", "--users", "100", "--no-models", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["ok"] and "models" not in out and not dm.read_status()
    bad = CliRunner().invoke(app, ["demo", "--ads", "40", "--users", "100", "--models", "some", "--json"])
    assert bad.exit_code == 2 and "--models must be one of" in bad.output


def test_background_build_is_detached_and_reports_through_the_status_file(small_world):
    """`core demo --models background` returns at once; the detached build writes its stages where the pages read them."""
    from core.runs import list_runs

    pid = dm.start_background(only=["text"])
    assert pid and dm.is_building()
    assert dm.start_background(only=["text"]) is None  # one build per home
    deadline = time.monotonic() + 240
    while dm.is_building() and time.monotonic() < deadline:
        time.sleep(0.5)
    status = dm.read_status()
    assert status["finished"] and status["stages"]["text"]["state"] == "done", status
    assert list_runs("text", "done") and not dm.is_building()
    log = (dm.get_settings().home / "logs" / "demo-models.log").read_text(encoding="utf-8")
    assert "text" in log
