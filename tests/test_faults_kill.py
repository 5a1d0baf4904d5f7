"""SIGKILL midway: a real ``python -m core`` process killed during an import, a training run and a demo build leaves the
database consistent (all or nothing), the run marked failed with its log kept, and a re-run completes.

Each process is killed at a point the test sees (image files appearing, the run's row turning ``running``, the demo's
database stage in its progress output), polled with a timeout, never after a fixed sleep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_data import png_bytes, write_csv
from sqlalchemy import func, select

from core.config import REPO_ROOT
from core.store import Ad, Category, Impression, User, get_engine, session_scope

COLORS = ("red", "green", "blue", "orange", "purple")


def poll(condition: Callable[[], bool], what: str, timeout: float = 60.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def core_process(args: list[str], stderr: Path) -> subprocess.Popen:
    with stderr.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err,
                                env=os.environ.copy())


def kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the process ended before the test could kill it"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def count(model) -> int:
    with session_scope(get_engine()) as s:
        return int(s.scalar(select(func.count()).select_from(model)))


@pytest.mark.both_backends
def test_import_killed_midway_is_all_or_nothing_and_reruns(home, tmp_path):
    n = 1500
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        (folder / f"i{i}.png").write_bytes(png_bytes((40, 30), COLORS[i % len(COLORS)], seed=i))
    manifest = write_csv(tmp_path / "ads.csv", ["ad_id", "text", "image", "category"],
                         [[f"k{i}", f"killed import ad {i}", f"i{i}.png", f"cat{i % 7}"] for i in range(n)])
    get_engine()  # migrated before the child starts: the child's first work is the import itself
    images = home / "images"
    proc = core_process(["ingest", "ads", str(manifest), "--images", str(folder)], tmp_path / "import.err")
    poll(lambda: images.is_dir() and any(images.rglob("*.png")), "the import to start storing images")
    kill(proc)
    stored = count(Ad)
    assert stored in (0, n), f"{stored} of {n} ads: a half import"
    assert count(Category) in (0, 7)
    assert stored == 0, "the process was killed after its commit: the test did not kill it midway"
    result = subprocess.run([sys.executable, "-m", "core", "ingest", "ads", str(manifest), "--images", str(folder), "--json"],
                            cwd=REPO_ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and out["imported"] == n, result.stdout + result.stderr
    assert (count(Ad), count(Category)) == (n, 7)


def test_training_killed_midway_is_reaped_as_failed_with_its_log(engine):
    from core import jobs
    from core.demo import build_world
    from core.runs import get_run, run_status

    build_world(n_ads=40, n_users=50, seed=0, engine=engine)
    run_id = jobs.start_training("text", mode="process", engine=engine)
    job = get_run(run_id, engine=engine)["config"]["job"]
    proc = next(p for p in jobs._CHILDREN if p.pid == job["pid"])
    poll(lambda: run_status(run_id, engine=engine) == "running", "the training job to start")
    assert jobs.reap_stale(engine=engine, kinds=["text"]) == []  # alive: not reaped
    kill(proc)
    assert jobs.reap_stale(engine=engine, kinds=["text"]) == [run_id]
    run = get_run(run_id, engine=engine)
    assert run["status"] == "failed" and run["message"] == "the training process ended unexpectedly" and run["finished_at"]
    log = Path(job["log"])
    assert log.is_file() and log.read_text().startswith("$ python -m core train --model text --run ")
    assert jobs.reap_stale(engine=engine, kinds=["text"]) == []  # once


def test_demo_build_killed_in_its_database_stage_then_rerun_gives_one_world(home, tmp_path):
    args = ["demo", "--ads", "60", "--users", "3000", "--models", "none"]
    get_engine()
    err = tmp_path / "demo.err"
    proc = core_process(args, err)
    poll(lambda: b"demo-db" in err.read_bytes(), "the demo build to reach its database stage")
    kill(proc)
    assert count(Ad) == count(User) == count(Impression) == 0, "a killed demo build left part of its world"
    result = subprocess.run([sys.executable, "-m", "core", *args, "--json"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (count(Ad), count(User), count(Impression)) == (60, 3000, out["impressions"])
    with session_scope(get_engine()) as s:
        assert s.scalar(select(func.count(func.distinct(Ad.source)))) == 1
        assert s.scalar(select(func.count()).select_from(Category)) == out["categories"]
