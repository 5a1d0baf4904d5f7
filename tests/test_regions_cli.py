"""`python -m core regions | extract | regions-eval`: JSON output and clear errors (exit 2) on bad input.

The detector here is a YOLOv8n the test builds itself (untrained: boxes are meaningless but real,
and it runs in a fraction of a second), so the tests exercise the whole path quickly.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from core.cli import app

runner = CliRunner()
TEXT = "Fresh coffee mug for slow mornings"


@pytest.fixture(scope="module")
def yolo_pt(tmp_path_factory):
    from core.regions.yolo import ultralytics_yolo

    path = tmp_path_factory.mktemp("weights") / "tiny-yolov8n.pt"
    ultralytics_yolo()("yolov8n.yaml").save(str(path))
    return path


def _save(tmp_path, name: str, img: Image.Image, **kw) -> str:
    path = tmp_path / name
    img.save(path, **kw)
    return str(path)


def _photo(size=(320, 200)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _regions(image: str, yolo_pt, *extra: str, text: str = TEXT):
    return _invoke("regions", image, "--text", text, "--weights", str(yolo_pt), "--conf", "0", "--no-ocr", "--json", *extra)


def test_regions_json(tmp_path, home, yolo_pt):
    res = _regions(_save(tmp_path, "a.png", _photo()), yolo_pt, "--k1", "8", "--k2", "3")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] and out["backend"] == "yolo" and out["device"].startswith("cpu") and "requested" in out["reason"]
    assert out["detector"].startswith("yolo/tiny-yolov8n.pt@") and out["image"]["width"] == 320
    assert out["keywords"] == ["fresh", "coffee", "mug", "slow", "mornings"]
    scored = [b for b in out["boxes"] if b["rank_after"] is not None]
    assert len(scored) == 8 and sum(b["kept"] for b in out["boxes"]) == 3
    assert sorted(b["rank_after"] for b in scored) == list(range(8))
    for b in out["boxes"]:
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 200
        assert set(b) >= {"label", "confidence", "clue", "rank_before", "rank_after", "change", "kept"}
    assert {"detect_s", "clues_s"} <= set(out["timing"])


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P", "RGBA", "L", "LA"])
def test_unusual_pixel_formats_work(tmp_path, home, yolo_pt, mode):
    img = _photo((160, 120))
    img = img.convert("I;16") if mode == "I;16" else img.convert(mode)
    ext = "jpg" if mode == "CMYK" else "png"
    res = _regions(_save(tmp_path, f"x.{ext}", img), yolo_pt)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["image"]["width"] == 160


def test_exif_rotation_gif_tiny_and_huge(tmp_path, home, yolo_pt):
    img = _photo((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = json.loads(_regions(_save(tmp_path, "r.jpg", img, exif=exif), yolo_pt).stdout)
    assert (rotated["image"]["width"], rotated["image"]["height"]) == (100, 200)  # boxes are on the rotated picture
    assert all(b["box"][2] <= 100 and b["box"][3] <= 200 for b in rotated["boxes"])
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    anim = json.loads(_regions(str(gif), yolo_pt).stdout)
    assert anim["image"]["frames"] == 2 and anim["image"]["format"] == "GIF"
    tiny = json.loads(_regions(_save(tmp_path, "t.png", _photo((8, 8))), yolo_pt).stdout)
    assert tiny["ok"] and all(b["box"][2] <= 8 for b in tiny["boxes"])
    huge = json.loads(_regions(_save(tmp_path, "h.png", Image.new("RGB", (6000, 4000), (10, 120, 200))), yolo_pt).stdout)
    assert huge["image"]["width"] == 6000


def test_bad_inputs_exit_2(tmp_path, home, yolo_pt, monkeypatch):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not a picture")
    good = _save(tmp_path, "g.png", _photo())
    buf = io.BytesIO()
    _photo().save(buf, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    notmodel = tmp_path / "weights.pt"
    notmodel.write_bytes(b"\x00" * 100)
    cases = [
        (_regions(str(junk), yolo_pt), "not an image"),
        (_regions(str(cut), yolo_pt), "truncated"),
        (_regions(str(tmp_path / "missing.png"), yolo_pt), "not found"),
        (_regions(good, yolo_pt, text=""), "text is empty"),
        (_regions(good, yolo_pt, text="🎉🔥 !!"), "no words"),
        (_invoke("regions", good, "--text", TEXT, "--weights", str(tmp_path / "nope.pt"), "--json"), "not found"),
        (_invoke("regions", good, "--text", TEXT, "--weights", str(notmodel), "--json"), "not a usable YOLO model"),
        (_invoke("regions", good, "--text", TEXT, "--detector", "detr", "--json"), "unknown detector"),
        (_invoke("regions", good, "--text", TEXT, "--detector", "yolo", "--weights", "yolov99z.pt", "--json"), "no network"),
    ]
    monkeypatch.setenv("ADLENS_MAX_IMAGE_PIXELS", "10000")
    from core.config import get_settings

    get_settings.cache_clear()
    cases.append((_regions(good, yolo_pt), "pixels"))
    for res, message in cases:
        assert res.exit_code == 2, res.output
        out = json.loads(res.stdout)
        assert out["ok"] is False and message in out["error"], out
        assert "Traceback" not in res.output


def test_text_mode_prints_a_table(tmp_path, home, yolo_pt):
    res = _invoke("regions", _save(tmp_path, "a.png", _photo()), "--text", TEXT, "--weights", str(yolo_pt), "--conf", "0",
                  "--k1", "4", "--k2", "2", "--no-ocr")
    assert res.exit_code == 0, res.output
    assert "before after" in res.stdout and "keywords: fresh, coffee, mug" in res.stdout
    assert res.stdout.count("(dropped)") == 2


def test_extract_and_eval_commands(home, engine, yolo_pt, monkeypatch):
    from core.filestore import put_image
    from core.store import Ad, session_scope

    with session_scope(engine) as s:
        for i in range(3):
            buf = io.BytesIO()
            _photo((64 + i, 64)).save(buf, format="PNG")
            sha = hashlib.sha256(buf.getvalue()).hexdigest()
            s.add(Ad(id=f"ad-{i}", text=TEXT, image_path=put_image(buf.getvalue(), sha, ".png"), image_hash=sha, content_hash=sha,
                     width=64 + i, height=64, truth={"product_box": [0, 0, 32, 32]} if i == 0 else {}))
    monkeypatch.setenv("ADLENS_YOLO_WEIGHTS", str(yolo_pt))
    from core.config import get_settings

    get_settings.cache_clear()
    first = json.loads(_invoke("extract", "--detector", "yolo", "--limit", "2", "--no-ocr", "--json").stdout)
    assert (first["computed"], first["cached"], first["backend"]) == (2, 0, "yolo")
    again = json.loads(_invoke("extract", "--detector", "yolo", "--no-ocr", "--json").stdout)
    assert (again["computed"], again["cached"]) == (1, 2)
    report = json.loads(_invoke("regions-eval", "--detector", "yolo", "--json").stdout)
    # the untrained model finds nothing above the default confidence: no hit before or after
    assert report["ads"] == 1 and (report["top1_before_n"], report["top1_after_n"], report["hit_in_k1"]) == (0, 0, 0)
    assert (report["top1_before"], report["top1_after"], report["recall_at_k1"]) == (0.0, 0.0, 0.0)
    assert report["extraction"]["computed"] == 0  # served from the cache filled by `extract`
    assert _invoke("extract", "--limit", "-1", "--json").exit_code == 2
    bad_split = _invoke("regions-eval", "--split", "holdout", "--json")
    assert bad_split.exit_code == 2 and "--split" in json.loads(bad_split.stdout)["error"]
    no_run = _invoke("regions-eval", "--run", "999", "--json")
    assert no_run.exit_code == 2 and "999" in json.loads(no_run.stdout)["error"]
