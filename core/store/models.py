"""SQLAlchemy 2.0 models of the metadata store.

Large arrays (region features, embeddings, indexes, checkpoints) are files under
``settings.home``; rows here reference them by relative path and content hash.
Schema changes go through the Alembic migrations in ``db/migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SPLITS = ("train", "val", "test")
SOURCES = ("demo", "manifest", "coco", "upload")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Category(Base):
    """A product category (the label ads are retrieved by)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_zh: Mapped[str | None] = mapped_column(String(200))
    unseen: Mapped[bool] = mapped_column(Boolean, default=False, doc="held out: only in the test split")
    source: Mapped[str] = mapped_column(String(20), default="manifest")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    ads: Mapped[list[Ad]] = relationship(back_populates="category")


class Ad(Base):
    """An ad creative: text plus one image (content-addressed file under home/images)."""

    __tablename__ = "ads"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8), default="en")
    image_path: Mapped[str] = mapped_column(String(300), doc="relative to settings.home")
    image_hash: Mapped[str] = mapped_column(String(64), index=True, doc="sha256 of the image bytes")
    content_hash: Mapped[str] = mapped_column(String(64), doc="sha256 of text + image hash + category")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    split: Mapped[str] = mapped_column(String(8), default="train", index=True)
    source: Mapped[str] = mapped_column(String(20), default="manifest", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # ground truth kept for evaluation (demo world, COCO): product box [x1, y1, x2, y2] in pixels,
    # and any other objects drawn on the creative
    truth: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    category: Mapped[Category | None] = relationship(back_populates="ads")


class RegionSet(Base):
    """The regions one detector version found on one image (cached by image hash + detector)."""

    __tablename__ = "region_sets"
    __table_args__ = (UniqueConstraint("image_hash", "detector", name="uq_region_set"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_hash: Mapped[str] = mapped_column(String(64), index=True)
    detector: Mapped[str] = mapped_column(String(200), doc="backend name + version + weights hash")
    device: Mapped[str] = mapped_column(String(20), default="cpu")
    features_path: Mapped[str | None] = mapped_column(String(300), doc=".npy under home/arrays")
    feature_dim: Mapped[int] = mapped_column(Integer, default=0)
    ocr: Mapped[list[Any]] = mapped_column(JSON, default=list, doc="OCR lines: text, box, score")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    regions: Mapped[list[Region]] = relationship(
        back_populates="region_set", cascade="all, delete-orphan", order_by="Region.rank"
    )


class Region(Base):
    """One detected box; its feature vector is row ``rank`` of the set's features file."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region_set_id: Mapped[int] = mapped_column(ForeignKey("region_sets.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer, doc="0 = highest detector confidence")
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(200))

    region_set: Mapped[RegionSet] = relationship(back_populates="regions")


class User(Base):
    """A user with raw categorical features (one-hot encoded when a model needs them)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(20), default="manifest")
    # demo world only: the latent interests that generated the clicks (never used for training)
    truth: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Impression(Base):
    """An ad shown to a user at a time, and whether it was clicked."""

    __tablename__ = "impressions"
    __table_args__ = (
        Index("ix_impressions_ad_ts", "ad_id", "ts"),
        # one event per (user, ad, time): re-importing the same log changes nothing
        UniqueConstraint("user_id", "ad_id", "ts", name="uq_impression"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    ad_id: Mapped[str] = mapped_column(ForeignKey("ads.id"))
    ts: Mapped[datetime] = mapped_column(DateTime)
    clicked: Mapped[bool] = mapped_column(Boolean, default=False)


class Package(Base):
    """An ad package: a set of ads for one kind of product, targeted as one."""

    __tablename__ = "packages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    source: Mapped[str] = mapped_column(String(20), default="manifest")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    ads: Mapped[list[PackageAd]] = relationship(cascade="all, delete-orphan")


class PackageAd(Base):
    __tablename__ = "package_ads"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    ad_id: Mapped[str] = mapped_column(ForeignKey("ads.id"), primary_key=True)


class ModelRun(Base):
    """A trained model: its kind, config, data split, code version, metrics and files."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), doc="ion | totyemb | text | image | concat | matcher ...")
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="created", doc="created|running|done|failed|cancelled")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_split: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str] = mapped_column(String(80), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checkpoint_path: Mapped[str | None] = mapped_column(String(300))
    index_path: Mapped[str | None] = mapped_column(String(300))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ExpansionRun(Base):
    """One audience-expansion experiment on one package."""

    __tablename__ = "expansion_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int | None] = mapped_column(ForeignKey("packages.id"))
    model_run_id: Mapped[int | None] = mapped_column(ForeignKey("model_runs.id"))
    retrieval: Mapped[str] = mapped_column(String(40), default="model", doc="model|random|oracle|...")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    audience_path: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImportRun(Base):
    """A record of each import: what came in, how many rows were taken or rejected."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
