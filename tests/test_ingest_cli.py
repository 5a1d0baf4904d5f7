"""`python -m core ingest ...`: one JSON object with --json, exit 1 on rejected rows, 2 on unusable input."""

from __future__ import annotations

import json

import pytest
from ingest_data import coco_dataset, write_csv, write_images
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.cli import app
from core.store import Ad, Impression, User, get_engine, session_scope

runner = CliRunner()


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, [*args, "--json"])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object on stdout
    return result.exit_code, json.loads(lines[0])


def count(model) -> int:
    with session_scope(get_engine()) as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.fixture
def files(tmp_path, home):
    names = write_images(tmp_path / "imgs", 3)
    manifest = write_csv(tmp_path / "ads.csv", ["ad_id", "text", "image", "category"],
                         [[f"a{i}", f"ad number {i}", n, "shoes" if i % 2 else "bags"] for i, n in enumerate(names)])
    users = write_csv(tmp_path / "users.csv", ["user_id", "age", "city"], [["u1", "30", "Oslo"], ["u2", "41", "Bergen"]])
    clicks = write_csv(tmp_path / "clicks.csv", ["user_id", "ad_id", "clicked", "timestamp"],
                       [["u1", "a0", "1", "2024-01-01T10:00:00Z"], ["u2", "a1", "0", "2024-01-01T11:00:00Z"]])
    return {"dir": tmp_path, "images": tmp_path / "imgs", "manifest": manifest, "users": users, "clicks": clicks}


@pytest.mark.both_backends
def test_cli_imports_ads_users_clicks_as_json(files):
    code, out = run_json("ingest", "ads", str(files["manifest"]), "--images", str(files["images"]))
    assert code == 0 and out["ok"] is True and (out["imported"], out["skipped"], out["rejected"]) == (3, 0, 0)
    code, out = run_json("ingest", "ads", str(files["manifest"]), "--images", str(files["images"]))
    assert code == 0 and (out["imported"], out["skipped"]) == (0, 3)
    code, out = run_json("ingest", "users", str(files["users"]))
    assert code == 0 and out["imported"] == 2 and out["details"]["created"] == 2
    code, out = run_json("ingest", "clicks", str(files["clicks"]))
    assert code == 0 and out["imported"] == 2 and out["details"]["clicks"] == 1
    assert (count(Ad), count(User), count(Impression)) == (3, 2, 2)


def test_cli_rejection_exits_1_with_every_bad_row(files):
    bad = write_csv(files["dir"] / "bad.csv", ["ad_id", "text", "image", "category"],
                    [["x1", "ok", "img0.png", "c"], ["x2", "", "img1.png", "c"], ["x3", "no file", "gone.png", "c"]])
    code, out = run_json("ingest", "ads", str(bad), "--images", str(files["images"]))
    assert code == 1 and out["ok"] is False and out["imported"] == 0 and out["rejected"] == 2
    assert [(e["row"], e["column"]) for e in out["errors"]] == [(3, "text"), (4, "image")]
    assert count(Ad) == 0
    code, out = run_json("ingest", "clicks", str(files["clicks"]))  # no users or ads yet
    assert code == 1 and {e["row"] for e in out["errors"]} == {2, 3}
    # text mode: a readable summary, same exit code
    result = runner.invoke(app, ["ingest", "ads", str(bad), "--images", str(files["images"])])
    assert result.exit_code == 1 and "row 3, column 'text': text is empty" in result.stdout


def test_cli_unusable_input_exits_2_with_message(files):
    code, out = run_json("ingest", "ads", str(files["dir"] / "missing.csv"), "--images", str(files["images"]))
    assert code == 2 and out["ok"] is False and "not found" in out["error"]
    typo = write_csv(files["dir"] / "typo.csv", ["user_id", "ad_id", "clickd", "timestamp"], [["u1", "a0", "1", "2024-01-01"]])
    code, out = run_json("ingest", "clicks", str(typo))
    assert code == 2 and "did you mean 'clicked'?" in out["error"]


def test_cli_coco(tmp_path, home):
    coco = coco_dataset(tmp_path / "coco")
    code, out = run_json("ingest", "coco", "--instances", str(coco["instances"]), "--captions", str(coco["captions"]),
                         "--images", str(coco["images"]), "--unseen-categories", "1", "--seed", "2")
    assert code == 0 and out["imported"] == 9 and out["details"]["excluded_multi_category"] == 3
    assert len(out["details"]["unseen_categories"]) == 1
    code, out = run_json("ingest", "coco", "--instances", str(coco["instances"]), "--captions", str(coco["captions"]),
                         "--images", str(coco["images"]))  # default 20 held out: more than this small set has
    assert code == 2 and "leaves no category" in out["error"]
