"""Queries over the impression log: package ads, clickers and impression users, periods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.audience.errors import AudienceError, NoImpressionsError, NotFoundError
from core.store import Ad, Impression, Package, PackageAd, chunks

CHUNK = 500  # ids per IN (...) clause


@dataclass(frozen=True)
class Period:
    """A time window [start, end) of the impression log."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise AudienceError(f"a period must end after it starts ({self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M})")

    def to_list(self) -> list[str]:
        return [self.start.isoformat(), self.end.isoformat()]


def log_span(session: Session) -> tuple[datetime, datetime]:
    """The first and last impression times of the whole log."""
    lo, hi = session.execute(select(func.min(Impression.ts), func.max(Impression.ts))).one()
    if lo is None:
        raise NoImpressionsError("the impression log is empty: import clicks (python -m core ingest clicks) or build the demo")
    return lo, hi


def midpoint(lo: datetime, hi: datetime) -> datetime:
    """The middle of [lo, hi], snapped to the nearest midnight when the span exceeds two days
    (two months of log split at the first day of the second month)."""
    mid = lo + (hi - lo) / 2
    if hi - lo > timedelta(days=2):
        mid = (mid + timedelta(hours=12)).replace(hour=0, minute=0, second=0, microsecond=0)
    return mid


def split_periods(session: Session, split_at: datetime | None = None, period: tuple[datetime, datetime] | None = None,
                  later: tuple[datetime, datetime] | None = None) -> tuple[Period, Period]:
    """P and P' : explicit windows, else the log's span cut at ``split_at`` (default: its midpoint)."""
    if period and later:
        p, q = Period(*period), Period(*later)
    else:
        lo, hi = log_span(session)
        end = hi + timedelta(microseconds=1)
        cut = split_at or midpoint(lo, hi)
        if not lo < cut <= hi:
            raise AudienceError(f"split date {cut:%Y-%m-%d %H:%M} is outside the log ({lo:%Y-%m-%d} .. {hi:%Y-%m-%d})")
        p = Period(*period) if period else Period(lo, cut)
        q = Period(*later) if later else Period(cut, end)
    if q.start < p.end:
        raise AudienceError("the later period P' must start after the training period P ends")
    return p, q


def package_info(session: Session, package_id: int) -> tuple[str, list[str], int | None]:
    """(name, ad ids, category id) of a package; NotFoundError / AudienceError when missing or empty."""
    pkg = session.get(Package, package_id)
    if pkg is None:
        raise NotFoundError(f"package {package_id} does not exist")
    ad_ids = list(session.scalars(select(PackageAd.ad_id).where(PackageAd.package_id == package_id).order_by(PackageAd.ad_id)))
    if not ad_ids:
        raise AudienceError(f"package {package_id} ({pkg.name}) holds no ads")
    return pkg.name, ad_ids, pkg.category_id


def users_of(session: Session, ad_ids: Sequence[str], period: Period, *, clicked: bool) -> set[str]:
    """Users who clicked (``clicked=True``) or saw (``False``) any of ``ad_ids`` during ``period``."""
    out: set[str] = set()
    for chunk in chunks(list(ad_ids), CHUNK):
        q = select(Impression.user_id).distinct().where(
            Impression.ad_id.in_(chunk), Impression.ts >= period.start, Impression.ts < period.end)
        if clicked:
            q = q.where(Impression.clicked.is_(True))
        out.update(session.scalars(q))
    return out


def clickers(session: Session, ad_ids: Sequence[str], period: Period) -> set[str]:
    return users_of(session, ad_ids, period, clicked=True)


def impression_users(session: Session, ad_ids: Sequence[str], period: Period) -> set[str]:
    return users_of(session, ad_ids, period, clicked=False)


def clickers_per_ad(session: Session, ad_ids: Sequence[str], period: Period) -> dict[str, int]:
    """Distinct clickers of each ad in ``period`` (0 for ads without clicks)."""
    counts = dict.fromkeys(ad_ids, 0)
    for chunk in chunks(list(ad_ids), CHUNK):
        q = (select(Impression.ad_id, func.count(func.distinct(Impression.user_id)))
             .where(Impression.ad_id.in_(chunk), Impression.clicked.is_(True),
                    Impression.ts >= period.start, Impression.ts < period.end)
             .group_by(Impression.ad_id))
        counts.update(dict(session.execute(q).all()))
    return counts


def ad_categories(session: Session, ad_ids: Sequence[str] | None = None) -> dict[str, int | None]:
    """ad id -> category id (all ads when ``ad_ids`` is None)."""
    if ad_ids is None:
        return dict(session.execute(select(Ad.id, Ad.category_id)).all())
    out: dict[str, int | None] = {}
    for chunk in chunks(list(ad_ids), CHUNK):
        out.update(dict(session.execute(select(Ad.id, Ad.category_id).where(Ad.id.in_(chunk))).all()))
    return out


def package_ctr(session: Session, ad_ids: Sequence[str], period: Period | None = None) -> tuple[int, int]:
    """(impressions, clicks) of a set of ads, in ``period`` or over the whole log."""
    imps = clicks = 0
    for chunk in chunks(list(ad_ids), CHUNK):
        q = select(func.count(), func.sum(case((Impression.clicked.is_(True), 1), else_=0))).where(Impression.ad_id.in_(chunk))
        if period:
            q = q.where(Impression.ts >= period.start, Impression.ts < period.end)
        n, c = session.execute(q).one()
        imps += n or 0
        clicks += int(c or 0)
    return imps, clicks
