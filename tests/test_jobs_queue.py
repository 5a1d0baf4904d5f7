"""The training-job queue: never more than ``max_parallel_jobs`` trainings at once, first come first served, Cancel while
queued, and the failed-run log tail the pages show."""

from __future__ import annotations

import threading
import time

import pytest

from core import jobs
from core.jobqueue import queue_position
from core.runs import ACTIVE, get_run


class FakeTraining:
    """Stands in for core.retrieval.training._train: counts how many run at once; each waits for its release."""

    def __init__(self, auto: bool = True):
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[int] = []
        self.ended: list[int] = []
        self.release: dict[int, threading.Event] = {}
        self.auto = auto

    def __call__(self, run_id, *_args, **_kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(run_id)
            gate = self.release.setdefault(run_id, threading.Event())
        gate.wait(0.05 if self.auto else 30)
        with self.lock:
            self.running -= 1
            self.ended.append(run_id)
        return {"fake": True}


@pytest.fixture
def fake(engine, monkeypatch):
    import core.jobqueue as jobqueue
    import core.retrieval.training as training
    from core.config import get_settings

    real_wait = jobqueue.wait_turn
    monkeypatch.setattr(training, "wait_turn", lambda run_id, **kw: real_wait(run_id, **{**kw, "poll": 0.02}))
    fake = FakeTraining()
    monkeypatch.setattr(training, "_train", fake)
    get_settings.cache_clear()
    yield fake
    get_settings.cache_clear()


def _wait_all(run_ids, engine, timeout=60.0):
    return [jobs.wait(r, timeout, engine=engine, poll=0.02) for r in run_ids]


def test_one_slot_runs_jobs_one_at_a_time_in_order(engine, fake):
    ids = [jobs.start_training("text", mode="thread", engine=engine) for _ in range(5)]
    assert _wait_all(ids, engine) == ["done"] * 5
    assert fake.most == 1 and fake.started == ids and fake.ended == ids


def test_two_slots_never_more_than_two(engine, fake, monkeypatch):
    from core.config import get_settings

    monkeypatch.setenv("ADLENS_MAX_PARALLEL_JOBS", "2")
    get_settings.cache_clear()
    fake.auto = False
    ids = [jobs.start_training("text", mode="thread", engine=engine) for _ in range(6)]
    deadline = time.monotonic() + 30
    while len(fake.started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(fake.started) == ids[:2]  # the two oldest took the slots
    assert [get_run(i, engine=engine)["status"] for i in ids[2:]] == ["queued"] * 4
    for run_id in ids:  # release them one by one, as each gets its turn
        while run_id not in fake.release and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.release[run_id].set()
    assert _wait_all(ids, engine) == ["done"] * 6
    assert fake.most == 2 and sorted(fake.started) == ids


def test_queued_job_shows_its_position_and_can_be_cancelled(engine, fake):
    fake.auto = False
    first = jobs.start_training("text", mode="thread", engine=engine)
    deadline = time.monotonic() + 30
    while first not in fake.release and time.monotonic() < deadline:
        time.sleep(0.01)
    second = jobs.start_training("text", mode="thread", engine=engine)
    third = jobs.start_training("text", mode="thread", engine=engine)
    run2, run3 = get_run(second, engine=engine), get_run(third, engine=engine)
    assert "queued" in ACTIVE and run2["status"] == run3["status"] == "queued"
    assert (queue_position(run2, engine=engine), queue_position(run3, engine=engine)) == (1, 2)
    assert run3["message"] == "queued, position 2" and queue_position(get_run(first, engine=engine), engine=engine) is None
    assert jobs.cancel(second, engine=engine)
    assert jobs.wait(second, 30, engine=engine, poll=0.02) == "cancelled"
    assert get_run(second, engine=engine)["message"] == "cancelled while queued"
    assert queue_position(get_run(third, engine=engine), engine=engine) == 1
    fake.release[first].set()
    while third not in fake.release and time.monotonic() < deadline:
        time.sleep(0.01)
    fake.release[third].set()
    assert _wait_all([first, third], engine) == ["done", "done"]
    assert fake.started == [first, third]


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "run-1.log"
    assert jobs.log_tail(log) is None
    log.write_text("$ python -m core train\n" + "".join(f"line {i}\n" for i in range(5000)) + "Traceback: boom\n")
    tail = jobs.log_tail(log, lines=3)
    assert tail == "line 4998\nline 4999\nTraceback: boom"
    log.write_bytes(b"\xff\xfe bad bytes\nlast\n")
    assert jobs.log_tail(log, lines=5) == "\ufffd\ufffd bad bytes\nlast"


def test_failed_run_log_tail_from_its_config(engine, tmp_path):
    from core.runs import create_run, fail_run, start_run

    log = tmp_path / "run.log"
    log.write_text("$ python -m core train --model text\nValueError: the catalog is empty\n")
    run_id = create_run("text", "t", {"job": {"mode": "process", "pid": 1, "log": str(log)}}, engine=engine)
    start_run(run_id, engine=engine)
    fail_run(run_id, ValueError("the catalog is empty"), engine=engine)
    run = get_run(run_id, engine=engine)
    assert jobs.run_log_tail(run) == "$ python -m core train --model text\nValueError: the catalog is empty"
    assert jobs.run_log_tail({"config": {}}) is None


def _evaluation_page():
    from streamlit.testing.v1 import AppTest

    from core.config import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "4_Evaluation.py"), default_timeout=90)
    at.session_state["ev_refresh"] = False  # else the page re-runs itself while a job is active
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_evaluation_page_shows_a_failed_runs_log_tail_and_a_queued_position(engine, tmp_path):
    from core.runs import create_run, fail_run, start_run, update_run

    log = tmp_path / "run.log"
    log.write_text("$ python -m core train --model text\n" + "noise\n" * 100 + "ValueError: the catalog is empty\n")
    failed = create_run("text", "t", {"job": {"mode": "process", "pid": 1, "log": str(log)}}, engine=engine)
    start_run(failed, engine=engine)
    fail_run(failed, "ValueError: the catalog is empty", engine=engine)
    queued = create_run("text", "waiting", {"queue": True}, engine=engine)
    update_run(queued, engine=engine, status="queued", message="queued, position 2")
    at = _evaluation_page()
    codes = [str(c.value) for c in at.code]
    assert any(c.endswith("ValueError: the catalog is empty") and c.count("noise") == 39 for c in codes), codes
    assert any("queued, position 2" in str(p.proto.text) for p in at.get("progress"))
