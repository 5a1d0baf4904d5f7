"""Read-side queries over the catalog, shared by the pages and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select

from core.filestore import resolve
from core.store import Ad, Category, Impression, ModelRun, Package, User, get_engine, session_scope
from core.store.db import sqlite_path


def stats(engine: Engine | None = None) -> dict[str, Any]:
    """Counts of what is loaded (the `stats` command and the overview page)."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        ads_by_split = dict(s.execute(select(Ad.split, func.count()).group_by(Ad.split)).all())
        ads_by_source = dict(s.execute(select(Ad.source, func.count()).group_by(Ad.source)).all())
        out = {
            "ads": sum(ads_by_split.values()),
            "ads_by_split": ads_by_split,
            "ads_by_source": ads_by_source,
            "categories": s.scalar(select(func.count()).select_from(Category)) or 0,
            "unseen_categories": s.scalar(select(func.count()).select_from(Category).where(Category.unseen)) or 0,
            "users": s.scalar(select(func.count()).select_from(User)) or 0,
            "impressions": s.scalar(select(func.count()).select_from(Impression)) or 0,
            "clicks": s.scalar(select(func.count()).select_from(Impression).where(Impression.clicked)) or 0,
            "packages": s.scalar(select(func.count()).select_from(Package)) or 0,
            "model_runs": s.scalar(select(func.count()).select_from(ModelRun)) or 0,
        }
    db_file = sqlite_path(engine)
    out["database"] = engine.url.render_as_string(hide_password=True)
    out["database_bytes"] = db_file.stat().st_size if db_file and db_file.exists() else None
    return out


@dataclass
class AdFilter:
    categories: list[str] | None = None
    splits: list[str] | None = None
    sources: list[str] | None = None
    text: str | None = None
    unseen_only: bool = False


def _filtered(query, flt: AdFilter):
    if flt.categories:
        query = query.where(Category.name.in_(flt.categories))
    if flt.splits:
        query = query.where(Ad.split.in_(flt.splits))
    if flt.sources:
        query = query.where(Ad.source.in_(flt.sources))
    if flt.unseen_only:
        query = query.where(Category.unseen)
    if flt.text and flt.text.strip():
        pattern = f"%{flt.text.strip()}%"
        query = query.where(or_(Ad.text.ilike(pattern), Ad.id.ilike(pattern), Category.name.ilike(pattern)))
    return query


def list_ads(flt: AdFilter | None = None, *, limit: int = 60, offset: int = 0, engine: Engine | None = None,
             count: bool = True) -> tuple[list[dict[str, Any]], int]:
    """One page of ads matching ``flt`` (ordered by id; LIMIT/OFFSET in the database) and the total number that match
    (a COUNT query; -1 with ``count=False``, for a caller that counted already)."""
    flt = flt or AdFilter()
    engine = engine or get_engine()
    base = select(Ad, Category.name, Category.unseen).outerjoin(Category, Ad.category_id == Category.id)
    with session_scope(engine) as s:
        total = (s.scalar(_filtered(select(func.count()).select_from(Ad).outerjoin(Category, Ad.category_id == Category.id), flt))
                 or 0) if count else -1
        rows = s.execute(_filtered(base, flt).order_by(Ad.id).limit(limit).offset(offset)).all()
        return [ad_record(ad, cat, unseen) for ad, cat, unseen in rows], total


def ad_record(ad: Ad, category: str | None, unseen: bool | None) -> dict[str, Any]:
    return {
        "id": ad.id,
        "text": ad.text,
        "lang": ad.lang,
        "category": category,
        "unseen_category": bool(unseen),
        "split": ad.split,
        "source": ad.source,
        "image_path": ad.image_path,
        "image_hash": ad.image_hash,
        "width": ad.width,
        "height": ad.height,
        "truth": ad.truth or {},
    }


def get_ad(ad_id: str, engine: Engine | None = None) -> dict[str, Any]:
    """One ad as a record; raises KeyError with a clear message for an unknown id."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        row = s.execute(
            select(Ad, Category.name, Category.unseen).outerjoin(Category, Ad.category_id == Category.id).where(Ad.id == ad_id)
        ).first()
        if row is None:
            raise KeyError(f"no ad with id '{ad_id}'")
        return ad_record(*row)


def image_file(record: dict[str, Any]) -> Path:
    return resolve(record["image_path"])


def category_names(engine: Engine | None = None) -> list[str]:
    engine = engine or get_engine()
    with session_scope(engine) as s:
        return list(s.scalars(select(Category.name).order_by(Category.name)))


def ad_clicks(ad_id: str, engine: Engine | None = None) -> dict[str, int]:
    engine = engine or get_engine()
    with session_scope(engine) as s:
        imps = s.scalar(select(func.count()).select_from(Impression).where(Impression.ad_id == ad_id)) or 0
        clicks = s.scalar(select(func.count()).select_from(Impression).where(Impression.ad_id == ad_id, Impression.clicked)) or 0
    return {"impressions": imps, "clicks": clicks}


def count_ads(flt: AdFilter | None = None, engine: Engine | None = None) -> int:
    """How many ads match ``flt`` (for pagination before a page is fetched)."""
    engine = engine or get_engine()
    query = _filtered(select(func.count()).select_from(Ad).outerjoin(Category, Ad.category_id == Category.id), flt or AdFilter())
    with session_scope(engine) as s:
        return s.scalar(query) or 0


def search_ads(text: str | None = None, *, limit: int = 50, engine: Engine | None = None) -> list[dict[str, Any]]:
    """At most ``limit`` light ads (id, text, category) for a picker: the ad whose id is ``text`` first, then those whose
    id, text or category contains it, by id. Two bounded queries (primary key, then LIMIT), whatever the catalogue's size."""
    engine = engine or get_engine()
    text = (text or "").strip()
    columns = select(Ad.id, Ad.text, Category.name).outerjoin(Category, Ad.category_id == Category.id)
    with session_scope(engine) as s:
        exact = s.execute(columns.where(Ad.id == text)).all() if text else []
        rows = s.execute(_filtered(columns, AdFilter(text=text or None)).order_by(Ad.id).limit(max(1, int(limit)))).all()
    out, seen = [], set()
    for ad_id, ad_text, category in [*exact, *rows]:
        if ad_id not in seen and len(out) < max(1, int(limit)):
            seen.add(ad_id)
            out.append({"id": ad_id, "text": ad_text, "category": category})
    return out


def light_ad(ad_id: str, engine: Engine | None = None) -> dict[str, Any] | None:
    """The id, text and category of one ad (one primary-key lookup), or None when there is no such ad."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        row = s.execute(select(Ad.id, Ad.text, Category.name).outerjoin(Category, Ad.category_id == Category.id)
                        .where(Ad.id == ad_id)).first()
    return None if row is None else {"id": row[0], "text": row[1], "category": row[2]}


def source_names(engine: Engine | None = None) -> list[str]:
    """The sources present in the catalog (demo, manifest, coco, ...), sorted."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        return sorted(s.scalars(select(Ad.source).distinct()))
