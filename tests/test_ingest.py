"""Importers: manifest + images, COCO, clicks, users. All-or-nothing, row numbers, idempotent re-import."""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from ingest_data import (
    COCO_CATEGORIES,
    bomb_png,
    coco_dataset,
    files_under,
    jpeg_with_orientation,
    png_bytes,
    write_csv,
    write_images,
    zip_folder,
)
from sqlalchemy import func, select, text

from core.filestore import resolve
from core.images import decode_image
from core.ingest.adrows import content_hash, detect_lang
from core.ingest.clicks import import_clicks, sqlite_datetime_text
from core.ingest.coco import choose_unseen, import_coco, orient_box
from core.ingest.common import split_for
from core.ingest.manifest import default_split, import_manifest
from core.ingest.report import ImportRejected
from core.ingest.users import import_users, parse_value
from core.store import Ad, Category, ImportRun, Impression, User, session_scope

HEADER = ["ad_id", "text", "image", "category"]


def counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Ad, Category, User, Impression, ImportRun)}


def errors_by_row(exc: ImportRejected) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in exc.report.errors:
        out[e.row] = (out.get(e.row, "") + " | " + e.reason).strip(" |")
    return out


@pytest.fixture
def catalog(tmp_path, engine):
    """A folder of 5 images and a manifest of 5 good rows (two Chinese)."""
    folder = tmp_path / "images"
    names = write_images(folder, 5)
    rows = [
        ["a1", "Red running shoes, light and fast", names[0], "shoes"],
        ["a2", "Leather handbag for work", names[1], "bags"],
        ["a3", "轻便跑鞋 限时优惠", names[2], "shoes"],
        ["a4", "Ceramic coffee mug", names[3], "mugs"],
        ["a5", "双肩包 大容量", names[4], "bags"],
    ]
    manifest = write_csv(tmp_path / "manifest.csv", HEADER, rows)
    return {"folder": folder, "names": names, "rows": rows, "manifest": manifest}


# --- manifest ------------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_manifest_happy_path_stores_rows_files_and_run(catalog, engine, home):
    report = import_manifest(catalog["manifest"], catalog["folder"], engine=engine)
    assert (report.imported, report.skipped, report.rejected) == (5, 0, 0)
    assert report.details["categories_created"] == 3
    assert counts(engine)["ads"] == 5 and counts(engine)["categories"] == 3 and counts(engine)["import_runs"] == 1
    with session_scope(engine) as s:
        ads = {a.id: a for a in s.scalars(select(Ad))}
        cats = {c.id: c for c in s.scalars(select(Category))}
        run = s.scalars(select(ImportRun)).one()
        for row in catalog["rows"]:
            ad = ads[row[0]]
            original = (catalog["folder"] / row[2]).read_bytes()
            assert ad.text == row[1] and cats[ad.category_id].name == row[3] and cats[ad.category_id].source == "manifest"
            assert ad.image_hash == hashlib.sha256(original).hexdigest()
            assert resolve(ad.image_path).read_bytes() == original  # the ORIGINAL bytes are kept
            assert ad.image_path.endswith(".png")
            assert (ad.width, ad.height) == decode_image(original).size
            assert ad.content_hash == content_hash(row[1], ad.image_hash, row[3])
            assert ad.split == default_split(row[0]) and ad.source == "manifest"
        assert [ads[i].lang for i in ("a1", "a2", "a3", "a4", "a5")] == ["en", "en", "zh", "en", "zh"]
        assert (run.kind, run.imported, run.rejected) == ("ads", 5, 0)
    assert len(files_under(home / "images")) == 5


def test_manifest_parquet_zip_with_top_folder_split_and_lang_columns(tmp_path, engine):
    folder = tmp_path / "pics"
    names = write_images(folder, 3)
    archive = zip_folder(folder, tmp_path / "pics.zip", top="pics")
    frame = pd.DataFrame({"ad_id": [10, 11, 12], "text": ["one", "two", "three"], "image": names,
                          "category": ["x", "x", "y"], "split": ["test", "VAL", ""], "lang": ["fr", "", ""]})
    frame.to_parquet(tmp_path / "m.parquet")
    report = import_manifest(tmp_path / "m.parquet", archive, engine=engine, source="upload")
    assert report.imported == 3
    with session_scope(engine) as s:
        ads = {a.id: a for a in s.scalars(select(Ad))}
    assert set(ads) == {"10", "11", "12"}
    assert (ads["10"].split, ads["11"].split, ads["12"].split) == ("test", "val", default_split("12"))
    assert (ads["10"].lang, ads["11"].lang) == ("fr", "en")
    assert {a.source for a in ads.values()} == {"upload"}


def test_exif_rotation_gives_displayed_width_height(tmp_path, engine):
    folder = tmp_path / "imgs"
    folder.mkdir()
    raw = jpeg_with_orientation((60, 20), 6)
    (folder / "rot.jpg").write_bytes(raw)
    manifest = write_csv(tmp_path / "m.csv", HEADER, [["r1", "rotated", "rot.jpg", "misc"]])
    import_manifest(manifest, folder, engine=engine)
    with session_scope(engine) as s:
        ad = s.get(Ad, "r1")
    assert (ad.width, ad.height) == (20, 60)
    assert ad.image_path.endswith(".jpg") and resolve(ad.image_path).read_bytes() == raw


@pytest.mark.both_backends
def test_bad_rows_are_all_reported_and_nothing_changes(catalog, engine, home):
    folder = catalog["folder"]
    (folder / "notes.png").write_text("this is not an image")
    whole = png_bytes((64, 64), "blue", seed=7)
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "empty.png").write_bytes(b"")
    n = catalog["names"]
    rows = [
        ["b1", "fine", n[0], "shoes"],  # row 2
        ["b2", "missing picture", "nowhere.png", "shoes"],  # 3
        ["b3", "not a picture", "notes.png", "shoes"],  # 4
        ["b4", "truncated", "cut.png", "shoes"],  # 5
        ["b5", "bomb", "bomb.png", "shoes"],  # 6
        ["b6", "   ", n[1], "bags"],  # 7 empty text
        ["b1", "duplicate id", n[2], "bags"],  # 8
        ["b7", "escape", "../secret.png", "bags"],  # 9
        ["b8", "no category", n[3], ""],  # 10
        ["b9", "bad split", n[4], "bags", "holdout"],  # 11
        ["b10", "empty file", "empty.png", "bags"],  # 12
        ["b11", "fine too", n[4], "bags"],  # 13
    ]
    manifest = write_csv(home.parent / "bad.csv", HEADER + ["split"], [r + [""] * (5 - len(r)) for r in rows])
    before = counts(engine)
    with pytest.raises(ImportRejected) as info:
        import_manifest(manifest, folder, engine=engine)
    got = errors_by_row(info.value)
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "not found" in got[3]
    assert "not an image" in got[4]
    assert "truncated" in got[5]
    assert "too large" in got[6] or "decompression bomb" in got[6]
    assert "text is empty" in got[7]
    assert "more than once" in got[8] and "row 2" in got[8]
    assert "inside the images folder" in got[9]
    assert "category is empty" in got[10]
    assert "holdout" in got[11]
    assert "empty" in got[12]
    assert info.value.report.rejected == 10 and info.value.report.imported == 0
    assert "nothing was imported" in str(info.value)
    assert counts(engine) == before
    assert files_under(home / "images") == []


@pytest.mark.both_backends
def test_failure_while_writing_removes_the_new_files(catalog, engine, home, monkeypatch):
    import core.ingest.adrows as adrows

    def broken(session, report):
        raise RuntimeError("disk full")

    monkeypatch.setattr(adrows, "record_run", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        import_manifest(catalog["manifest"], catalog["folder"], engine=engine)
    assert files_under(home / "images") == [] and counts(engine)["ads"] == 0 and counts(engine)["categories"] == 0


@pytest.mark.parametrize(
    ("header", "expect"),
    [
        (["ad_id", "txt", "image", "category"], ["missing column(s): 'text'", "'txt' (did you mean 'text'?)"]),
        (["ad_id", "text", "imgae", "catgory"], ["'image'", "'category'", "did you mean 'image'?", "did you mean 'category'?"]),
        (["ad_id", "text", "image"], ["missing column(s): 'category'"]),
        (["ad_id", "text", "image", "category", "splt"], ["unknown column(s): 'splt' (did you mean 'split'?)"]),
    ],
)
def test_missing_and_misspelt_columns_name_the_fix(tmp_path, engine, header, expect):
    write_images(tmp_path / "i", 1)
    manifest = write_csv(tmp_path / "m.csv", header, [["a", "b", "img0.png", "c", "d"][: len(header)]])
    with pytest.raises(ValueError) as info:
        import_manifest(manifest, tmp_path / "i", engine=engine)
    for part in expect:
        assert part in str(info.value)
    assert counts(engine)["ads"] == 0


def test_header_case_and_blank_lines_keep_spreadsheet_row_numbers(tmp_path, engine):
    write_images(tmp_path / "i", 2)
    (tmp_path / "m.csv").write_text("AD_ID, Text ,image,Category\na,one,img0.png,c\n\nb,,img1.png,c\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as info:
        import_manifest(tmp_path / "m.csv", tmp_path / "i", engine=engine)
    assert [(e.row, e.column) for e in info.value.report.errors] == [(4, "text")]


def test_non_utf8_csv_and_missing_sources_are_refused(tmp_path, engine):
    write_images(tmp_path / "i", 1)
    (tmp_path / "latin.csv").write_bytes("ad_id,text,image,category\nx,café crème,img0.png,drinks\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8.*line 2"):
        import_manifest(tmp_path / "latin.csv", tmp_path / "i", engine=engine)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        import_manifest(tmp_path / "absent.csv", tmp_path / "i", engine=engine)
    good = write_csv(tmp_path / "m.csv", HEADER, [["x", "t", "img0.png", "c"]])
    with pytest.raises(FileNotFoundError, match="images folder or zip not found"):
        import_manifest(good, tmp_path / "nope", engine=engine)
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a valid zip"):
        import_manifest(good, tmp_path / "fake.zip", engine=engine)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        import_manifest(tmp_path / "empty.csv", tmp_path / "i", engine=engine)
    assert counts(engine)["ads"] == 0


@pytest.mark.parametrize("evil", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:\\evil.png"])
def test_zip_slip_entries_are_refused_and_nothing_extracted(tmp_path, engine, home, evil):
    archive = tmp_path / "up" / "imgs.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("img0.png", png_bytes())
        zf.writestr(evil, png_bytes(color="blue"))
    manifest = write_csv(tmp_path / "m.csv", HEADER, [["x", "t", "img0.png", "c"]])
    with pytest.raises(ValueError) as info:
        import_manifest(manifest, archive, engine=engine)
    assert "refused" in str(info.value) and "outside" in str(info.value)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "up" / "evil.png").exists()
    assert files_under(home / "images") == [] and counts(engine)["ads"] == 0


@pytest.mark.both_backends
def test_reimport_is_idempotent_and_changed_content_is_rejected(catalog, engine, home):
    first = import_manifest(catalog["manifest"], catalog["folder"], engine=engine)
    second = import_manifest(catalog["manifest"], catalog["folder"], engine=engine)
    assert (first.imported, first.skipped) == (5, 0)
    assert (second.imported, second.skipped) == (0, 5)
    rows = [r[:] for r in catalog["rows"]]
    rows[2][1] = "a different text"
    rows.append(["a6", "new one", catalog["names"][0], "shoes"])
    changed = write_csv(home.parent / "changed.csv", HEADER, rows)
    with pytest.raises(ImportRejected) as info:
        import_manifest(changed, catalog["folder"], engine=engine)
    assert errors_by_row(info.value) == {4: "ad 'a3' already exists with different content (text, image or category)"}
    assert counts(engine)["ads"] == 5 and counts(engine)["import_runs"] == 2


def test_default_split_is_deterministic_and_about_80_10_10():
    ids = [f"ad-{i}" for i in range(5000)]
    first = [default_split(i) for i in ids]
    assert first == [default_split(i) for i in ids]
    share = Counter(first)
    assert abs(share["train"] / 5000 - 0.8) < 0.03
    assert abs(share["val"] / 5000 - 0.1) < 0.02 and abs(share["test"] / 5000 - 0.1) < 0.02


def test_detect_lang():
    assert detect_lang("Running shoes 50% off") == "en"
    assert detect_lang("nike 跑鞋") == "zh"


# --- COCO ----------------------------------------------------------------------------------------


@pytest.fixture
def coco(tmp_path):
    return coco_dataset(tmp_path / "coco")


@pytest.mark.both_backends
def test_coco_keeps_single_category_images_with_first_caption_and_boxes(coco, engine, home):
    report = import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=2, seed=0, engine=engine)
    assert report.imported == 9 and report.details["excluded_multi_category"] == 3 and report.details["kept"] == 9
    with session_scope(engine) as s:
        ads = {a.id: a for a in s.scalars(select(Ad))}
        names = {c.id: c.name for c in s.scalars(select(Category))}
    assert set(ads) == {f"coco-{i}" for i in coco["single"]}
    cat_names = dict(COCO_CATEGORIES)
    for image_id, (cat, boxes) in coco["single"].items():
        ad = ads[f"coco-{image_id}"]
        assert ad.text == f"caption {image_id * 10 + 1} of image {image_id} (1)"  # lowest caption id, stripped
        assert names[ad.category_id] == cat_names[cat] and ad.source == "coco"
        xyxy = [[float(x), float(y), float(x + w), float(y + h)] for x, y, w, h in boxes]
        largest = max(xyxy, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        assert ad.truth["product_box"] == largest and ad.truth["objects"] == xyxy
        assert (ad.width, ad.height) == decode_image((coco["images"] / f"{image_id:012d}.jpg").read_bytes()).size
    assert len(files_under(home / "images")) == 9


@pytest.mark.both_backends
def test_coco_unseen_categories_only_in_test_and_deterministic(coco, engine):
    report = import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=2, seed=5, engine=engine)
    with session_scope(engine) as s:
        unseen = set(s.scalars(select(Category.name).where(Category.unseen)))
        rows = s.execute(select(Ad.id, Ad.split, Category.name, Category.unseen).join(Category)).all()
    assert len(unseen) == 2 and set(report.details["unseen_categories"]) == unseen
    for ad_id, split, _name, is_unseen in rows:
        if is_unseen:
            assert split == "test"
        else:
            assert split == split_for(f"coco-split:5:{ad_id.removeprefix('coco-')}", 0.7, 0.1)
    present = sorted({cid for cid, _ in coco["single"].values()})
    assert choose_unseen(present, 2, 5) == choose_unseen(list(reversed(present)), 2, 5)
    assert len({frozenset(choose_unseen(present, 2, seed)) for seed in range(10)}) > 1
    # same seed again: identical, skipped; another seed would contradict the stored held-out flags
    again = import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=2, seed=5, engine=engine)
    assert (again.imported, again.skipped) == (0, 9)
    other = next(seed for seed in range(100) if choose_unseen(present, 2, seed) != choose_unseen(present, 2, 5))
    with pytest.raises(ValueError, match="different held-out"):
        import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=2, seed=other, engine=engine)


@pytest.mark.both_backends
def test_manifest_ads_of_a_held_out_category_go_to_test(coco, engine, tmp_path):
    import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=1, seed=0, engine=engine)
    with session_scope(engine) as s:
        held = s.scalars(select(Category.name).where(Category.unseen)).one()
    names = write_images(tmp_path / "extra", 2)
    rows = [["m1", "another one", names[0], held, ""], ["m2", "and another", names[1], held, "train"]]
    manifest = write_csv(tmp_path / "m.csv", HEADER + ["split"], rows)
    with pytest.raises(ImportRejected) as info:
        import_manifest(manifest, tmp_path / "extra", engine=engine)
    assert list(errors_by_row(info.value)) == [3] and "held out" in errors_by_row(info.value)[3]
    import_manifest(write_csv(tmp_path / "m1.csv", HEADER + ["split"], rows[:1]), tmp_path / "extra", engine=engine)
    with session_scope(engine) as s:
        assert s.get(Ad, "m1").split == "test"


def test_seen_coco_split_is_about_70_10_20():
    share = Counter(split_for(f"coco-split:0:{i}", 0.7, 0.1) for i in range(5000))
    assert abs(share["train"] / 5000 - 0.7) < 0.03 and abs(share["val"] / 5000 - 0.1) < 0.02
    assert abs(share["test"] / 5000 - 0.2) < 0.03


def test_coco_missing_image_rejects_everything(coco, engine, home):
    (coco["images"] / "000000000104.jpg").unlink()
    with pytest.raises(ImportRejected) as info:
        import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=1, engine=engine)
    assert errors_by_row(info.value) == {4: "image file '000000000104.jpg' not found in the images folder"}
    assert counts(engine)["ads"] == 0 and counts(engine)["categories"] == 0
    assert files_under(home / "images") == []


def test_coco_bad_json_structure_has_clear_messages(coco, engine, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        import_coco(bad, coco["captions"], coco["images"], engine=engine)
    bad.write_text('{"images": [], "categories": []}')
    with pytest.raises(ValueError, match="'annotations' list is missing"):
        import_coco(bad, coco["captions"], coco["images"], engine=engine)
    bad.write_text('{"images": [{"id": "x", "file_name": "a.jpg"}], "annotations": [], "categories": []}')
    with pytest.raises(ValueError, match=r"images\[0\] needs 'id'"):
        import_coco(bad, coco["captions"], coco["images"], engine=engine)
    with pytest.raises(ValueError, match="leaves no category"):
        import_coco(coco["instances"], coco["captions"], coco["images"], unseen_categories=6, engine=engine)
    assert counts(engine)["ads"] == 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_box_follows_exif_transpose(orientation):
    raw_size, box = (60, 40), (5, 8, 25, 18)
    decoded = decode_image(jpeg_with_orientation(raw_size, orientation, box)).image
    dark = np.asarray(decoded.convert("L")) < 128
    ys, xs = np.nonzero(dark)
    seen = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert np.allclose(orient_box(list(map(float, box)), orientation, *raw_size), seen, atol=1.0)


# --- users ---------------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_users_values_kept_as_given(tmp_path, engine):
    path = write_csv(tmp_path / "users.csv", ["user_id", "age", "score", "zip", "city", "vip"],
                     [["u1", "34", "0.75", "007", "Paris", ""], ["u2", "-2", "1e3", "12345", "北京", "yes"]])
    report = import_users(path, engine=engine)
    assert (report.imported, report.details["created"], report.details["updated"]) == (2, 2, 0)
    with session_scope(engine) as s:
        users = {u.id: u.features for u in s.scalars(select(User))}
    assert users["u1"] == {"age": 34, "score": 0.75, "zip": "007", "city": "Paris", "vip": None}
    assert users["u2"] == {"age": -2, "score": 1000.0, "zip": 12345, "city": "北京", "vip": "yes"}
    assert isinstance(users["u1"]["age"], int) and isinstance(users["u1"]["score"], float)
    assert [parse_value(v) for v in ("", " 5 ", "5.", "-.5", "1,5", "nan")] == [None, 5, 5.0, -0.5, "1,5", "nan"]


def test_users_duplicates_and_columns(tmp_path, engine):
    path = write_csv(tmp_path / "u.csv", ["user_id", "age"], [["u1", "1"], ["u2", "2"], ["u1", "3"], ["", "4"]])
    with pytest.raises(ImportRejected) as info:
        import_users(path, engine=engine)
    got = errors_by_row(info.value)
    assert sorted(got) == [4, 5] and "first on row 2" in got[4] and "empty" in got[5]
    with pytest.raises(ValueError, match="did you mean 'userid'"):
        import_users(write_csv(tmp_path / "v.csv", ["userid", "age"], [["u1", "1"]]), engine=engine)
    with pytest.raises(ValueError, match="at least one feature"):
        import_users(write_csv(tmp_path / "w.csv", ["user_id"], [["u1"]]), engine=engine)
    assert counts(engine)["users"] == 0


@pytest.mark.both_backends
def test_users_reimport_skips_identical_and_updates_changed(tmp_path, engine):
    path = write_csv(tmp_path / "u.csv", ["user_id", "age", "city"], [["u1", "30", "Lyon"], ["u2", "40", "Nice"]])
    import_users(path, engine=engine)
    again = import_users(path, engine=engine)
    assert (again.imported, again.skipped) == (0, 2)
    change = write_csv(tmp_path / "c.csv", ["user_id", "age", "gender"], [["u1", "31", "f"], ["u2", "40", ""], ["u3", "5", "m"]])
    report = import_users(change, engine=engine)
    assert report.details == {"created": 1, "updated": 2, "features": ["age", "gender"]}
    with session_scope(engine) as s:
        users = {u.id: u.features for u in s.scalars(select(User))}
    assert users["u1"] == {"age": 31, "city": "Lyon", "gender": "f"}
    assert users["u2"] == {"age": 40, "city": "Nice", "gender": None}
    assert users["u3"] == {"age": 5, "gender": "m"}


# --- clicks --------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path, engine):
    folder = tmp_path / "w"
    names = write_images(folder, 3)
    import_manifest(write_csv(tmp_path / "ads.csv", HEADER, [[f"ad{i}", f"ad {i}", n, "c"] for i, n in enumerate(names)]),
                    folder, engine=engine)
    import_users(write_csv(tmp_path / "users.csv", ["user_id", "age"], [[f"u{i}", str(20 + i)] for i in range(4)]), engine=engine)
    return tmp_path


CLICK_HEADER = ["user_id", "ad_id", "clicked", "timestamp"]


@pytest.mark.both_backends
def test_clicks_happy_path_parses_flags_and_times(world, engine):
    rows = [
        ["u0", "ad0", "1", "2024-05-01T13:45:00Z"],
        ["u1", "ad0", "false", "2024-05-01T15:45:00+02:00"],
        ["u2", "ad1", "YES", "2024-05-01 08:00:00.250"],
        ["u3", "ad2", "no", "2024-05-02"],
        ["u0", "ad0", "True", "2024-05-01T13:45:01Z"],
    ]
    report = import_clicks(write_csv(world / "c.csv", CLICK_HEADER, rows), engine=engine)
    assert (report.imported, report.skipped, report.details["clicks"]) == (5, 0, 3)
    with session_scope(engine) as s:
        got = sorted((i.user_id, i.ad_id, i.ts, i.clicked) for i in s.scalars(select(Impression)))
        # the stored text must be what SQLAlchemy itself compares against
        hit = s.scalars(select(Impression).where(Impression.ts == datetime(2024, 5, 1, 8, 0, 0, 250000))).one()
        run = s.scalars(select(ImportRun).where(ImportRun.kind == "clicks")).one()
    assert got == [
        ("u0", "ad0", datetime(2024, 5, 1, 13, 45), True),
        ("u0", "ad0", datetime(2024, 5, 1, 13, 45, 1), True),
        ("u1", "ad0", datetime(2024, 5, 1, 13, 45), False),
        ("u2", "ad1", datetime(2024, 5, 1, 8, 0, 0, 250000), True),
        ("u3", "ad2", datetime(2024, 5, 2), False),
    ]
    assert hit.user_id == "u2" and run.imported == 5


def test_sqlite_datetime_text_matches_sqlalchemy(engine):
    stamps = [datetime(2024, 5, 1, 13, 45, 0, 123456), datetime(1969, 12, 31, 23, 59, 59), datetime(2030, 1, 2)]
    with session_scope(engine) as s:
        dialect = s.connection().dialect
        processor = Impression.__table__.c.ts.type.dialect_impl(dialect).bind_processor(dialect)
    us = np.array([(t - datetime(1970, 1, 1)) // timedelta(microseconds=1) for t in stamps], dtype=np.int64)
    assert sqlite_datetime_text(us).tolist() == [processor(t) for t in stamps]


@pytest.mark.both_backends
def test_clicks_bad_rows_listed_and_nothing_stored(world, engine):
    rows = [
        ["u0", "ad0", "1", "2024-05-01T10:00:00Z"],  # 2 ok
        ["ghost", "ad0", "1", "2024-05-01T10:00:00Z"],  # 3 unknown user
        ["u1", "ad9", "0", "2024-05-01T10:00:00Z"],  # 4 unknown ad
        ["u1", "ad1", "maybe", "2024-05-01T10:00:00Z"],  # 5 bad clicked
        ["u1", "ad1", "1", "last tuesday"],  # 6 bad timestamp
        ["u0", "ad0", "0", "2024-05-01T12:00:00+02:00"],  # 7 same event as row 2, conflicting
        ["u2", "ad2", "1", ""],  # 8 empty timestamp
        ["u0", "ad0", "1", "2024-05-01T10:00:00"],  # 9 same as row 2, identical: fine
    ]
    before = counts(engine)
    with pytest.raises(ImportRejected) as info:
        import_clicks(write_csv(world / "c.csv", CLICK_HEADER, rows), engine=engine)
    got = errors_by_row(info.value)
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    assert "unknown user 'ghost'" in got[3] and "unknown ad 'ad9'" in got[4]
    assert "maybe" in got[5] and "ISO 8601" in got[6] and "row 2" in got[7] and "empty" in got[8]
    assert counts(engine) == before


@pytest.mark.both_backends
def test_clicks_reimport_and_in_file_duplicates(world, engine):
    rows = [["u0", "ad0", "1", "2024-05-01T10:00:00Z"], ["u1", "ad1", "0", "2024-05-01T11:00:00Z"],
            ["u0", "ad0", "yes", "2024-05-01T12:00:00+02:00"]]
    first = import_clicks(write_csv(world / "c.csv", CLICK_HEADER, rows), engine=engine)
    assert (first.imported, first.skipped, first.details["duplicates_in_file"]) == (2, 1, 1)
    again = import_clicks(world / "c.csv", engine=engine)
    assert (again.imported, again.skipped) == (0, 3)
    flip = write_csv(world / "d.csv", CLICK_HEADER, [["u2", "ad2", "1", "2024-06-01T00:00:00Z"],
                                                     ["u1", "ad1", "1", "2024-05-01T11:00:00Z"]])
    with pytest.raises(ImportRejected) as info:
        import_clicks(flip, engine=engine)
    assert errors_by_row(info.value) == {3: "this event is already stored with clicked=False"}
    assert counts(engine)["impressions"] == 2


@pytest.mark.both_backends
def test_clicks_bulk_rows_and_progress(world, engine):
    n = 30_000
    rng = np.random.default_rng(1)
    base = np.datetime64("2024-01-01T00:00:00")
    stamps = base + rng.choice(10**8, size=n, replace=False).astype("timedelta64[s]")
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in rng.integers(0, 4, n)], "ad_id": [f"ad{i}" for i in rng.integers(0, 3, n)],
                          "clicked": rng.integers(0, 2, n), "timestamp": pd.Series(stamps).dt.strftime("%Y-%m-%dT%H:%M:%SZ")})
    frame.to_csv(world / "big.csv", index=False)
    seen: list[tuple[int, int, str]] = []
    report = import_clicks(world / "big.csv", engine=engine, progress=lambda d, t, m: seen.append((d, t, m)))
    assert report.imported == n and report.details["clicks"] == int(frame["clicked"].sum())
    assert all(m.startswith("clicks: ") for _, _, m in seen) and seen[-1][:2] == (n, n)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Impression).where(Impression.clicked)) == report.details["clicks"]
        raw = s.execute(text("SELECT ts FROM impressions ORDER BY ts LIMIT 1")).scalar()
    first = pd.Timestamp(stamps.min()).to_pydatetime()
    if engine.dialect.name == "sqlite":  # the text form SQLAlchemy's own SQLite DateTime writes and compares
        assert raw == first.strftime("%Y-%m-%d %H:%M:%S.%f")
    else:  # a real timestamp column
        assert raw == first
    assert import_clicks(world / "big.csv", engine=engine).skipped == n


def test_clicks_columns_checked(world, engine):
    path = write_csv(world / "c.csv", ["user", "ad_id", "clicked", "time"], [["u0", "ad0", "1", "2024-01-01"]])
    with pytest.raises(ValueError) as info:
        import_clicks(path, engine=engine)
    msg = str(info.value)
    assert "missing column(s): 'user_id', 'timestamp'" in msg and "did you mean 'user_id'?" in msg
