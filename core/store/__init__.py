"""The metadata store (SQLAlchemy) and the file store for large arrays."""

from core.store.db import IN_CHUNK, chunks, get_engine, in_parts, session_scope
from core.store.models import (
    Ad,
    Base,
    Category,
    ExpansionRun,
    ImportRun,
    Impression,
    ModelRun,
    Package,
    PackageAd,
    Region,
    RegionSet,
    User,
)

__all__ = [
    "IN_CHUNK",
    "chunks",
    "in_parts",
    "Ad",
    "Base",
    "Category",
    "ExpansionRun",
    "ImportRun",
    "Impression",
    "ModelRun",
    "Package",
    "PackageAd",
    "Region",
    "RegionSet",
    "User",
    "get_engine",
    "session_scope",
]
