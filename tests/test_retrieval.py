"""Model runs, training, FAISS search, add_new_ads, evaluation, jobs and the CLI on a tiny demo catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from core import retrieval
from core.audience.model_runs import similar_ads_for_audience
from core.config import REPO_ROOT
from core.runs import get_run
from tests.retrieval_world import world

REAL_REGIONS_FOR_IMAGE = retrieval.regions_for_image  # kept before any test patches it


@pytest.fixture
def w(tmp_path_factory, monkeypatch):
    return world(tmp_path_factory.getbasetemp(), monkeypatch)


def test_train_run_records_split_metrics_files_and_code_version(w):
    from core.filestore import resolve
    from core.runs import get_run

    run = get_run(w["ion"])
    assert run["status"] == "done" and run["progress"] == 1.0
    assert run["code_version"].startswith(("git:", "pkg:")) and "+embed:" in run["code_version"]
    split = run["data_split"]
    assert split["source"] == "catalog (Ad.split)"
    assert split["train"] + split["val"] + split["test"] == 120
    m = run["metrics"]
    assert m["n_seen"] + m["n_unseen"] == split["test"] == len(split["test_ads"])
    assert m["n_unseen"] > 0  # the demo world holds categories out of training
    for part in ("seen", "unseen", "all"):
        assert len(m[part]) == 10 and all(0.0 <= v <= 1.0 for v in m[part])
    assert 1 <= m["best_epoch"] <= m["epochs"] == 4
    assert resolve(run["checkpoint_path"]).is_file() and resolve(run["index_path"]).is_file()
    assert m["indexed"] == 120 and run["config"]["regions_key"].startswith("fake-quadrants")
    # chance = mean over queries of (same-category test ads - 1) / (test ads - 1), recomputed by hand
    cat = retrieval.load_catalog_ads(split["test_ads"])
    labels = cat.labels.tolist()
    trained = set(retrieval.load_catalog_ads().labels[[s == "train" for s in retrieval.load_catalog_ads().splits]].tolist())
    seen = [(labels.count(c) - 1) / (len(labels) - 1) for c in labels if c in trained]
    assert m["chance"]["seen"] == pytest.approx(sum(seen) / len(seen), abs=1e-6)


def test_metrics_match_an_independent_recomputation(w):
    """Hit P@1 on the test split, recomputed by brute force from the indexed vectors and the catalog labels."""
    from core.runs import get_run

    run = get_run(w["ion"])
    ids, vectors = retrieval.run_vectors(w["ion"])
    cat = retrieval.load_catalog_ads()
    label = dict(zip(cat.ids, cat.labels.tolist(), strict=True))
    test = run["data_split"]["test_ads"]
    pos = {a: i for i, a in enumerate(ids)}
    v = vectors[[pos[a] for a in test]]
    d = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    p1 = np.mean([label[test[i]] == label[test[j]] for i, j in enumerate(nearest)])
    assert run["metrics"]["all"][0] == pytest.approx(p1, abs=1e-6)


def test_search_by_ad_is_exact_sorted_and_excludes_the_query(w):
    result = retrieval.search(w["ion"], ad_id="demo-00003", k=8)
    ids = [r["ad_id"] for r in result["results"]]
    assert len(ids) == 8 and "demo-00003" not in ids
    all_ids, vectors = retrieval.run_vectors(w["ion"])
    q = vectors[all_ids.index("demo-00003")]
    dist = np.sqrt(((vectors - q) ** 2).sum(1))
    dist[all_ids.index("demo-00003")] = np.inf
    expected = [all_ids[i] for i in np.argsort(dist, kind="stable")[:8]]
    assert ids == expected
    got = [r["distance"] for r in result["results"]]
    assert got == sorted(got) and got[0] == pytest.approx(float(np.sort(dist)[0]), abs=1e-4)
    same = [r["same_category"] for r in result["results"]]
    assert all(isinstance(s, bool) for s in same)


def test_search_survives_a_restart_in_a_new_process(w):
    in_process = [r["ad_id"] for r in retrieval.search(w["ion"], ad_id="demo-00010", k=5)["results"]]
    out = subprocess.run([sys.executable, "-m", "core", "search", "--ad", "demo-00010", "--run", str(w["ion"]), "--k", "5", "--json"],
                         cwd=REPO_ROOT, env=w["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert [r["ad_id"] for r in data["results"]] == in_process


def test_creative_and_phrase_queries(w):
    from core.catalog import get_ad, image_file
    from core.images import load_image

    rec = get_ad("demo-00020")
    image = load_image(image_file(rec)).image
    result = retrieval.search(w["ion"], image=image, text=rec["text"], k=3)
    assert result["results"][0]["ad_id"] == "demo-00020" and result["results"][0]["distance"] < 1e-3
    phrase = retrieval.search(w["ion"], phrase=rec["text"].split()[0], k=4)
    assert len(phrase["results"]) == 4 and phrase["query"]["type"] == "phrase"
    with pytest.raises(retrieval.RetrievalError, match="exactly one query"):
        retrieval.search(w["ion"], ad_id="demo-00020", phrase="x")


def test_add_new_ads_appends_without_rebuild(w):
    from core.store import Ad, get_engine, session_scope

    engine = get_engine()
    with session_scope(engine) as s:
        src = s.get(Ad, "demo-00030")
        s.add(Ad(id="zz-new-1", text=src.text, lang=src.lang, image_path=src.image_path, image_hash=src.image_hash,
                 content_hash="x", width=src.width, height=src.height, category_id=src.category_id, split="test", source="upload"))
    try:
        before = retrieval.load_index(get_run(w["ion"])).ids[:]
        added = retrieval.add_new_ads(w["ion"])
        assert added["added"] == 1 and added["total"] == 121 and not added["rebuilt"]
        index = retrieval.load_index(get_run(w["ion"]))
        assert index.ids[:120] == before and index.ids[120] == "zz-new-1"
        top = retrieval.search(w["ion"], ad_id="zz-new-1", k=1)["results"][0]
        assert top["ad_id"] == "demo-00030" and top["distance"] < 1e-4 and top["same_category"] is True
        assert retrieval.add_new_ads(w["ion"])["added"] == 0
    finally:
        with session_scope(engine) as s:
            s.delete(s.get(Ad, "zz-new-1"))
        retrieval.build_index(w["ion"], rebuild=True)
    assert len(retrieval.load_index(get_run(w["ion"]))) == 120


def test_similar_ads_for_audience_matches_the_index(w):
    retriever = similar_ads_for_audience(w["ion"])
    got = retriever(["demo-00005"], 4)
    expected = [r["ad_id"] for r in retrieval.search(w["ion"], ad_id="demo-00005", k=4)["results"]]
    assert got == expected and retriever.model_run_id == w["ion"]


def test_explain_and_attention(w):
    from core.explain import attention, explain_pair

    att = attention(w["ion"], ad_id="demo-00007")
    n_words, kept = len(att["words"]), att["kept"]
    assert 1 <= len(kept) <= 3 and np.asarray(att["beta"]).shape == (n_words, len(kept))
    assert sum(r["in_k1"] for r in att["regions"]) == 5 and sum(r["kept"] for r in att["regions"]) == len(kept)
    assert all(0.0 <= w_["gate"] <= 1.0 and 0.0 <= w_["keyword_prob"] <= 1.0 for w_ in att["words"])
    alphas = {r["index"]: r["alpha"] for r in att["regions"]}
    assert [alphas[i] for i in kept] == sorted((alphas[i] for i in kept), reverse=True)  # SCA keeps the top alpha
    ex = explain_pair(w["ion"], "demo-00007", "demo-00008")
    assert set(ex["shared_keywords"]) <= {x.text.lower() for x in __import__("core.embed.text", fromlist=["tokenize"]).tokenize(
        retrieval.load_catalog_ads(["demo-00007"]).texts[0])}
    assert ex["regions"]["query"] and sum(r["weight"] for r in ex["regions"]["query"]) == pytest.approx(1.0, abs=1e-5)
    assert ex["pairs"] and -1.0 <= ex["pairs"][0]["cosine"] <= 1.0


def test_text_baseline_run_finds_its_own_text(w):
    run_id = retrieval.train_run("text")
    run = get_run(run_id)
    assert run["status"] == "done" and run["checkpoint_path"] is None and run["metrics"]["dim"] == 384
    text = retrieval.load_catalog_ads(["demo-00040"]).texts[0]
    top = retrieval.search(run_id, phrase=text, k=1)["results"][0]
    assert top["text"] == text and top["distance"] < 1e-3
    rows = {r["run_id"]: r for r in retrieval.evaluate_runs()}
    assert rows[run_id]["seen_p1"] == run["metrics"]["seen"][0]
    with pytest.raises(retrieval.RetrievalError, match="no modules to ablate"):
        retrieval.train_run("text", ["ksg"])


def test_background_job_runs_and_cancels(w):
    import time

    from core import jobs
    from core.runs import create_run, request_cancel

    done = jobs.start_training("totyemb", (), {"epochs": 1, "seed": 1}, mode="thread")
    assert jobs.wait(done, timeout=120) == "done"
    assert get_run(done)["progress"] == 1.0 and get_run(done)["metrics"]["indexed"] == 120
    stop = jobs.start_training("ion", (), {"epochs": 30, "d_model": 32, "layers": 1, "heads": 2}, mode="thread")
    deadline = time.monotonic() + 60
    while not get_run(stop)["message"].startswith("train:") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get_run(stop)["status"] == "running"
    assert jobs.cancel(stop)
    assert jobs.wait(stop, timeout=60) == "cancelled"
    run = get_run(stop)
    assert run["index_path"] is None and run["finished_at"] is not None
    assert not jobs.cancel(stop)  # not active any more
    early = create_run("ion")
    request_cancel(early)
    assert retrieval.train_run("ion", run_id=early) == early and get_run(early)["status"] == "cancelled"


def test_cancel_reaches_region_detection(w, monkeypatch):
    """A Cancel during the region stage (before any epoch) stops the run at the next progress report."""
    import core.retrieval.regions as region_reads
    from core.runs import list_runs, request_cancel

    real = region_reads.regions_for_ads
    calls = []

    def slow_regions(ad_ids, image_hashes, detector, *, engine, progress, descriptors=None):
        for i in range(1, 50):  # fifty "batches" of detection; the job is cancelled after the first
            calls.append(i)
            if i == 2:
                request_cancel(next(r["id"] for r in list_runs("ion") if r["status"] == "running"))
                time.sleep(0.6)  # the run's status is read at most every 0.5 s
            progress(i, 50, f"regions: {i} detected")
        return real(ad_ids, image_hashes, detector, engine=engine, progress=progress, descriptors=descriptors)

    import time

    monkeypatch.setattr(region_reads, "regions_for_ads", slow_regions)
    run_id = retrieval.train_run("ion", (), {"epochs": 1, "d_model": 32, "layers": 1, "heads": 2})
    run = get_run(run_id)
    assert run["status"] == "cancelled" and "while it ran" in run["message"]
    assert len(calls) <= 4 and run["index_path"] is None


def test_cli_json(w):
    from core.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["runs"]
    ion = next(r for r in rows if r["run_id"] == w["ion"])
    assert ion["seen_p1"] == get_run(w["ion"])["metrics"]["seen"][0]
    bad = runner.invoke(app, ["search", "--ad", "no-such-ad", "--run", str(w["ion"]), "--json"])
    assert bad.exit_code == 2 and "no ad with id" in json.loads(bad.stdout)["error"]
    missing = runner.invoke(app, ["search", "--ad", "demo-00001", "--run", "999", "--json"])
    assert missing.exit_code == 2 and "does not exist" in json.loads(missing.stdout)["error"]
    idx = runner.invoke(app, ["index", "--run", str(w["ion"]), "--json"])
    assert idx.exit_code == 0 and json.loads(idx.stdout)["added"] == 0
    exp = runner.invoke(app, ["experiments", "--only", "text", "--json"])
    assert exp.exit_code == 0, exp.output
    data = json.loads(exp.stdout)
    (row,) = data["rows"]
    assert row["label"] == "text-only (MiniLM)" and row["seen_p1"] == get_run(row["run_id"])["metrics"]["seen"][0]
    assert "| text-only (MiniLM) |" in data["markdown"]
    grid = runner.invoke(app, ["experiments", "--grid", "5:9", "--sweeps-only", "--json"])
    assert grid.exit_code == 2 and "k2 <= k1" in json.loads(grid.stdout)["error"]


def test_empty_catalog_gives_clear_errors(home, engine):
    with pytest.raises(retrieval.RetrievalError, match="no finished model run"):
        retrieval.search(None, ad_id="a")
    with pytest.raises(retrieval.RetrievalError, match="at least 2 categories"):
        retrieval.train_run("text")
    assert retrieval.evaluate_runs() == []


def test_real_offline_detector_regions_for_a_creative(w):
    """The one test with the real (offline) detector: region features of one demo creative."""
    from core.catalog import get_ad, image_file
    from core.images import load_image
    from core.regions.offline import OfflineDetector

    image = load_image(image_file(get_ad("demo-00001"))).image
    reg = REAL_REGIONS_FOR_IMAGE(image, "offline")
    assert reg.features.shape == (len(reg.confidences), OfflineDetector.feature_dim) and len(reg.confidences) > 0
    assert np.all(np.diff(reg.confidences) <= 1e-6) and np.isfinite(reg.features).all()
    with pytest.raises(retrieval.RetrievalError, match="not be comparable"):
        REAL_REGIONS_FOR_IMAGE(image, "offline", "some-other-detector/2|conf=0.05")


def test_ion_clue_scorer_reranks_with_the_runs_sca(w):
    """The Regions page's ION scorer gives each box the alpha the model itself computes for that ad (eq. 6)."""
    from core.explain import attention
    from core.regions.base import DetectionResult
    from core.regions.clues import rerank
    from core.runs import get_run
    from tests.retrieval_world import fake_image_regions

    run = get_run(w["ion"])
    scorer = retrieval.clue_scorer(run)
    assert scorer.name.startswith(f"ION run #{w['ion']}")
    ad = retrieval.load_catalog_ads(["demo-00007"])
    from core.filestore import resolve
    from core.images import load_image

    regs = fake_image_regions(load_image(resolve(ad.image_paths[0])).image)
    dets = DetectionResult(boxes=regs.boxes, confidences=regs.confidences, labels=regs.labels, features=regs.features,
                           image_size=(64, 64), detector="fake", backend="fake", device="cpu")
    alpha = scorer.score(ad.texts[0], dets)
    expected = {r["index"]: r["alpha"] for r in attention(w["ion"], ad_id="demo-00007")["regions"] if r["in_k1"]}
    assert alpha.shape == (5,) and ((alpha > 0) & (alpha < 1)).all()
    assert alpha.tolist() == pytest.approx([expected[i] for i in range(5)], abs=1e-5)
    sca = rerank(dets, ad.texts[0], k1=5, k2=2, scorer=scorer)
    assert [r.index for r in sca.kept()] == list(np.argsort(-alpha, kind="stable")[:2])
    wrong = DetectionResult(boxes=regs.boxes, confidences=regs.confidences, labels=regs.labels, features=regs.features[:, :10],
                            image_size=(64, 64), detector="fake", backend="fake", device="cpu")
    with pytest.raises(ValueError, match="48-d"):
        scorer.score(ad.texts[0], wrong)
    with pytest.raises(retrieval.RetrievalError, match="only ION runs"):
        retrieval.clue_scorer({**run, "kind": "text"})
    assert retrieval.run_detector_version(run) == "fake-quadrants/1"


def test_runs_record_their_process_and_dead_ones_are_reaped(w):
    import socket

    from core.jobs import reap_stale
    from core.runs import create_run, get_run, start_run

    done = get_run(w["ion"])
    assert done["config"]["job"] == {"mode": "process", "pid": done["config"]["job"]["pid"], "host": socket.gethostname()}
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    here = create_run("ion", "killed CLI run", {"job": {"mode": "process", "pid": proc.pid, "host": socket.gethostname()}})
    elsewhere = create_run("ion", "run on another machine", {"job": {"mode": "process", "pid": proc.pid, "host": "other-host"}})
    alive = create_run("ion", "this process", {"job": {"mode": "process", "pid": os.getpid()}})
    for run_id in (here, elsewhere, alive):
        assert start_run(run_id, "training")
    try:
        assert reap_stale() == [here]
        assert get_run(here)["status"] == "failed" and "ended unexpectedly" in get_run(here)["message"]
        assert get_run(elsewhere)["status"] == "running" and get_run(alive)["status"] == "running"
    finally:  # leave the shared world without active runs
        from core.runs import delete_run, update_run

        for run_id in (here, elsewhere, alive):
            update_run(run_id, status="failed", finished=True)
            delete_run(run_id)


def test_full_models_are_preferred_over_ablations_and_variants(w):
    from core.audience.retrieval import make_retriever
    from core.runs import create_run, delete_run, get_run, is_variant, latest_done, update_run
    from core.store import get_engine

    full = latest_done("ion")  # the world's full ION (another module may have rebuilt the shared world and retrained it)
    assert not is_variant(full)
    made = []
    try:
        for config in ({"ablate": ["sca"]}, {"neck": "none"}, {"word_init": "random"}, {"sca": "literal"}, {"recipe": "paper"},
                       {"vocab": "catalogue"}, {"region_drop": 0.2}):
            run_id = create_run("ion", "variant", config)
            update_run(run_id, status="done", index_path=full["index_path"], finished=True)
            made.append(run_id)
            assert is_variant(get_run(run_id))
        assert latest_done("ion")["id"] == full["id"]  # newer variants exist, the full model is still "the" ION
        assert make_retriever("ion", engine=get_engine()).model_run_id == full["id"]
        assert retrieval.search(ad_id="demo-00007", k=3)["run"]["id"] == full["id"]
    finally:
        for run_id in made:
            delete_run(run_id)
