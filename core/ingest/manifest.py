"""Import ads from a manifest (CSV or Parquet) plus a folder or zip of images: all rows or none.

Manifest columns: ``ad_id, text, image, category`` and optionally ``split`` (train|val|test; when
absent, fixed by a hash of ad_id, about 80/10/10) and ``lang`` (when absent: 'zh' if the text holds
Chinese characters, else 'en').
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from core.ingest.adrows import MAX_AD_ID, MAX_CATEGORY, AdRow, detect_lang, inspect_images, split_existing, write_ads
from core.ingest.archive import open_images
from core.ingest.common import engine_or_default, progress_or_silent, raise_if_rejected, split_for
from core.ingest.report import ImportReport
from core.ingest.tables import Table, check_columns, read_table, text_column
from core.progress import ProgressFn
from core.store import IN_CHUNK, Category, chunks, session_scope
from core.store.models import SPLITS

REQUIRED = ("ad_id", "text", "image", "category")
OPTIONAL = ("split", "lang")
STAGE = "manifest"


def default_split(ad_id: str) -> str:
    """The split of an ad whose manifest row gives none: ~80% train, 10% val, 10% test, fixed by ad_id."""
    return split_for(f"manifest-split:{ad_id}", 0.8, 0.1)


def _unseen_categories(engine: Engine, names: set[str]) -> set[str]:
    out: set[str] = set()
    with session_scope(engine) as s:
        for part in chunks(sorted(names), IN_CHUNK):
            out.update(s.scalars(select(Category.name).where(Category.name.in_(part), Category.unseen)).all())
    return out


def _rows_from_table(table: Table, report: ImportReport, unseen: set[str]) -> list[AdRow]:
    cols = {c: text_column(table, c) for c in REQUIRED + OPTIONAL if c in table.frame.columns}
    first_seen: dict[str, int] = {}
    rows: list[AdRow] = []
    for pos, row_no in enumerate(table.row_numbers()):
        row_no = int(row_no)
        cell = {c: series.iat[pos] for c, series in cols.items()}
        ad_id, text, image, category = cell["ad_id"], cell["text"], cell["image"], cell["category"]
        before = report.rejected
        if not ad_id:
            report.reject(row_no, "ad_id is empty", "ad_id")
        elif len(ad_id) > MAX_AD_ID:
            report.reject(row_no, f"ad_id is longer than {MAX_AD_ID} characters", "ad_id")
        elif ad_id in first_seen:
            report.reject(row_no, f"ad_id '{ad_id}' appears more than once in the file (first on row {first_seen[ad_id]})", "ad_id")
        else:
            first_seen[ad_id] = row_no
        if not text:
            report.reject(row_no, "text is empty", "text")
        if not image:
            report.reject(row_no, "no image file named", "image")
        if not category:
            report.reject(row_no, "category is empty", "category")
        elif len(category) > MAX_CATEGORY:
            report.reject(row_no, f"category is longer than {MAX_CATEGORY} characters", "category")
        split = cell.get("split", "").lower()
        if split and split not in SPLITS:
            report.reject(row_no, f"split '{cell['split']}' is not one of train, val, test", "split")
        elif split and split != "test" and category in unseen:
            report.reject(row_no, f"category '{category}' is held out (unseen): its ads can only be in the test split", "split")
        lang = cell.get("lang", "")
        if len(lang) > 8:
            report.reject(row_no, f"lang '{lang}' is not a language code (e.g. en, zh)", "lang")
        if report.rejected > before:
            continue
        if not split:
            split = "test" if category in unseen else default_split(ad_id)
        rows.append(AdRow(row=row_no, ad_id=ad_id, text=text, lang=lang or detect_lang(text), image_name=image,
                          category=category, split=split))
    return rows


def import_manifest(
    manifest: Path, images: Path, *, engine: Engine | None = None, progress: ProgressFn | None = None, source: str = "manifest"
) -> ImportReport:
    """Import every row of ``manifest`` with its image from ``images`` (folder or .zip), or none of them.

    Raises FileNotFoundError / ValueError when the manifest or the images cannot be used at all,
    and :class:`~core.ingest.report.ImportRejected` (listing every bad row) when any row is bad;
    in both cases the database and the images folder are unchanged.
    """
    progress = progress_or_silent(progress)
    manifest, images = Path(manifest), Path(images)
    table = read_table(manifest, what="manifest")
    check_columns(table, REQUIRED, OPTIONAL, what="manifest")
    if table.frame.empty:
        raise ValueError(f"{manifest.name} has a header but no ads")
    engine = engine_or_default(engine)
    report = ImportReport(kind="ads", source=str(manifest), details={"ad_source": source, "rows": len(table.frame)})
    with open_images(images) as image_source:
        unseen = _unseen_categories(engine, set(text_column(table, "category")))
        rows = _rows_from_table(table, report, unseen)
        rows = inspect_images(rows, image_source, report, progress, STAGE)
        rows = split_existing(rows, engine, report)
        raise_if_rejected(report)
        write_ads(rows, image_source, engine, report, progress, STAGE, ad_source=source, category_source="manifest")
    return report
