"""Shared databases: which demo world a model run was built on, and runs whose world is gone.

Every model run records in its config the fingerprint of the demo world in the database when it was created
(``world_fingerprint``; no key when the catalogue held no demo world). The demo world's fingerprint is computed once,
when the world is written, and kept with its parameters (the ImportRun of kind "demo"); a database built before that
gets it computed and stored on first use. Replacing or deleting the demo world marks every run stamped with another
world ``stale`` (config ``stale: true`` and ``stale_reason``) in the same transaction: its row and files stay, the
pickers and the demo build no longer take it as a default. Runs from before fingerprints (no key) stay current.

Replacing a different demo world, or deleting it, is refused (:class:`ReplaceRefused`) while the database holds
other things (model runs, imported ads, users or packages, audience runs) unless forced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from core.store import Ad, Category, ExpansionRun, ImportRun, ModelRun, Package, User, session_scope
from core.store.models import utcnow

DEMO = "demo"  # the demo world's source / ImportRun kind (core.demo.store.SOURCE)
FINGERPRINT_KEY = "world_fingerprint"
STALE_KEY = "stale"
REASON_KEY = "stale_reason"
STALE_LABEL = "stale: built on a previous demo world"


class ReplaceRefused(ValueError):
    """The demo world would be replaced or deleted while the database holds other data, without --force."""


# -- the fingerprint ---------------------------------------------------------------------------------------------------

def fingerprint_rows(rows: Iterable[tuple[str, str, str | None, str, dict | None]]) -> str | None:
    """sha256 over (ad id, split, category name, text, ground truth) rows in id order: what a model trained on the demo
    world learnt from (the boxes rounded to 0.1 px, not the JPEG bytes, which depend on Pillow). None without rows."""
    h = hashlib.sha256()
    n = 0
    for ad_id, split, category, text, truth in sorted(rows, key=lambda r: r[0]):
        objects = [[round(float(v), 1) for v in o.get("box", [])] for o in (truth or {}).get("objects", [])]
        h.update(json.dumps([ad_id, split, category, text, objects], ensure_ascii=False).encode())
        n += 1
    return h.hexdigest() if n else None


def world_fingerprint(engine: Engine) -> str | None:
    """The fingerprint computed from the demo ads in the database (reads every demo ad: use :func:`current_world`)."""
    with session_scope(engine) as s:
        rows = s.execute(select(Ad.id, Ad.split, Category.name, Ad.text, Ad.truth)
                         .join(Category, Ad.category_id == Category.id, isouter=True).where(Ad.source == DEMO)).all()
    return fingerprint_rows([tuple(r) for r in rows])


def _demo_import(conn: Connection) -> tuple[int, dict[str, Any]] | None:
    row = conn.execute(select(ImportRun.id, ImportRun.source).where(ImportRun.kind == DEMO)
                       .order_by(ImportRun.id.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        stored = json.loads(row.source)
    except json.JSONDecodeError:
        stored = {}
    return int(row.id), stored if isinstance(stored, dict) else {}


def current_world(engine: Engine) -> str | None:
    """The fingerprint of the demo world in the database (None: no demo world): one small read; computed and stored
    once for a world written before fingerprints were kept."""
    with engine.connect() as conn:
        found = _demo_import(conn)
    if found is None:
        return None
    import_id, stored = found
    summary = stored.get("summary") if isinstance(stored.get("summary"), dict) else {}
    if summary.get(FINGERPRINT_KEY):
        return str(summary[FINGERPRINT_KEY])
    fingerprint = world_fingerprint(engine)
    if fingerprint is not None:
        stored["summary"] = {**summary, FINGERPRINT_KEY: fingerprint}
        with engine.begin() as conn:
            conn.execute(update(ImportRun).where(ImportRun.id == import_id)
                         .values(source=json.dumps(stored, ensure_ascii=False)))
    return fingerprint


def stamp(config: dict[str, Any] | None, engine: Engine) -> dict[str, Any]:
    """``config`` with the current demo world's fingerprint (kept when the caller already set one; no key without a
    demo world: such a run, like one from before fingerprints, never becomes stale)."""
    config = dict(config or {})
    if FINGERPRINT_KEY not in config and (world := current_world(engine)) is not None:
        config[FINGERPRINT_KEY] = world
    return config


# -- stale runs ----------------------------------------------------------------------------------------------------------

def is_stale(run: dict[str, Any]) -> bool:
    """True for a run marked stale (built on a demo world that was replaced or deleted)."""
    return bool((run.get("config") or {}).get(STALE_KEY))


def stale_note(run: dict[str, Any]) -> str:
    """" (stale: built on a previous demo world)" for a stale run, "" otherwise: what lists of runs append."""
    return f" ({STALE_LABEL})" if is_stale(run) else ""


def fresh(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``runs`` without the stale ones."""
    return [r for r in runs if not is_stale(r)]


def _built_on_other(config: dict[str, Any] | None, fingerprint: str | None) -> bool:
    config = config or {}
    world = config.get(FINGERPRINT_KEY)
    return bool(world) and world != fingerprint and not config.get(STALE_KEY)


def mark_stale(conn: Connection, fingerprint: str | None, reason: str) -> list[int]:
    """In the caller's transaction: mark every run stamped with a world other than ``fingerprint`` (None: the demo world
    is deleted) stale with ``reason``; returns their ids. Only the config of those rows changes."""
    marked = []
    for run_id, config in conn.execute(select(ModelRun.id, ModelRun.config).order_by(ModelRun.id)).all():
        if _built_on_other(config, fingerprint):
            new = {**config, STALE_KEY: True, REASON_KEY: f"{reason} ({utcnow():%Y-%m-%d %H:%M} UTC)"}
            conn.execute(update(ModelRun).where(ModelRun.id == run_id).values(config=new))
            marked.append(int(run_id))
    return marked


# -- what a replacement would affect -------------------------------------------------------------------------------------

def holdings(conn: Connection, fingerprint: str | None) -> dict[str, int]:
    """What the database holds besides the demo world: current model runs (and how many are built on the demo world
    ``fingerprint``, which a replacement marks stale), imported ads / users / packages and audience runs."""
    def count(model: Any, *where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar() or 0)

    configs = [c or {} for c in conn.execute(select(ModelRun.config)).scalars()]
    current = [c for c in configs if not c.get(STALE_KEY)]
    return {
        "model runs": len(current),
        "on_world": sum(bool(fingerprint) and c.get(FINGERPRINT_KEY) == fingerprint for c in current),
        "imported ads": count(Ad, Ad.source != DEMO),
        "imported users": count(User, User.source != DEMO),
        "imported packages": count(Package, Package.source != DEMO),
        "audience runs": count(ExpansionRun),
    }


def describe(held: dict[str, int]) -> str:
    """"14 model runs (12 built on this demo world) and 320 imported ads"; "" when nothing is held."""
    parts = []
    for key, n in held.items():
        if key == "on_world" or not n:
            continue
        name = key if n != 1 else key[:-1]
        extra = f" ({held['on_world']} built on this demo world)" if key == "model runs" and held.get("on_world") else ""
        parts.append(f"{n} {name}{extra}")
    if len(parts) < 2:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def stored_params(conn: Connection) -> dict[str, Any] | None:
    """The parameters of the demo world in the database (None: no demo world)."""
    found = _demo_import(conn)
    has_ads = conn.execute(select(Ad.id).where(Ad.source == DEMO).limit(1)).first() is not None
    if not has_ads:
        return None
    return dict((found[1].get("params") or {}) if found else {})


def check_replace(engine: Engine, params: dict[str, Any] | None, *, force: bool) -> dict[str, int]:
    """Refuse (ReplaceRefused) to replace a different demo world by the one of ``params`` (None: to delete it) while the
    database holds other data, unless ``force``; returns what it holds. Building the same world, or a first one, passes."""
    with engine.connect() as conn:
        existing = stored_params(conn)
    if existing is None or existing == params:
        return {}
    fingerprint = current_world(engine)
    with engine.connect() as conn:
        held = holdings(conn, fingerprint)
    what = describe(held)
    if what and not force:
        action = "delete" if params is None else "replace"
        stale = " (the runs built on it would be marked stale; no file is deleted)" if held.get("on_world") else ""
        raise ReplaceRefused(f"the database holds {what}{stale}; re-run with --force to {action} the demo world")
    return held

