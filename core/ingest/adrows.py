"""Ad rows shared by the manifest and COCO importers: image checks, duplicates, writing.

The flow is the same for both: build :class:`AdRow` objects (rejecting bad cells), decode every
image (:func:`inspect_images`), compare with ads already stored (:func:`split_existing`), and only
when no row was rejected store the image files and insert the rows in one transaction
(:func:`write_ads`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from core.filestore import image_relpath, put_image, resolve
from core.images import DecodedImage, ImageError, decode_image, sha256_bytes
from core.ingest.archive import ImageMissing, ImageSource
from core.ingest.common import raise_if_rejected, record_run
from core.ingest.report import ImportReport
from core.progress import ProgressFn
from core.store import IN_CHUNK, Ad, Category, chunks, session_scope

MAX_AD_ID = 100
MAX_CATEGORY = 200

FORMAT_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")


def detect_lang(text: str) -> str:
    """'zh' when the text holds CJK ideographs, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def content_hash(text: str, image_hash: str, category: str) -> str:
    """sha256 of ``text|image_hash|category``: what makes two imports of one ad identical."""
    return hashlib.sha256(f"{text}|{image_hash}|{category}".encode()).hexdigest()


def image_ext(fmt: str) -> str:
    return FORMAT_EXT.get(fmt.upper(), "." + fmt.lower() if fmt and fmt != "unknown" else ".img")


@dataclass
class AdRow:
    """One ad to import, as read from a manifest row or a COCO image record."""

    row: int
    ad_id: str
    text: str
    lang: str
    image_name: str
    category: str
    split: str
    truth: dict[str, Any] = field(default_factory=dict)
    image_hash: str = ""
    image_ext: str = ""
    width: int = 0
    height: int = 0

    @property
    def content_hash(self) -> str:
        return content_hash(self.text, self.image_hash, self.category)


# called after an image decodes; returns a reason to reject the row, or None (may fill row.truth)
ImageCheck = Callable[[AdRow, bytes, DecodedImage], str | None]


def inspect_images(
    rows: list[AdRow], source: ImageSource, report: ImportReport, progress: ProgressFn, stage: str,
    check: ImageCheck | None = None,
) -> list[AdRow]:
    """Decode each row's image (each distinct file once, a few threads); reject rows whose image is unusable.

    Fills ``image_hash``, ``image_ext``, ``width``/``height`` (after EXIF rotation) and returns the good rows.
    Workers keep no pixels or bytes once a file is checked, so memory stays flat on large imports.
    """
    by_name: dict[str, list[AdRow]] = {}
    for r in rows:
        by_name.setdefault(r.image_name, []).append(r)

    def work(name: str) -> list[str | None]:
        """One reason (or None) per row naming this file."""
        try:
            data = source.read(name)
            decoded = decode_image(data, name=name)
        except (ImageMissing, ImageError) as exc:
            return [str(exc)] * len(by_name[name])
        reasons: list[str | None] = []
        for r in by_name[name]:
            r.image_hash, r.image_ext = decoded.sha256, image_ext(decoded.format)
            r.width, r.height = decoded.size
            reasons.append(check(r, data, decoded) if check else None)
        return reasons

    good: list[AdRow] = []
    names = list(by_name)
    total = len(names)
    workers = max(1, min(4, os.cpu_count() or 1))
    progress(0, total, f"{stage}: checking images")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (name, reasons) in enumerate(zip(names, pool.map(work, names), strict=True), 1):
            for r, reason in zip(by_name[name], reasons, strict=True):
                if reason:
                    report.reject(r.row, reason, "image")
                else:
                    good.append(r)
            if done % 50 == 0 or done == total:
                progress(done, total, f"{stage}: checking images")
    return good


def split_existing(rows: list[AdRow], engine: Engine, report: ImportReport) -> list[AdRow]:
    """Drop rows whose ad is already stored with identical content (counted as skipped); reject changed ones."""
    stored: dict[str, str] = {}
    with session_scope(engine) as s:
        for part in chunks([r.ad_id for r in rows], IN_CHUNK):
            stored.update(s.execute(select(Ad.id, Ad.content_hash).where(Ad.id.in_(part))).all())
    new: list[AdRow] = []
    for r in rows:
        old = stored.get(r.ad_id)
        if old is None:
            new.append(r)
        elif old == r.content_hash:
            report.skipped += 1
        else:
            report.reject(r.row, f"ad '{r.ad_id}' already exists with different content (text, image or category)", "ad_id")
    return new


WRITE_ATTEMPTS = 3  # an import that meets another one writing the same categories or ads starts its transaction again


def write_ads(
    rows: list[AdRow], source: ImageSource, engine: Engine, report: ImportReport, progress: ProgressFn, stage: str, *,
    ad_source: str, category_source: str, unseen: dict[str, bool] | None = None, category_meta: dict[str, dict] | None = None,
) -> None:
    """Store the image files and insert categories, ads and the import record in one transaction.

    Image files created here are removed again if the transaction fails, so a failed import leaves
    the images folder as it was.
    """
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            _write_once(rows, source, engine, report, progress, stage, ad_source=ad_source, category_source=category_source,
                        unseen=unseen or {}, category_meta=category_meta or {})
            return
        except IntegrityError:
            # another import committed the same category or ad meanwhile: look again at what is stored now (its
            # categories are reused, its identical ads skipped, changed ones rejected) and write the rest
            if attempt == WRITE_ATTEMPTS:
                raise
            rows = split_existing(rows, engine, report)
            raise_if_rejected(report)


def _write_once(rows: list[AdRow], source: ImageSource, engine: Engine, report: ImportReport, progress: ProgressFn, stage: str, *,
                ad_source: str, category_source: str, unseen: dict[str, bool], category_meta: dict[str, dict]) -> None:
    created_files: list[str] = []
    total = len(rows)
    try:
        with session_scope(engine) as s:
            names = sorted({r.category for r in rows})
            cat_ids: dict[str, int] = {}
            for part in chunks(names, IN_CHUNK):
                cat_ids.update(s.execute(select(Category.name, Category.id).where(Category.name.in_(part))).all())
            created = [n for n in names if n not in cat_ids]
            for name in created:
                cat = Category(name=name, source=category_source, unseen=unseen.get(name, False), meta=category_meta.get(name, {}))
                s.add(cat)
                s.flush()
                cat_ids[name] = cat.id
            progress(0, total, f"{stage}: storing")
            batch: list[dict[str, Any]] = []
            for done, r in enumerate(rows, 1):
                rel = image_relpath(r.image_hash, r.image_ext)
                if not resolve(rel).exists():
                    data = source.read(r.image_name)
                    if sha256_bytes(data) != r.image_hash:
                        raise ValueError(f"image '{r.image_name}' changed while it was being imported; run the import again")
                    put_image(data, r.image_hash, r.image_ext)
                    created_files.append(rel)
                batch.append(dict(
                    id=r.ad_id, text=r.text, lang=r.lang, image_path=rel, image_hash=r.image_hash, content_hash=r.content_hash,
                    width=r.width, height=r.height, category_id=cat_ids[r.category], split=r.split, source=ad_source, truth=r.truth,
                ))
                if len(batch) >= 1000 or done == total:
                    s.execute(insert(Ad), batch)
                    batch = []
                    progress(done, total, f"{stage}: storing")
            report.imported = len(rows)
            report.details["categories_created"] = len(created)
            if created:
                report.details["new_categories"] = created[:100]
            record_run(s, report)
    except BaseException:
        _remove_unreferenced(created_files, engine)
        raise


def _remove_unreferenced(paths: list[str], engine: Engine) -> None:
    """Delete image files this failed import created, except those a committed ad of another import uses (images are
    stored by content, so two imports at once may have written the same file)."""
    if not paths:
        return
    try:
        with session_scope(engine) as s:
            used = {p for part in chunks(paths, IN_CHUNK) for p in s.scalars(select(Ad.image_path).where(Ad.image_path.in_(part)))}
    except Exception:  # noqa: BLE001 - the database is unreachable: keep every file (an orphan file harms nothing)
        return
    for rel in paths:
        if rel not in used:
            resolve(rel).unlink(missing_ok=True)
