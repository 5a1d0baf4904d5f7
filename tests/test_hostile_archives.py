"""Hostile archives and folders: zip slip in every spelling, symlinks (in zips and folders), zip bombs, lying headers."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest
from ingest_data import files_under, png_bytes, write_csv, write_images
from sqlalchemy import func, select

from core.config import get_settings
from core.ingest.archive import FolderSource, ImageMissing, ZipSource, is_symlink_member, is_unsafe, open_images, read_member
from core.ingest.manifest import import_manifest
from core.ingest.report import ImportRejected
from core.store import Ad, session_scope

HEADER = ["ad_id", "text", "image", "category"]


def n_ads(engine) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(Ad))


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setenv("ADLENS_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    yield 1024 * 1024
    monkeypatch.delenv("ADLENS_MAX_UPLOAD_MB")
    get_settings.cache_clear()


EVIL = ["/etc/passwd", "\\windows\\evil.png", "..\\evil.png", "a\\..\\..\\evil.png", "C:\\evil.png", "c:evil.png",
        "D:/x/evil.png", "ok/../../evil.png", "  ../evil.png"]


@pytest.mark.parametrize("evil", EVIL)
def test_every_spelling_of_an_outside_path_is_unsafe_and_the_zip_refused(tmp_path, evil):
    assert is_unsafe(evil)
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("img0.png", png_bytes())
        zf.writestr(zipfile.ZipInfo(evil), png_bytes(color="blue"))
    with pytest.raises(ValueError, match="refused.*point outside the archive.*Nothing was extracted"):
        open_images(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs.zip"]


@pytest.mark.parametrize("name", ["../img0.png", "/tmp/img0.png", "C:\\img0.png", "sub\\..\\..\\img0.png"])
def test_manifest_names_leaving_the_folder_or_zip_are_row_errors(tmp_path, name):
    write_images(tmp_path / "imgs", 1)
    with FolderSource(tmp_path / "imgs") as src, pytest.raises(ImageMissing, match="inside the images folder"):
        src.read(name)
    with zipfile.ZipFile(tmp_path / "i.zip", "w") as zf:
        zf.writestr("img0.png", png_bytes())
    with ZipSource(tmp_path / "i.zip") as src, pytest.raises(ImageMissing, match="inside the zip"):
        src.read(name)


def _zip_with_link(path, link_name: str, target: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("real.png", png_bytes())
        info = zipfile.ZipInfo(link_name)
        info.create_system = 3  # Unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)  # a symlink member's data is the target path


@pytest.mark.parametrize("target", ["real.png", "/etc/passwd", "../../secret.png"])
def test_symlink_member_in_a_zip_is_never_followed_and_rejects_its_row(tmp_path, engine, home, target):
    archive = tmp_path / "imgs.zip"
    _zip_with_link(archive, "link.png", target)
    with zipfile.ZipFile(archive) as zf:
        assert is_symlink_member(zf.getinfo("link.png")) and not is_symlink_member(zf.getinfo("real.png"))
    manifest = write_csv(tmp_path / "m.csv", HEADER, [["a", "ok", "real.png", "c"], ["b", "via link", "link.png", "c"]])
    with pytest.raises(ImportRejected) as info:
        import_manifest(manifest, archive, engine=engine)
    errors = [(e.row, e.column, e.reason) for e in info.value.report.errors]
    assert len(errors) == 1 and errors[0][:2] == (3, "image")
    assert "symbolic link" in errors[0][2] and "not followed" in errors[0][2]
    assert n_ads(engine) == 0 and files_under(home / "images") == []


def test_symlink_in_an_images_folder_pointing_outside_is_refused(tmp_path, engine, home):
    folder = tmp_path / "imgs"
    write_images(folder, 1)
    (tmp_path / "secret.png").write_bytes(png_bytes(color="blue"))
    os.symlink(tmp_path / "secret.png", folder / "outside.png")
    os.symlink(folder / "img0.png", folder / "inside.png")  # a link within the folder is fine
    os.symlink("/etc", folder / "etc")
    with FolderSource(folder) as src:
        assert src.read("inside.png") == (folder / "img0.png").read_bytes()
        with pytest.raises(ImageMissing, match="leads outside the images folder"):
            src.read("outside.png")
        with pytest.raises(ImageMissing, match="leads outside the images folder"):
            src.read("etc/passwd")
    manifest = write_csv(tmp_path / "m.csv", HEADER, [["a", "ok", "inside.png", "c"], ["b", "no", "outside.png", "c"]])
    with pytest.raises(ImportRejected) as info:
        import_manifest(manifest, folder, engine=engine)
    assert [(e.row, e.column) for e in info.value.report.errors] == [(3, "image")]
    assert n_ads(engine) == 0 and files_under(home / "images") == []


def _forbid_open(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the member was opened: the zip bomb check must come first")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


def test_zip_bomb_by_ratio_is_refused_before_inflating(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("bomb.png", b"\0" * (20 * 1024 * 1024))  # 20 MB of zeros -> about 20 KB
    with ZipSource(archive) as src:
        info = src.members["bomb.png"]
        assert info.file_size > 500 * info.compress_size
        _forbid_open(monkeypatch)
        with pytest.raises(ImageMissing, match="inflates .* times.*possible zip bomb"):
            src.read("bomb.png")


def test_member_declaring_a_size_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch, small_limit):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", b"\0" * (2 * small_limit))  # a small zip, 2 MB inside (under the ratio check's floor)
    with ZipSource(archive) as src:
        _forbid_open(monkeypatch)
        with pytest.raises(ImageMissing, match="too large.*the limit is 1 MB"):
            src.read("big.png")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_member_whose_header_understates_its_size_never_yields_more_than_declared(tmp_path, small_limit, compression):
    """zipfile stops at the declared size and then fails the CRC; read_member turns that into a row error."""
    archive = tmp_path / "liar.zip"
    payload = os.urandom(3 * small_limit)
    with zipfile.ZipFile(archive, "w", compression=compression) as zf:
        zf.writestr("liar.png", payload)
    asked: list[int] = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        asked.append(n)
        return real_read(self, n)

    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("liar.png")
        info.file_size = 1000  # the directory lies: 1000 bytes
        zipfile.ZipExtFile.read = counting_read
        try:
            with pytest.raises(ImageMissing, match="damaged in the zip"):
                read_member(zf, info, "liar.png")
        finally:
            zipfile.ZipExtFile.read = real_read
    assert asked and all(0 < n <= small_limit + 1 for n in asked)  # never an unbounded read


def test_zip_file_itself_over_the_upload_limit_is_refused(tmp_path, small_limit):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.bin", os.urandom(small_limit + 100))
    with pytest.raises(ValueError, match="big.zip is too large.*limit of 1 MB"):
        open_images(archive)
