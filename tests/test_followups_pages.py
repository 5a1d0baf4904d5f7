"""Issue 14 follow-ups on the pages: the Attention legend's literal ``R<index>`` survives its HTML markdown."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT
from tests.retrieval_world import world


@pytest.fixture
def w(tmp_path_factory, monkeypatch):
    return world(tmp_path_factory.getbasetemp(), monkeypatch)


def test_attention_legend_shows_r_index_as_text(w):  # noqa: ARG001 - the world with an ION run
    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "6_Attention.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    legend = [m for m in at.markdown if "SCA score" in str(m.value)]
    assert len(legend) == 1 and legend[0].proto.allow_html
    body = str(legend[0].value)
    assert "label = R&lt;index&gt; and the SCA score" in body and "<index>" not in body  # escaped: the browser shows R<index>
