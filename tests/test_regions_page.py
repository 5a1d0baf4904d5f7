"""app_pages/2_Regions.py under AppTest: a catalog ad with its product box, sliders, empty catalog, upload mode."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image
from skimage import data
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT

PAGE = str(REPO_ROOT / "app_pages" / "2_Regions.py")
CUP = [165, 10, 400, 300]


@pytest.fixture
def coffee_ad(engine):
    from core.filestore import put_image
    from core.store import Ad, session_scope

    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, format="JPEG", quality=90)
    raw = buf.getvalue()
    sha = hashlib.sha256(raw).hexdigest()
    with session_scope(engine) as s:
        s.add(Ad(id="demo-coffee", text="A fresh cup of espresso", image_path=put_image(raw, sha, ".jpg"), image_hash=sha,
                 content_hash=sha, width=600, height=400, source="demo", truth={"product_box": CUP}))
    return "demo-coffee"


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_on_a_catalog_ad(coffee_ad, monkeypatch):
    monkeypatch.setenv("ADLENS_DETECTOR", "offline")
    from core.config import get_settings

    get_settings.cache_clear()
    at = _ok(AppTest.from_file(PAGE, default_timeout=180).run())
    info = " ".join(i.value for i in at.info)
    assert "**offline** detector" in info and "offline-effnetlite0" in info and "cpu" in info
    assert "`espresso`" in at.markdown[0].value or any("`espresso`" in m.value for m in at.markdown)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    table = at.dataframe[0].value
    assert len(table) >= 2 and list(table["rank after"]) == list(range(1, len(table) + 1))
    assert set(table["change"].str[0]) <= {"▲", "▼", "="}
    assert (table["kept"] == "yes").sum() == min(10, len(table))
    assert any("ground-truth product box" in c.value for c in at.caption) and any("generated data" in c.value for c in at.caption)
    # a smaller k2 keeps fewer boxes, without detecting again
    at.sidebar.slider(key="r_k2").set_value(2)
    at = _ok(at.run())
    table = at.dataframe[0].value
    assert (table["kept"] == "yes").sum() == 2
    # upload mode waits for a file
    at.radio(key="r_source").set_value("Upload")
    at = _ok(at.run())
    assert any("Upload a creative" in i.value for i in at.info)


def test_page_on_an_empty_catalog(home):
    at = _ok(AppTest.from_file(PAGE, default_timeout=60).run())
    assert any("catalog is empty" in i.value for i in at.info)


def test_region_figures_embed_the_creative_as_a_jpeg_not_a_pixel_matrix():
    """Both region figures (Regions; Similar ads and Attention) draw the creative from an embedded JPEG in pixel
    coordinates: a pixel matrix made the figure JSON 1.1 MB per 512 px creative."""
    import base64
    import io

    from PIL import Image

    from core.regions.figure import regions_figure
    from ui.runs import regions_figure as run_regions_figure

    img = Image.new("RGB", (512, 384), (10, 200, 30))
    for fig in (regions_figure(img, [], title="t"), run_regions_figure(img, [{"index": 0, "box": [10, 20, 50, 60], "kept": True}])):
        trace = fig.data[0]
        assert trace.type == "image" and trace.z is None and trace.source.startswith("data:image/jpeg;base64,")
        shown = Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1])))
        assert shown.size == (512, 384) and all(abs(a - b) <= 3 for a, b in zip(shown.getpixel((100, 100)), (10, 200, 30), strict=True))
        assert len(fig.to_json()) < 20_000
