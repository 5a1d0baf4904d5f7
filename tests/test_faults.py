"""Faults: concurrent writers of a run's config lose nothing; any error after a run started ends it failed with its message."""

from __future__ import annotations

import threading

import pytest

from core.runs import create_run, get_run, merge_run_config, start_run


@pytest.mark.both_backends
def test_concurrent_config_merges_lose_no_key(engine):
    run_id = create_run("text", "merged", {"kind": "text"}, engine=engine)
    threads, per_thread, errors = 6, 8, []
    barrier = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                merge_run_config(run_id, {f"t{t}-{i}": i}, engine=engine)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    config = get_run(run_id, engine=engine)["config"]
    assert config["kind"] == "text"
    assert sorted(k for k in config if k != "kind") == sorted(f"t{t}-{i}" for t in range(threads) for i in range(per_thread))


@pytest.mark.both_backends
def test_merge_keeps_other_keys_and_sets_columns(engine):
    run_id = create_run("text", "merged", {"kind": "text", "job": {"pid": 1}}, engine=engine)
    merged = merge_run_config(run_id, {"regions_key": "k"}, engine=engine, message="training")
    run = get_run(run_id, engine=engine)
    assert merged == run["config"] == {"kind": "text", "job": {"pid": 1}, "regions_key": "k"}
    assert run["message"] == "training"
    with pytest.raises(ValueError, match="unknown run status"):
        merge_run_config(run_id, {}, engine=engine, status="exploded")


def test_start_training_records_the_job_pid_without_dropping_the_jobs_own_keys(engine, monkeypatch):
    import core.jobs as jobs

    def fake_start(args, *, label):
        run_id = int(args[args.index("--run") + 1])
        merge_run_config(run_id, {"regions_key": "written by the job"}, engine=engine)  # the job writes first
        return 4242, jobs.logs_dir() / f"{label}.log"

    monkeypatch.setattr(jobs, "start_command", fake_start)
    run_id = jobs.start_training("text", mode="process", engine=engine)
    config = get_run(run_id, engine=engine)["config"]
    assert config["regions_key"] == "written by the job" and config["job"]["pid"] == 4242 and config["job"]["log"].endswith(".log")


@pytest.mark.parametrize(("broken", "error"), [
    ("save_matcher", OSError("No space left on device")),  # the checkpoint cannot be written
    ("merge_run_config", RuntimeError("the database went away")),  # the run's final write fails
])
def test_a_failure_after_the_matcher_run_started_ends_it_failed(engine, monkeypatch, broken, error):
    import core.matching.service as service
    from core.runs import list_runs
    from tests.matching_world import build_catalog, use_colour_detector

    build_catalog(engine)
    use_colour_detector(monkeypatch)

    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(service, broken, fail)
    with pytest.raises(type(error), match=str(error)):
        service.train_matcher("early", engine=engine, epochs=1, max_steps=2)
    (run,) = list_runs("matcher-early", engine=engine)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["message"] == f"{type(error).__name__}: {error}"


def test_a_failed_index_write_ends_the_training_run_failed(engine, monkeypatch):
    import core.retrieval.training as training
    from core.demo import build_world
    from core.runs import list_runs

    build_world(n_ads=40, n_users=50, seed=0, engine=engine)

    def broken_index(*_args, **_kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(training, "write_run_index", broken_index)
    with pytest.raises(OSError):
        training.train_run("text", engine=engine)
    (run,) = list_runs("text", engine=engine)
    assert (run["status"], run["message"]) == ("failed", "OSError: read-only file system")


def test_fail_run_leaves_a_finished_run_alone(engine):
    from core.runs import fail_run, update_run

    run_id = create_run("text", "x", {}, engine=engine)
    assert start_run(run_id, engine=engine)
    update_run(run_id, engine=engine, status="done", message="done", finished=True)
    assert fail_run(run_id, ValueError("late"), engine=engine) is False
    assert get_run(run_id, engine=engine)["status"] == "done"
