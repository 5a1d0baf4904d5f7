"""Two writers at once lose nothing: two `python -m core ingest ads` processes importing different ads that share
categories, started together against one database (SQLite and PostgreSQL), both succeed and every ad is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ingest_data import png_bytes, write_csv
from sqlalchemy import func, select

from core.config import REPO_ROOT
from core.store import Ad, Category, get_engine, session_scope

N = 300  # ads per writer: enough that the two transactions overlap


def _count(model) -> int:
    with session_scope(get_engine()) as s:
        return int(s.scalar(select(func.count()).select_from(model)))


@pytest.mark.both_backends
def test_two_importers_at_once_lose_nothing(home, tmp_path):
    get_engine()  # migrated before the writers start
    procs = []
    for writer in ("a", "b"):
        folder = tmp_path / writer
        folder.mkdir()
        for i in range(N):
            (folder / f"{writer}{i}.png").write_bytes(png_bytes((40, 30), ("red", "green", "blue")[i % 3], seed=i))
        manifest = write_csv(tmp_path / f"{writer}.csv", ["ad_id", "text", "image", "category"],
                             [[f"{writer}-{i}", f"writer {writer} ad {i}", f"{writer}{i}.png", f"shared{i % 5}"] for i in range(N)])
        procs.append(subprocess.Popen([sys.executable, "-m", "core", "ingest", "ads", str(manifest), "--images", str(folder), "--json"],
                                      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()))
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        assert "database is locked" not in out + err
        assert json.loads(out.strip().splitlines()[-1])["imported"] == N
    assert _count(Ad) == 2 * N
    assert _count(Category) == 5  # both writers' categories merged, none twice
    with session_scope(get_engine()) as s:
        ids = set(s.scalars(select(Ad.id)))
    assert ids == {f"{w}-{i}" for w in "ab" for i in range(N)}
