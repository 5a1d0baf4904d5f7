"""Region extraction on a Dask cluster (2 worker processes) writes the same cache as extraction on this machine."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core.demo import DemoKnobs, build_world

LIMIT = 6
KNOBS = DemoKnobs(n_categories=8, n_packages=0)


def _world(home_path, monkeypatch):
    from core.config import get_settings
    from core.store import get_engine

    monkeypatch.setenv("ADLENS_HOME", str(home_path))
    get_settings.cache_clear()
    engine = get_engine()
    build_world(n_ads=24, n_users=100, seed=5, engine=engine, knobs=KNOBS, impressions_per_ad=2)
    return engine


def _snapshot(engine, key):
    from core.regions.extract import load_regions
    from core.store import Ad, session_scope

    with session_scope(engine) as s:
        hashes = s.scalars(select(Ad.image_hash).order_by(Ad.id).limit(LIMIT)).all()
    out = {}
    for image_hash in hashes:
        loaded = load_regions(image_hash, key, engine=engine)
        assert loaded is not None, f"{image_hash} is not in the cache"
        out[image_hash] = loaded
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dask_extraction_equals_local_extraction(tmp_path, monkeypatch):
    from distributed import LocalCluster

    from core.config import get_settings
    from core.regions.extract import extract_catalog
    from core.scale import extract_catalog_dask

    engine = _world(tmp_path / "dask-home", monkeypatch)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        seen = []
        remote = extract_catalog_dask(cluster.scheduler_address, "offline", ocr=False, limit=LIMIT, batch_size=2, engine=engine,
                                      progress=lambda d, t, m: seen.append((d, t, m)))
        again = extract_catalog_dask(cluster.scheduler_address, "offline", ocr=False, limit=LIMIT, batch_size=2, engine=engine)
    assert remote["workers"] == 2 and remote["computed"] == LIMIT and remote["failed"] == [] and remote["remaining"] == 0
    assert (again["computed"], again["cached"]) == (0, LIMIT)  # resumable: the cache it wrote is found
    assert seen[-1][:2] == (LIMIT, LIMIT) and "dask" in seen[-1][2]
    through_dask = _snapshot(engine, remote["key"])

    engine_local = _world(tmp_path / "local-home", monkeypatch)
    local = extract_catalog("offline", ocr=False, limit=LIMIT, batch_size=2, engine=engine_local)
    assert local["key"] == remote["key"] and local["computed"] == LIMIT
    here = _snapshot(engine_local, local["key"])
    get_settings.cache_clear()

    assert list(here) == list(through_dask)  # the same images (same world, same hashes)
    for image_hash, (a, _ocr_a) in here.items():
        b, _ocr_b = through_dask[image_hash]
        assert len(a) == len(b) > 0 and a.labels == b.labels
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-4)
        np.testing.assert_allclose(a.features, b.features, atol=1e-4)


def test_unreachable_scheduler_is_a_clear_error(engine):
    from core.scale import extract_catalog_dask

    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        extract_catalog_dask("tcp://127.0.0.1:9", "offline", engine=engine, connect_timeout=2)


def test_extract_cli_reports_an_unreachable_scheduler(engine):
    import json

    from typer.testing import CliRunner

    from core.cli import app

    result = CliRunner().invoke(app, ["extract", "--detector", "offline", "--dask", "tcp://127.0.0.1:9", "--json"])
    assert result.exit_code != 0
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in json.loads(result.output)["error"]


def test_local_cluster_addresses():
    import os

    from core.scale import local_workers

    assert local_workers("tcp://10.0.0.5:8786") is None
    assert local_workers("local:3") == 3 and local_workers("local") == max(1, os.cpu_count() or 1)
    for bad in ("local:0", "local:two"):
        with pytest.raises(ValueError, match="local:N"):
            local_workers(bad)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_index_embedding_on_dask_workers_equals_the_local_one(tmp_path_factory, monkeypatch):
    """`index --rebuild --dask`: the workers embed the catalogue in chunks; same ads, same order, same vectors as here.
    (Thread workers: the shared test world's regions are patched in this process, which worker processes would not see;
    the process boundary is the extraction test's.)"""
    from distributed import LocalCluster

    from core.retrieval.catalog import load_catalog_ads
    from core.retrieval.index import build_index, embed_in_chunks
    from core.runs import get_run
    from core.store import get_engine
    from tests.retrieval_world import world

    w = world(tmp_path_factory.getbasetemp(), monkeypatch)
    engine = get_engine()
    run = get_run(w["ion"], engine=engine)
    cat = load_catalog_ads(engine=engine)
    here_cat, here, _left = embed_in_chunks(run, cat, engine, chunk=50)
    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        there_cat, there, left = embed_in_chunks(run, cat, engine, lambda d, t, m: seen.append((d, t, m)), chunk=50,
                                                 dask=cluster.scheduler_address)
    assert there_cat.ids == here_cat.ids == cat.ids and left == [] and len(seen) == 3  # 120 ads in chunks of 50
    assert seen[-1][:2] == (900, 1000) and "120 of 120" in seen[-1][2]
    np.testing.assert_allclose(there, here, atol=1e-5)
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        build_index(w["ion"], rebuild=True, engine=engine, dask="tcp://127.0.0.1:9")
