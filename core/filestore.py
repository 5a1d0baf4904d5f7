"""Content-addressed files under ``settings.home`` (images, arrays, checkpoints)."""

from __future__ import annotations

import os
import tempfile
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
    return rel


def get_array(rel: str | Path, mmap: bool = False) -> np.ndarray:
    return np.load(resolve(rel), mmap_mode="r" if mmap else None)
