"""Content-addressed files under ``settings.home`` (images, arrays, checkpoints).

Files that models are served from (checkpoints, FAISS indexes, region-cache arrays) are *sealed* when written:
a sidecar ``<file>.sha256`` (JSON: size, sha256) written atomically after the file. :func:`check_sealed` verifies a
file before it is read: its size every time, its hash once per process and version of the file (path, size,
mtime, inode). A truncated or altered file raises :class:`DamagedFile`, never a result computed from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from core.config import get_settings


def home() -> Path:
    return get_settings().home


def resolve(relative: str | Path) -> Path:
    """Absolute path of a file referenced from the database (paths there are relative to home)."""
    return home() / relative


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DamagedFile(ValueError):
    """A sealed file whose size or hash is not the one recorded when it was written."""


SEAL_SUFFIX = ".sha256"
_verified: set[tuple[str, int, int, int]] = set()
_verified_lock = threading.Lock()


def seal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SEAL_SUFFIX)


def file_digest(path: str | Path) -> dict:
    """{"size": bytes, "sha256": hex digest} of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def seal(path: str | Path) -> dict:
    """Record the file's size and sha256 in its sidecar (written atomically); returns them."""
    facts = file_digest(path)
    _atomic_write(seal_path(path), json.dumps(facts).encode())
    return facts


def check_sealed(path: str | Path, what: str, fix: str) -> None:
    """Raise DamagedFile ("<what> is damaged (...); <fix>") when a sealed file's size or hash differs from its seal.

    A file without a seal (written before seals existed) passes; its reader's own format checks still apply."""
    path = Path(path)
    side = seal_path(path)
    if not side.is_file():
        return
    try:
        facts = json.loads(side.read_text())
        size, sha = int(facts["size"]), str(facts["sha256"])
    except (ValueError, KeyError, TypeError, OSError):
        raise DamagedFile(f"{what} is damaged (its seal {side.name} is unreadable); {fix}") from None
    stat = path.stat()
    if stat.st_size != size:
        raise DamagedFile(f"{what} is damaged (truncated or altered: {stat.st_size} bytes, {size} were written); {fix}")
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _verified_lock:
        if key in _verified:
            return
    if file_digest(path)["sha256"] != sha:
        raise DamagedFile(f"{what} is damaged (hash mismatch); {fix}")
    with _verified_lock:
        _verified.add(key)


def forget_verified() -> None:
    """Hash every sealed file again on its next read (tests; after restoring a backup in place)."""
    with _verified_lock:
        _verified.clear()


def remove_sealed(path: str | Path) -> None:
    """Delete a file and its seal (e.g. a damaged cache file about to be rebuilt)."""
    Path(path).unlink(missing_ok=True)
    seal_path(path).unlink(missing_ok=True)


def atomic_torch_save(payload: object, path: Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    seal(path)
    return path


def load_torch_payload(path: str | Path, *, kind: str, fmt: str) -> dict:
    """Read a checkpoint written by :func:`atomic_torch_save` (tensors and plain values only).

    Raises FileNotFoundError when it is missing and ValueError when it is unreadable or not a
    ``fmt`` checkpoint; ``kind`` names it in the messages ("embedding", "matcher").
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} checkpoint at {path}")
    check_sealed(path, f"the {kind} checkpoint {path}", "train the model again")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable AdLens {kind} checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path} is not an AdLens {kind} checkpoint (format {fmt})")
    return payload


def image_relpath(sha256: str, ext: str) -> str:
    return f"images/{sha256[:2]}/{sha256}{ext}"


def put_image(data: bytes, sha256: str, ext: str) -> str:
    """Store image bytes under their hash (no-op when present); returns the relative path."""
    rel = image_relpath(sha256, ext.lower())
    target = resolve(rel)
    if not target.exists():
        _atomic_write(target, data)
    return rel


def put_array(array: np.ndarray, key: str, kind: str = "arrays") -> str:
    """Store an array as ``<kind>/<key>.npy`` (key = content hash + model version)."""
    rel = f"{kind}/{key[:2]}/{key}.npy"
    target = resolve(rel)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".npy")
        os.close(fd)
        np.save(tmp, array)
        os.replace(tmp, target)
        seal(target)
    return rel


def get_array(rel: str | Path, mmap: bool = False) -> np.ndarray:
    """A stored array; DamagedFile when it does not match its seal (or is not a readable .npy file)."""
    path = resolve(rel)
    check_sealed(path, f"the cached array {rel}", "it is rebuilt when its cache entry is removed")
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except (ValueError, EOFError, OSError) as exc:
        if not path.is_file():
            raise
        raise DamagedFile(f"the cached array {rel} is damaged ({exc.__class__.__name__}: {exc}); it is rebuilt when its cache entry "
                          "is removed") from None
