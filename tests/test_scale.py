"""Large catalogues: demo-world impression scaling, streamed + resumable extraction and embedding, ETA text."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.demo import DemoKnobs, build_world
from core.demo.world import scale_impressions
from core.eta import eta_seconds, eta_text, format_seconds
from core.regions.base import DetectionResult


def test_impressions_scale_down_with_the_catalogue_only_beyond_the_default_world():
    assert scale_impressions(2000, DemoKnobs()).impressions_per_ad == 500  # the default world keeps its 500
    assert scale_impressions(120, DemoKnobs()).impressions_per_ad == 500
    assert scale_impressions(120, DemoKnobs(impressions_per_ad=250)).impressions_per_ad == 250  # explicit knobs untouched
    assert scale_impressions(10_000, DemoKnobs()).impressions_per_ad == 100
    assert scale_impressions(100_000, DemoKnobs()).impressions_per_ad == 10
    assert scale_impressions(10_000_000, DemoKnobs()).impressions_per_ad == 10  # never under 10 automatically
    assert scale_impressions(100_000, DemoKnobs(), 37).impressions_per_ad == 37  # asked for: taken as is
    with pytest.raises(ValueError, match="impressions per ad"):
        scale_impressions(100, DemoKnobs(), 0)


def test_world_with_few_impressions_per_ad(engine):
    from core.store import Impression, PackageAd, session_scope

    summary = build_world(n_ads=60, n_users=300, seed=3, engine=engine, impressions_per_ad=4,
                          knobs=DemoKnobs(n_packages=2, package_audience=20))
    assert summary["impressions_per_ad"] == 4 and set(summary["stage_seconds"]) == {"images", "users", "clicks", "db"}
    with session_scope(engine) as s:
        in_packages = s.scalar(select(func.count(func.distinct(PackageAd.ad_id))))
        ordinary = s.scalar(select(func.count()).select_from(Impression).where(Impression.ad_id.not_in(select(PackageAd.ad_id))))
    assert in_packages > 0
    assert ordinary == (60 - in_packages) * 2 * 4  # 4 users per ordinary ad and period


def test_eta_text():
    assert eta_seconds(0, 10, 1.0) is None and eta_text(0, 10, 1.0) == ""
    assert eta_seconds(25, 100, 5.0) == pytest.approx(15.0)
    assert eta_text(25, 100, 5.0) == " (5.0/s, ETA 15s)"
    assert format_seconds(3725) == "1h02m" and format_seconds(125) == "2m05s"


# -- resumable extraction ----------------------------------------------------------------------------------------------


class ColourDetector:
    """One box per image whose feature is the image's colour; counts the images it sees."""

    backend = "offline"
    version = "colour-test/1"
    device = "cpu"
    feature_dim = 3

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def detect(self, images, *, conf=0.05, iou=0.5, max_det=50):  # noqa: ARG002
        out = []
        for img in images:
            colour = img.getpixel((0, 0))
            self.seen.append(colour)
            out.append(DetectionResult(boxes=np.array([[1, 2, 30, 40]], np.float32), confidences=np.array([0.9], np.float32),
                                       labels=["thing"], features=np.array([colour], np.float32), image_size=img.size,
                                       detector=self.version, backend=self.backend, device=self.device))
        return out


@pytest.fixture
def colour_catalog(db_engine):
    from core.filestore import put_image
    from core.store import Ad, session_scope

    with session_scope(db_engine) as s:
        for i in range(23):
            buf = io.BytesIO()
            Image.new("RGB", (48, 48), (i * 10, 255 - i * 10, 7)).save(buf, format="PNG")
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            s.add(Ad(id=f"ad-{i:03d}", text=f"ad {i}", image_path=put_image(data, sha, ".png"), image_hash=sha, content_hash=sha,
                     width=48, height=48))
    return db_engine


def test_extraction_stops_cleanly_and_resumes_with_the_rest(colour_catalog):
    from core.regions.extract import extract_catalog, load_regions
    from core.store import Ad, RegionSet, session_scope

    det = ColourDetector()
    asked = []
    messages = []

    def stop_after_three() -> bool:
        asked.append(1)
        return len(asked) > 3

    first = extract_catalog(det, batch_size=4, ocr=False, engine=colour_catalog, should_stop=stop_after_three,
                            progress=lambda d, t, m: messages.append((d, t, m)))
    assert first["stopped"] is True and first["computed"] == 12 and first["remaining"] == 11 and len(det.seen) == 12
    assert any("ETA" in m for _d, _t, m in messages) and messages[-1][:2] == (12, 23)
    with session_scope(colour_catalog) as s:
        assert s.scalar(select(func.count()).select_from(RegionSet)) == 12

    det2 = ColourDetector()
    second = extract_catalog(det2, batch_size=4, ocr=False, engine=colour_catalog)
    assert second["stopped"] is False and second["cached"] == 12 and second["computed"] == 11 and second["remaining"] == 0
    assert len(det2.seen) == 11 and not set(det.seen) & set(det2.seen)  # only the rest was processed
    with session_scope(colour_catalog) as s:
        hashes = s.scalars(select(Ad.image_hash).order_by(Ad.id)).all()
    for i, image_hash in enumerate(hashes):
        regions, _ocr = load_regions(image_hash, first["key"], engine=colour_catalog)
        assert regions.features.tolist() == [[i * 10, 255 - i * 10, 7]]
    third = extract_catalog(ColourDetector(), batch_size=4, ocr=False, engine=colour_catalog)
    assert (third["computed"], third["cached"]) == (0, 23)


# -- streamed, resumable embedding -------------------------------------------------------------------------------------


def test_embedding_streams_in_parts_and_resumes(engine, tmp_path, monkeypatch):
    from core.embed.pipeline import build_model, embed_ads
    from core.embed.text import Vocabulary, tokenize
    from core.retrieval.catalog import load_catalog_ads
    from core.scale import embed_catalog_stream, load_parts
    from tests.retrieval_world import fake_image_regions, patch_regions

    patch_regions(monkeypatch)
    build_world(n_ads=40, n_users=100, seed=1, engine=engine, knobs=DemoKnobs(n_categories=8, n_packages=0), impressions_per_ad=2)
    cat = load_catalog_ads(engine=engine)
    vocab = Vocabulary.build([[w.text for w in tokenize(t)] for t in cat.texts])
    model = build_model("ion", len(vocab), 48, seed=0, d_model=32, layers=1, heads=2, k1=5, k2=3)
    model.eval()
    out = tmp_path / "vectors"
    calls = []
    first = embed_catalog_stream(model, vocab, out, engine=engine, chunk=12, should_stop=lambda: len(calls.append(1) or calls) > 2)
    assert first["stopped"] is True and first["computed"] == 24 and len(list(out.glob("part-*.npy"))) == 2
    second = embed_catalog_stream(model, vocab, out, engine=engine, chunk=12)
    assert (second["reused"], second["computed"], second["stopped"]) == (24, 16, False)
    ids, vectors = load_parts(out)
    assert ids == cat.ids and vectors.shape[0] == 40

    from core.filestore import resolve

    regions = [fake_image_regions(Image.open(resolve(p))) for p in cat.image_paths]
    whole = embed_ads(model, vocab, cat.texts, [r.features for r in regions], [r.confidences for r in regions], device="cpu")
    np.testing.assert_allclose(vectors, whole, atol=1e-5)  # chunked == all at once


def test_index_embedding_in_chunks_equals_one_pass(tmp_path_factory, monkeypatch):
    from core.progress import no_progress
    from core.retrieval.catalog import load_catalog_ads
    from core.retrieval.index import embed_in_chunks
    from core.retrieval.models import embed_readable_rows
    from core.runs import get_run
    from core.store import get_engine
    from tests.retrieval_world import world

    w = world(tmp_path_factory.getbasetemp(), monkeypatch)
    engine = get_engine()
    run = get_run(w["ion"], engine=engine)
    cat = load_catalog_ads(engine=engine)
    seen = []
    chunked_cat, chunked, left = embed_in_chunks(run, cat, engine, lambda _d, _t, m: seen.append(m), chunk=50)
    whole_cat, whole, _ = embed_readable_rows(run, cat, engine, no_progress)
    assert len(cat) == 120 and chunked_cat.ids == whole_cat.ids == cat.ids and left == []
    assert seen == ["embed: 50 of 120 ads", "embed: 100 of 120 ads", "embed: 120 of 120 ads"]
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_default_world_parameters_are_unchanged():
    from core.demo.plan import resolve_knobs
    from core.demo.world import _params

    for n_ads in (120, 2000):  # the tests' worlds and the default world: same knobs, so the same stored world and impressions
        assert resolve_knobs(n_ads, scale_impressions(n_ads, DemoKnobs())) == resolve_knobs(n_ads, DemoKnobs())
    assert _params(2000, 20000, 0, resolve_knobs(2000, scale_impressions(2000, DemoKnobs())))["knobs"]["impressions_per_ad"] == 500


# -- catalogue-sized IN lists ------------------------------------------------------------------------------------------


def test_catalogue_sized_id_lists_are_queried_in_parts(engine, monkeypatch):
    """Training at 100k ads loads every ad and its cached regions by id: with SQLite held to 999 bound parameters (the
    smallest limit of any build), 2,500 ids still load, in id order, with their regions."""
    import sqlite3

    from sqlalchemy import event, insert

    from core.regions import extract
    from core.retrieval import regions as region_reads
    from core.retrieval.catalog import ad_records, load_catalog_ads
    from core.store import Ad, Region, RegionSet, session_scope

    n = 2500
    with session_scope(engine) as s:
        s.execute(insert(Ad), [{"id": f"ad-{i:05d}", "text": f"ad {i}", "image_path": f"images/{i}.png", "image_hash": f"h{i:05d}",
                                "content_hash": f"c{i}", "width": 8, "height": 8} for i in range(n)])
        s.execute(insert(RegionSet), [{"image_hash": f"h{i:05d}", "detector": "k", "feature_dim": 2, "features_path": f"arrays/{i}.npy"}
                                      for i in range(n)])
        set_ids = dict(s.execute(select(RegionSet.image_hash, RegionSet.id)).all())
        s.execute(insert(Region), [{"region_set_id": set_ids[f"h{i:05d}"], "rank": 0, "x1": 0, "y1": 0, "x2": i % 7 + 1, "y2": 1,
                                    "confidence": 0.5, "label": "thing"} for i in range(n)])

    def small_limit(dbapi_connection, _record):
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    event.listen(engine, "connect", small_limit)
    engine.dispose()  # new connections get the limit
    with pytest.raises(Exception, match="too many SQL variables"):  # the limit holds: one IN list of them all fails
        with session_scope(engine) as s:
            s.execute(select(Ad.id).where(Ad.id.in_([f"ad-{i:05d}" for i in range(n)]))).all()

    ids = [f"ad-{i:05d}" for i in reversed(range(n))]
    cat = load_catalog_ads(ids, engine=engine)
    assert cat.ids == sorted(ids) and len(cat.image_hashes) == n
    assert set(ad_records(ids[:1200], engine)) == set(ids[:1200])
    rows, images, cached = extract._cache_state(engine, "k", ids, limit=10)
    assert [r[0] for r in rows] == sorted(ids)[:10] and len(images) == 10 and len(cached) == 10
    monkeypatch.setattr(extract, "extract_catalog", lambda *_a, **_k: {"key": "k"})
    monkeypatch.setattr(region_reads, "get_array", lambda rel: np.full((1, 2), int(rel.split("/")[1][:-4]), np.float32))
    key, dim, found = region_reads.regions_for_ads(cat.ids, cat.image_hashes, None, engine=engine)
    assert (key, dim, len(found)) == ("k", 2, n)
    assert found["h01234"].boxes.tolist() == [[0, 0, 1234 % 7 + 1, 1]] and found["h01234"].labels == ["thing"]
    assert found["h02499"].features.tolist() == [[2499, 2499]]
