"""Corrupt or truncated files are never served: indexes, embedding / matcher checkpoints and region-cache arrays are
sealed (size + sha256) when written, and a damaged one is refused with a clear message or rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.filestore import DamagedFile, forget_verified, get_array, put_array, resolve, seal_path


def flip_byte(path: Path, offset: int = -20) -> None:
    """Change one byte in place (size unchanged), as a bad disk or a partial overwrite would."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    forget_verified()  # a byte flipped within the file system's timestamp tick keeps the mtime: hash again


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_arrays_are_sealed_and_checked(home):
    rel = put_array(np.arange(64, dtype=np.float32).reshape(8, 8), "ab" + "0" * 62, kind="regions")
    path = resolve(rel)
    facts = json.loads(seal_path(path).read_text())
    assert facts["size"] == path.stat().st_size and len(facts["sha256"]) == 64
    assert get_array(rel).sum() == sum(range(64))
    flip_byte(path)
    with pytest.raises(DamagedFile, match=r"cached array .* is damaged \(hash mismatch\)"):
        get_array(rel)
    truncate(path)
    with pytest.raises(DamagedFile, match=r"damaged \(truncated or altered: \d+ bytes, \d+ were written\)"):
        get_array(rel)


def test_an_unsealed_truncated_array_is_refused_too(home):
    rel = put_array(np.ones((50, 8), np.float32), "cd" + "1" * 62)
    seal_path(resolve(rel)).unlink()  # a file from before seals existed
    truncate(resolve(rel))
    with pytest.raises(DamagedFile, match="is damaged"):
        get_array(rel)


def test_vector_index_refuses_damaged_files(tmp_path):
    from core.search.index import VectorIndex

    rng = np.random.default_rng(0)
    index = VectorIndex.build(rng.standard_normal((30, 8)).astype(np.float32), [f"a{i}" for i in range(30)])
    path = index.save(tmp_path / "index.faiss")
    assert seal_path(path).is_file() and seal_path(path.with_suffix(".ids.json")).is_file()
    assert VectorIndex.load(path).ids == index.ids
    flip_byte(path, offset=-40)
    with pytest.raises(DamagedFile, match=r"the index \(index.faiss\) is damaged \(hash mismatch\); rebuild it"):
        VectorIndex.load(path)
    index.save(path)
    truncate(path.with_suffix(".ids.json"))
    with pytest.raises(DamagedFile, match=r"index.ids.json\) is damaged \(truncated"):
        VectorIndex.load(path)
    index.save(path)
    for part in (path, path.with_suffix(".ids.json")):  # unsealed (older) files: a truncated index still cannot be read
        seal_path(part).unlink()
    truncate(path)
    with pytest.raises(DamagedFile, match="is damaged"):
        VectorIndex.load(path)


def test_embedding_checkpoint_refuses_damage(tmp_path):
    from embed_synth import synthetic_dataset

    from core.embed.checkpoint import load_checkpoint, save_checkpoint
    from core.embed.ion import ION, IONConfig

    _ds, vocab = synthetic_dataset()
    model = ION(IONConfig(vocab_size=len(vocab), region_dim=16, d_model=16, layers=1, heads=2, k1=4, k2=2, d_out=16, max_words=8))
    path = save_checkpoint(tmp_path / "model.pt", model, vocab)
    assert load_checkpoint(path).model.config.d_model == 16
    flip_byte(path, offset=len(path.read_bytes()) // 2)
    with pytest.raises(ValueError, match=r"embedding checkpoint .*model.pt is damaged \(hash mismatch\); train the model again"):
        load_checkpoint(path)
    save_checkpoint(path, model, vocab)
    truncate(path, 0.9)
    with pytest.raises(ValueError, match="is damaged"):
        load_checkpoint(path)


def test_matcher_checkpoint_refuses_damage(tmp_path):
    from core.matching.registry import build_scorer
    from core.matching.service import load_matcher, save_matcher

    scorer = build_scorer("early", "auto", region_dim=8)
    path = save_matcher(tmp_path / "m.pt", scorer)
    assert load_matcher(path).name == "early"
    flip_byte(path, offset=len(path.read_bytes()) // 2)
    with pytest.raises(ValueError, match=r"matcher checkpoint .* is damaged \(hash mismatch\)"):
        load_matcher(path)


def test_damaged_region_cache_files_are_extracted_again(engine, monkeypatch):
    from sqlalchemy import select

    from core.regions.extract import extract_catalog, load_regions
    from core.store import RegionSet, session_scope
    from tests.matching_world import build_catalog, use_colour_detector

    build_catalog(engine)
    use_colour_detector(monkeypatch)
    first = extract_catalog(engine=engine, ocr=False)
    assert first["computed"] == first["images"] > 2 and first["rebuilt"] == 0
    with session_scope(engine) as s:
        sets = s.execute(select(RegionSet.image_hash, RegionSet.features_path).where(RegionSet.detector == first["key"])
                         .order_by(RegionSet.image_hash)).all()
    (h1, rel1), (h2, rel2) = sets[0], sets[1]
    good = load_regions(h1, first["key"], engine=engine)[0].features.copy()
    flip_byte(resolve(rel1))
    truncate(resolve(rel2))
    with pytest.raises(DamagedFile):
        load_regions(h1, first["key"], engine=engine)  # read directly: refused, never served
    again = extract_catalog(engine=engine, ocr=False)
    assert (again["rebuilt"], again["computed"], again["cached"]) == (2, 2, first["images"] - 2)
    np.testing.assert_allclose(load_regions(h1, first["key"], engine=engine)[0].features, good)
    assert load_regions(h2, first["key"], engine=engine)[0].features.shape[0] == 2
    assert extract_catalog(engine=engine, ocr=False)["computed"] == 0


def test_a_runs_damaged_index_is_refused_with_the_rebuild_command_and_the_text_index_rebuilt(engine):
    from core.demo import build_world
    from core.errors import RetrievalError
    from core.retrieval import train_run
    from core.retrieval.catalog import load_catalog_ads
    from core.retrieval.index import build_index, load_index
    from core.retrieval.phrases import build_text_index, load_text_index, text_index_path
    from core.runs import get_run

    build_world(n_ads=40, n_users=50, seed=0, engine=engine)
    run = get_run(train_run("text", engine=engine), engine=engine)
    path = resolve(run["index_path"])
    flip_byte(path)
    with pytest.raises(RetrievalError, match=rf"the index file of model run {run['id']} .*is damaged \(hash mismatch\); "
                                             rf"rebuild it with `python -m core index --run {run['id']} --rebuild`"):
        load_index(run)
    assert build_index(run["id"], rebuild=True, engine=engine)["total"] == 40
    assert len(load_index(get_run(run["id"], engine=engine))) == 40

    cat = load_catalog_ads(engine=engine)
    build_text_index(run["id"], cat.ids, cat.texts)
    truncate(text_index_path(run["id"]))
    rebuilt = load_text_index(run["id"])  # cheap to rebuild from the ad texts: rebuilt, not served damaged
    assert rebuilt is not None and sorted(rebuilt.ids) == sorted(cat.ids)
    assert json.loads(seal_path(text_index_path(run["id"])).read_text())["size"] == text_index_path(run["id"]).stat().st_size
