"""Safe access to the images of an import: a folder or a .zip, read in memory, never extracted.

A zip whose entries point outside the archive (absolute paths, ``..``, drive letters, also
written with backslashes: "zip-slip") is refused as a whole. A zip member stored as a symbolic
link is never followed (a row naming it is rejected), and a member that would inflate past the
upload limit or by an extreme ratio (a zip bomb) is refused before it is read. In a folder, a
symbolic link may point only inside the folder. Names given in a manifest are refused when they leave the folder. Reading
a missing or oversized member raises :class:`ImageMissing`, which importers turn into a row error.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from types import TracebackType

from core.uploads import check_upload_size, max_upload_bytes

_DRIVE = re.compile(r"^[A-Za-z]:")

# a zip member that inflates more than this many times over its stored size, and is bigger than
# RATIO_FLOOR bytes, is a zip bomb: real creatives (PNG, JPEG, WebP) are already compressed
MAX_RATIO = 100
RATIO_FLOOR = 8 * 1024 * 1024


class ImageMissing(ValueError):
    """An image named by a row that cannot be read from the source (row error, not a fatal one)."""


def _normalise(name: str) -> str:
    return name.strip().replace("\\", "/")


def is_unsafe(name: str) -> bool:
    """True for paths that could land outside a folder: absolute, drive-letter, or with a '..' part."""
    norm = _normalise(name)
    if norm.startswith("/") or _DRIVE.match(norm):
        return True
    return any(part == ".." for part in norm.split("/"))


def _max_bytes() -> int:
    return max_upload_bytes()


def is_symlink_member(info: zipfile.ZipInfo) -> bool:
    """True for a zip member stored as a symbolic link (Unix mode S_IFLNK in ``external_attr``)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """A member's bytes, refusing links and zip bombs before inflating, and never holding more than the limit.

    The sizes in the zip's directory are checked first (declared size, compression ratio); the read
    itself stops one byte past the limit, so a member whose header lies about its size cannot fill
    memory (zipfile also stops at the declared size and then fails the CRC check).
    """
    limit = _max_bytes()
    if is_symlink_member(info):
        raise ImageMissing(f"'{name}' is a symbolic link in the zip; links are not followed (zip the image file itself)")
    if info.file_size > limit:
        raise ImageMissing(f"image file '{name}' is too large ({info.file_size / 1e6:.0f} MB uncompressed; "
                           f"the limit is {limit // (1024 * 1024)} MB)")
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ImageMissing(f"image file '{name}' was refused: it inflates {info.file_size / max(info.compress_size, 1):,.0f} "
                           f"times ({info.file_size / 1e6:.0f} MB from {info.compress_size / 1e6:.2f} MB; possible zip bomb)")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except RuntimeError as exc:  # encrypted member
        raise ImageMissing(f"image file '{name}' could not be read from the zip ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ImageMissing(f"image file '{name}' is damaged in the zip ({exc})") from None
    if len(data) > limit:
        raise ImageMissing(f"image file '{name}' is larger than its zip header says and over the limit of "
                           f"{limit // (1024 * 1024)} MB (damaged or hostile zip)")
    return data


class ImageSource:
    """Where an import's images come from. Use as a context manager; ``read(name)`` returns bytes."""

    label: str

    def read(self, name: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class FolderSource(ImageSource):
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.label = str(root)

    def read(self, name: str) -> bytes:
        norm = _normalise(name)
        if not norm:
            raise ImageMissing("no image file named")
        if is_unsafe(norm):
            raise ImageMissing(f"image path '{name}' must be a file inside the images folder (no absolute paths or '..')")
        path = (self.root / norm).resolve()
        if not path.is_relative_to(self.root):
            raise ImageMissing(f"image path '{name}' leads outside the images folder")
        if not path.exists():
            raise ImageMissing(f"image file '{name}' not found in the images folder")
        if path.is_dir():
            raise ImageMissing(f"image path '{name}' is a folder, not an image file")
        try:
            check_upload_size(f"image file '{name}'", path.stat().st_size)
        except ValueError as exc:
            raise ImageMissing(str(exc)) from None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ImageMissing(f"image file '{name}' could not be read ({exc.strerror or exc})") from None


class ZipSource(ImageSource):
    """Members of a zip, read in memory. Also finds 'a.png' when the zip holds one top folder 'images/a.png'."""

    def __init__(self, path: Path):
        self.label = str(path)
        check_upload_size(path.name, path.stat().st_size)
        try:
            self.zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise ValueError(f"{path.name} is not a valid zip file") from None
        except OSError as exc:
            raise ValueError(f"{path.name} could not be opened ({exc.strerror or exc})") from None
        infos = self.zf.infolist()
        unsafe = [i.filename for i in infos if is_unsafe(i.filename)]
        if unsafe:
            self.zf.close()
            shown = ", ".join(repr(n) for n in unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
            raise ValueError(
                f"The zip file {path.name} was refused: {len(unsafe)} entr{'y' if len(unsafe) == 1 else 'ies'} point outside "
                f"the archive ({shown}). Nothing was extracted or imported; re-create the zip from the image folder."
            )
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            norm = _normalise(info.filename)
            parts = PurePosixPath(norm).parts
            if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
                continue
            self.members[norm] = info
        tops = {PurePosixPath(n).parts[0] for n in self.members}
        nested = all(len(PurePosixPath(n).parts) > 1 for n in self.members)
        self.prefix = f"{next(iter(tops))}/" if len(tops) == 1 and nested else ""

    def _find(self, norm: str) -> zipfile.ZipInfo | None:
        while norm.startswith("./"):
            norm = norm[2:]
        return self.members.get(norm) or (self.members.get(self.prefix + norm) if self.prefix else None)

    def read(self, name: str) -> bytes:
        norm = _normalise(name)
        if not norm:
            raise ImageMissing("no image file named")
        if is_unsafe(norm):
            raise ImageMissing(f"image path '{name}' must be a file inside the zip (no absolute paths or '..')")
        info = self._find(norm)
        if info is None:
            raise ImageMissing(f"image file '{name}' not found in the zip")
        return read_member(self.zf, info, name)

    def close(self) -> None:
        self.zf.close()


def open_images(path: str | Path) -> ImageSource:
    """An :class:`ImageSource` for a folder or a .zip file; clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"images folder or zip not found: {path}")
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return ZipSource(path)
    raise ValueError(f"{path.name}: images must be a folder or a .zip file")
