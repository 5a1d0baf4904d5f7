"""Ad packages for the Audience and Phrase match pages and the CLI: list them (with their CTR, or as choices), their ads,
create one from ads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, case, func, select

from core.audience.errors import AudienceError
from core.store import Ad, Category, Impression, Package, PackageAd, get_engine, session_scope


def list_packages(engine: Engine | None = None) -> list[dict[str, Any]]:
    """Every package: id, name, category, number of ads, impressions, clicks and CTR over the whole log."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        pkgs = s.execute(select(Package.id, Package.name, Category.name).outerjoin(Category, Package.category_id == Category.id)
                         .order_by(Package.id)).all()
        n_ads = dict(s.execute(select(PackageAd.package_id, func.count()).group_by(PackageAd.package_id)).all())
        traffic = {pid: (n, c) for pid, n, c in s.execute(
            select(PackageAd.package_id, func.count(Impression.id), func.sum(case((Impression.clicked.is_(True), 1), else_=0)))
            .join(Impression, Impression.ad_id == PackageAd.ad_id).group_by(PackageAd.package_id))}
    out = []
    for pid, name, category in pkgs:
        n, c = traffic.get(pid, (0, 0))
        out.append({"id": pid, "name": name, "category": category, "ads": n_ads.get(pid, 0), "impressions": int(n or 0),
                    "clicks": int(c or 0), "ctr": (int(c or 0) / n) if n else 0.0})
    return out


def package_choices(engine: Engine | None = None) -> list[tuple[int, str, int]]:
    """(package id, name, number of ads) of every package, by name."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        query = select(Package.id, Package.name, func.count(PackageAd.ad_id)).outerjoin(PackageAd, PackageAd.package_id == Package.id)
        return [(int(i), n, int(c)) for i, n, c in s.execute(query.group_by(Package.id).order_by(Package.name))]


def package_ad_ids(package_id: int, engine: Engine | None = None) -> list[str]:
    """The package's ad ids in id order; empty for an unknown or empty package (:func:`package_ads` refuses those)."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        return list(s.scalars(select(PackageAd.ad_id).where(PackageAd.package_id == package_id).order_by(PackageAd.ad_id)))


def package_ads(package_id: int, engine: Engine | None = None) -> list[str]:
    from core.audience.logs import package_info

    with session_scope(engine or get_engine()) as s:
        return package_info(s, package_id)[1]


def create_package(name: str, ad_ids: Sequence[str], engine: Engine | None = None) -> int:
    """A new package of ``ad_ids`` (e.g. ads picked on the Catalog or Similar ads pages); returns its id."""
    name = (name or "").strip()
    ids = sorted(set(ad_ids))
    if not name:
        raise AudienceError("give the package a name")
    limit = Package.__table__.c.name.type.length
    if len(name) > limit:
        raise AudienceError(f"a package name may have at most {limit} characters (this one has {len(name)})")
    if not ids:
        raise AudienceError("a package needs at least one ad")
    engine = engine or get_engine()
    with session_scope(engine) as s:
        if s.scalar(select(Package.id).where(Package.name == name)) is not None:
            raise AudienceError(f"a package named '{name}' already exists")
        rows = dict(s.execute(select(Ad.id, Ad.category_id).where(Ad.id.in_(ids))).all())
        unknown = [a for a in ids if a not in rows]
        if unknown:
            raise AudienceError(f"unknown ad id(s): {', '.join(unknown[:5])}")
        cats = {c for c in rows.values() if c is not None}
        pkg = Package(name=name, category_id=cats.pop() if len(cats) == 1 else None, source="upload")
        s.add(pkg)
        s.flush()
        s.add_all([PackageAd(package_id=pkg.id, ad_id=a) for a in ids])
        return pkg.id
