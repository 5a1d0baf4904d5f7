"""Issue 14 follow-up: a queued job whose process died no longer blocks the queue until reap_stale runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from core.jobqueue import DEAD_MESSAGE, QUEUE_KEY, ahead_of, process_gone, wait_turn
from core.runs import create_run, get_run, update_run


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # finished and reaped: its pid names no process
    return proc.pid


def queued_job(engine, name: str, pid: int | None, host: str | None = None) -> int:
    job = {"mode": "process", "pid": pid, "host": host or socket.gethostname()} if pid else {"mode": "thread"}
    run_id = create_run("text", name, {QUEUE_KEY: True, "job": job}, engine=engine)
    update_run(run_id, engine=engine, status="queued", message="queued, position 1")
    return run_id


def test_process_gone_only_for_a_dead_pid_of_this_host():
    here = socket.gethostname()
    assert process_gone({"job": {"mode": "process", "pid": dead_pid(), "host": here}})
    assert not process_gone({"job": {"mode": "process", "pid": os.getpid(), "host": here}})
    assert not process_gone({"job": {"mode": "process", "pid": dead_pid(), "host": here + "-elsewhere"}})
    assert not process_gone({"job": {"mode": "process"}})  # no pid recorded yet: just started
    assert not process_gone({"job": {"mode": "thread"}}) and not process_gone(None)


def test_a_dead_queued_job_is_skipped_and_marked_failed_when_turns_are_counted(engine):
    dead = queued_job(engine, "dead", dead_pid())
    alive = queued_job(engine, "alive", os.getpid())
    elsewhere = queued_job(engine, "elsewhere", dead_pid(), host=socket.gethostname() + "-other")
    mine = queued_job(engine, "mine", None)
    assert ahead_of(mine, engine=engine) == 2  # alive and elsewhere; the dead one holds no place
    gone = get_run(dead, engine=engine)
    assert gone["status"] == "failed" and gone["message"].startswith(DEAD_MESSAGE) and gone["finished_at"] is not None
    assert get_run(alive, engine=engine)["status"] == "queued" and get_run(elsewhere, engine=engine)["status"] == "queued"


def test_wait_turn_starts_a_job_queued_behind_a_dead_one(engine):
    dead = queued_job(engine, "dead", dead_pid())
    mine = queued_job(engine, "mine", None)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(wait_turn(mine, engine=engine, limit=1, poll=0.01)), daemon=True)
    waiter.start()
    waiter.join(60)  # a safety net only: the turn is decided on the first look
    assert result == [True]
    assert get_run(mine, engine=engine)["status"] == "created"
    assert get_run(dead, engine=engine)["status"] == "failed"


def test_a_live_job_ahead_still_holds_its_place(engine):
    alive = queued_job(engine, "alive", os.getpid())
    mine = queued_job(engine, "mine", None)
    update_run(alive, engine=engine, status="running", message="training")
    assert ahead_of(mine, engine=engine) == 1
    assert get_run(alive, engine=engine)["status"] == "running"
