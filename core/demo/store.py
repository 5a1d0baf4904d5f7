"""Writing the demo world to the database: replace every source="demo" row in ONE transaction."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.demo.clicks import ClickLog, period_bounds
from core.demo.knobs import DemoKnobs
from core.progress import ProgressFn
from core.stale import FINGERPRINT_KEY, check_replace, mark_stale
from core.store import Ad, Category, ExpansionRun, ImportRun, Impression, Package, PackageAd, User

if TYPE_CHECKING:
    from core.demo.plan import WorldPlan

SOURCE = "demo"
CHUNK = 50_000


def _conflicts(conn: Connection, plan: WorldPlan, ads: list[dict[str, Any]], users: list[dict[str, Any]]) -> None:
    """Refuse (ValueError) when rows from another source hold the names or ids the demo world needs."""
    names = [c.name for c in plan.categories]
    clash = conn.execute(select(Category.name).where(Category.name.in_(names), Category.source != SOURCE)).scalars().all()
    if clash:
        raise ValueError(f"demo: categories from another source already use these names: {', '.join(sorted(clash)[:10])}; "
                         "use a separate ADLENS_HOME (or database) for the demo world")
    first_ids = [a["id"] for a in ads[:1000]]
    clash = conn.execute(select(Ad.id).where(Ad.id.in_(first_ids), Ad.source != SOURCE)).scalars().all()
    if clash:
        raise ValueError(f"demo: ads from another source already use the ids {', '.join(clash[:5])}")
    first_users = [u["id"] for u in users[:1000]]
    clash = conn.execute(select(User.id).where(User.id.in_(first_users), User.source != SOURCE)).scalars().all()
    if clash:
        raise ValueError(f"demo: users from another source already use the ids {', '.join(clash[:5])}")


def clear_demo(conn: Connection) -> None:
    """Delete every source="demo" row (ads, categories, users, their impressions, packages, demo import runs)."""
    demo_ads = select(Ad.id).where(Ad.source == SOURCE)
    demo_users = select(User.id).where(User.source == SOURCE)
    demo_packages = select(Package.id).where(Package.source == SOURCE)
    demo_categories = select(Category.id).where(Category.source == SOURCE)
    conn.execute(update(ExpansionRun).where(ExpansionRun.package_id.in_(demo_packages)).values(package_id=None))
    conn.execute(delete(PackageAd).where(PackageAd.package_id.in_(demo_packages) | PackageAd.ad_id.in_(demo_ads)))
    conn.execute(delete(Package).where(Package.source == SOURCE))
    conn.execute(delete(Impression).where(Impression.ad_id.in_(demo_ads)))
    conn.execute(delete(Impression).where(Impression.user_id.in_(demo_users)))
    conn.execute(update(Ad).where(Ad.category_id.in_(demo_categories), Ad.source != SOURCE).values(category_id=None))
    conn.execute(update(Package).where(Package.category_id.in_(demo_categories)).values(category_id=None))
    conn.execute(delete(Ad).where(Ad.source == SOURCE))
    conn.execute(delete(Category).where(Category.source == SOURCE))
    conn.execute(delete(User).where(User.source == SOURCE))
    conn.execute(delete(ImportRun).where(ImportRun.kind == SOURCE))


def _insert_impressions(conn: Connection, log: ClickLog, ad_ids: list[str], user_ids: list[str], knobs: DemoKnobs,
                        progress: ProgressFn) -> None:
    starts = np.asarray([np.datetime64(start, "s") for start, _ in period_bounds(knobs)])
    ad_arr = np.asarray(ad_ids, dtype=object)
    user_arr = np.asarray(user_ids, dtype=object)
    n = len(log)
    sqlite = conn.dialect.name == "sqlite"
    table = Impression.__table__
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        ts = starts[log.period[lo:hi].astype(np.int64)] + log.seconds[lo:hi].astype("timedelta64[s]")
        users = user_arr[log.user[lo:hi]].tolist()
        ads = ad_arr[log.ad[lo:hi]].tolist()
        clicked = log.clicked[lo:hi].tolist()
        if sqlite:
            # the text form SQLAlchemy's SQLite DateTime type writes and reads: "YYYY-MM-DD HH:MM:SS.ffffff"
            stamps = [s.replace("T", " ") + ".000000" for s in np.datetime_as_string(ts, unit="s").tolist()]
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} (user_id, ad_id, ts, clicked) VALUES (?, ?, ?, ?)",
                list(zip(users, ads, stamps, [int(c) for c in clicked], strict=True)),
            )
        else:
            stamps = ts.astype("datetime64[us]").tolist()
            conn.execute(insert(Impression), [
                {"user_id": u, "ad_id": a, "ts": t, "clicked": c} for u, a, t, c in zip(users, ads, stamps, clicked, strict=True)
            ])
        progress(hi, n, f"demo-db: impressions {hi}/{n}")


def delete_world(engine: Engine, *, force: bool = False) -> dict[str, Any]:
    """Delete the demo world (its rows only) and mark the runs built on it stale, in one transaction; refused
    (core.stale.ReplaceRefused) while the database holds other data, unless ``force``."""
    held = check_replace(engine, None, force=force)
    with engine.begin() as conn:
        ads = conn.execute(select(func.count()).select_from(Ad).where(Ad.source == SOURCE)).scalar() or 0
        clear_demo(conn)
        stale = mark_stale(conn, None, "built on a demo world that was deleted")
    return {"deleted_ads": int(ads), "stale_runs": len(stale), "held": held}


def write_world(engine: Engine, plan: WorldPlan, ads: list[dict[str, Any]], users: list[dict[str, Any]], log: ClickLog,
                params: dict[str, Any], summary: dict[str, Any], knobs: DemoKnobs, progress: ProgressFn) -> list[int]:
    """Replace the demo rows by this world, all in one transaction (nothing changes on failure); the runs built on
    another demo world are marked stale in it. Returns their ids."""
    try:
        return _write(engine, plan, ads, users, log, params, summary, knobs, progress)
    except IntegrityError as exc:
        raise ValueError(f"demo: the database refused the demo world (nothing was changed): {exc.orig}") from exc


def _write(engine: Engine, plan: WorldPlan, ads: list[dict[str, Any]], users: list[dict[str, Any]], log: ClickLog,
           params: dict[str, Any], summary: dict[str, Any], knobs: DemoKnobs, progress: ProgressFn) -> list[int]:
    with engine.begin() as conn:
        _conflicts(conn, plan, ads, users)
        progress(0, 1, "demo-db: removing the previous demo world")
        clear_demo(conn)
        stale = mark_stale(conn, summary[FINGERPRINT_KEY], f"built on a previous demo world, replaced by the seed-{params['seed']} world")
        progress(0, len(log), "demo-db: categories, ads, users")
        conn.execute(insert(Category), [
            {"name": c.name, "name_zh": c.name_zh, "unseen": unseen, "source": SOURCE,
             "meta": {"group": c.group, "glyphs": list(c.glyphs), "keywords": list(c.keywords),
                      "keywords_zh": list(c.keywords_zh), "demo_index": k}}
            for k, (c, unseen) in enumerate(zip(plan.categories, plan.unseen, strict=True))
        ])
        ids = dict(conn.execute(select(Category.name, Category.id).where(Category.source == SOURCE)).all())
        rows = [{k: v for k, v in a.items() if k != "_category"} | {"category_id": ids[a["_category"]]} for a in ads]
        for lo in range(0, len(rows), 5000):
            conn.execute(insert(Ad), rows[lo:lo + 5000])
        for lo in range(0, len(users), 5000):
            conn.execute(insert(User), users[lo:lo + 5000])
        _insert_impressions(conn, log, [a["id"] for a in ads], [u["id"] for u in users], knobs, progress)
        for j, members in enumerate(plan.packages):
            category = plan.categories[int(plan.ad_category[members[0]])]
            package_id = conn.execute(insert(Package).values(
                name=f"demo package {j + 1:02d}: {category.name}", category_id=ids[category.name], source=SOURCE,
            )).inserted_primary_key[0]
            conn.execute(insert(PackageAd), [{"package_id": package_id, "ad_id": ads[i]["id"]} for i in members])
        conn.execute(insert(ImportRun).values(
            kind=SOURCE, source=json.dumps({"params": params, "summary": summary}, ensure_ascii=False),
            imported=len(ads), skipped=0, rejected=0,
        ))
        progress(len(log), len(log), "demo-db: committed")
    return stale
