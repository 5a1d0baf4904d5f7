"""An unreadable creative is left out of an image model (counted, named, shown), never indexed as a blank picture."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.filestore import resolve
from core.retrieval.catalog import load_ad_images, load_catalog_ads, readable_ads, unreadable_warning
from core.store import Ad, session_scope


@pytest.fixture
def broken_world(engine):
    from core.demo import build_world

    build_world(n_ads=40, n_users=50, seed=0, engine=engine)
    with session_scope(engine) as s:
        rows = s.execute(select(Ad.id, Ad.image_path).order_by(Ad.id)).all()
    broken = {ad_id: path for ad_id, path in rows[3:5]}
    for path in broken.values():
        resolve(path).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    sharing = sorted(ad_id for ad_id, path in rows if path in broken.values())  # ads sharing a broken file are broken too
    return engine, sharing


def test_unreadable_creatives_are_none_not_blank(broken_world):
    engine, broken = broken_world
    cat = load_catalog_ads(engine=engine)
    images = load_ad_images(cat.image_paths)
    assert sorted(a for a, img in zip(cat.ids, images, strict=True) if img is None) == broken
    kept, imgs, left_out = readable_ads(cat)
    assert left_out == broken and len(kept) == len(imgs) == len(cat) - len(broken)
    assert not set(kept.ids) & set(broken) and list(kept.labels) == [cat.labels[cat.ids.index(a)] for a in kept.ids]


def test_image_baseline_leaves_unreadable_creatives_out_and_says_so(broken_world):
    from core.retrieval import train_run
    from core.retrieval.index import build_index, load_index
    from core.runs import get_run

    engine, broken = broken_world
    run = get_run(train_run("image", engine=engine), engine=engine)
    assert run["status"] == "done", run["message"]
    assert run["metrics"]["unreadable"] == {"count": len(broken), "ad_ids": broken}
    assert unreadable_warning(len(broken)) in run["metrics"]["warnings"]
    assert unreadable_warning(2) == "2 creatives could not be read and were left out."
    index = load_index(run)
    assert len(index) == 40 - len(broken) and not any(a in index for a in broken)
    rebuilt = build_index(run["id"], rebuild=True, engine=engine)
    assert rebuilt["unreadable"] == len(broken) and rebuilt["total"] == 40 - len(broken)
    after = get_run(run["id"], engine=engine)["metrics"]
    assert after["warnings"].count(unreadable_warning(len(broken))) == 1 and after["unreadable"]["ad_ids"] == broken

    from streamlit.testing.v1 import AppTest

    from core.config import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "4_Evaluation.py"), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [str(w.value) for w in at.warning]
    assert any(f"{len(broken)} creatives could not be read and were left out" in w for w in shown), shown


def test_text_baseline_does_not_need_the_creatives(broken_world):
    from core.retrieval import train_run
    from core.retrieval.index import load_index
    from core.runs import get_run

    engine, broken = broken_world
    run = get_run(train_run("text", engine=engine), engine=engine)
    assert run["status"] == "done" and len(load_index(run)) == 40
    assert run["metrics"].get("unreadable", {}).get("count", 0) == 0
