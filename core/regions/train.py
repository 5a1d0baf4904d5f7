"""Train a YOLO detector of the catalog's own from labelled creatives (the demo world's ground-truth boxes).

Two steps:

* :func:`export_dataset` writes a YOLO-format dataset under ``home/detectors/<name>/dataset``: the
  images (symlinked, copied where links fail) of the ads whose ``Ad.truth["objects"]`` lists boxes, in
  the *train* and *val* splits only (the test split, with its held-out categories, is never seen),
  one label file per image (``class cx cy w h``, normalised to [0, 1]) and ``data.yaml``. Class names are
  the seen (not ``unseen``) category names; scene clutter without a category, or with a held-out
  category, is the class ``"object"``. ``class_agnostic=True`` makes one class ``"object"`` instead.
* :func:`train_detector` trains a YOLOv8n built from ``yolov8n.yaml`` (no pretrained download) with
  Ultralytics on that dataset, copies ``best.pt`` to ``home/detectors/<name>/best.pt`` and
  ``home/detectors/latest.pt`` (which the ``auto`` detector choice picks up) and records a
  :class:`~core.store.models.ModelRun` (kind ``"detector"``) with the config and the val metrics.

:data:`PRODUCTS` (:class:`Recipe`) is the recipe ``train-detector`` uses by default: class-agnostic,
256 px, an 18-minute budget. :func:`evaluate_detector` measures box mAP50 on any split (``detector-eval``);
:func:`heldout_exposure` says how often held-out categories' glyphs appear in the training creatives.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from core.progress import ProgressFn, no_progress
from core.regions.base import OBJECT_LABEL as CLUTTER

DETECTOR_SPLITS = ("train", "val")  # catalogue splits whose boxes the detector learns from and is validated on; test creatives stay unseen
LATEST = "latest.pt"


class TrainError(ValueError):
    """The detector cannot be trained (no labelled creatives, bad arguments ...)."""


def detectors_dir() -> Path:
    """``home/detectors``: one folder per trained detector, plus ``latest.pt``."""
    from core.config import get_settings

    return get_settings().home / "detectors"


def latest_detector() -> Path | None:
    """``home/detectors/latest.pt`` when a detector was trained in this home, else None."""
    path = detectors_dir() / LATEST
    return path if path.is_file() else None


@dataclass
class ExportedDataset:
    """A YOLO-format dataset on disk and what went into it."""

    root: Path
    data_yaml: Path
    names: list[str]
    images: dict[str, int] = field(default_factory=dict)  # split -> number of images
    boxes: dict[str, int] = field(default_factory=dict)  # split -> number of boxes
    ad_ids: dict[str, list[str]] = field(default_factory=dict)  # split -> ad ids
    val_from_train: bool = False  # True when the catalog had no val split and part of train validates
    # how much the detector sees of the held-out (unseen) categories: their product glyphs appear as
    # distractors in training creatives (the demo world draws distractors from every other category)
    heldout_exposure: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(root=str(self.root), data_yaml=str(self.data_yaml))
        out.pop("ad_ids")
        return out


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120] or "ad"


def yolo_label(box: list[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """Pixel box [x1, y1, x2, y2] -> normalised (cx, cy, w, h) clipped to the image; None when empty."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copyfile(src, dst)


def export_dataset(name: str = "demo", *, class_agnostic: bool = False, limit: int | None = None,
                   engine: Engine | None = None, progress: ProgressFn | None = None) -> ExportedDataset:
    """Write the YOLO dataset of the labelled train/val creatives under ``home/detectors/<name>/dataset``.

    ``limit`` keeps the first N labelled ads (by id) of train+val. When the val (or train) split has no
    labelled ad, every tenth labelled ad (and the last) validates instead. Raises :class:`TrainError`
    when fewer than two ads of those splits have ground-truth objects.
    """
    from core.filestore import resolve
    from core.store import Ad, Category, get_engine, session_scope

    progress = progress or no_progress
    engine = engine or get_engine()
    with session_scope(engine) as s:
        seen = sorted(c.name for c in s.scalars(select(Category).where(Category.unseen.is_(False))))
        unseen = {c.name for c in s.scalars(select(Category).where(Category.unseen.is_(True)))}
        rows = [(a.id, a.split, a.image_path, a.width, a.height, (a.truth or {}).get("objects") or [])
                for a in s.scalars(select(Ad).where(Ad.split.in_(DETECTOR_SPLITS)).order_by(Ad.id))]
    rows = [r for r in rows if r[5]]
    if limit is not None:
        rows = rows[: max(0, limit)]
    if not rows:
        raise TrainError("no labelled creatives: no train/val ad has ground-truth objects (truth.objects); build the demo world first")
    names = [CLUTTER] if class_agnostic else [*seen, CLUTTER]
    index = {n: i for i, n in enumerate(names)}
    clutter = index[CLUTTER]
    if len(rows) < 2:
        raise TrainError(f"need at least 2 labelled creatives to train and validate (found {len(rows)})")
    val_from_train = not any(r[1] == "val" for r in rows) or not any(r[1] == "train" for r in rows)
    if val_from_train:  # no val (or no train) split here: every tenth labelled ad validates, the rest train
        rows = [(r[0], "val" if i % 10 == 9 or i == len(rows) - 1 else "train", *r[2:]) for i, r in enumerate(rows)]

    exposure = heldout_exposure([r[5] for r in rows], unseen)
    root = detectors_dir() / _safe_name(name) / "dataset"
    if root.exists():
        shutil.rmtree(root)
    export = ExportedDataset(root=root, data_yaml=root / "data.yaml", names=names, val_from_train=val_from_train,
                             heldout_exposure=exposure)
    for split in DETECTOR_SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for done, (ad_id, split, image_path, width, height, objects) in enumerate(rows, 1):
        src = resolve(image_path)
        if not src.is_file():
            continue
        stem = _safe_name(ad_id)
        lines = []
        for obj in objects:
            label = yolo_label(obj["box"], width, height)
            if label is None:
                continue
            cls = clutter if class_agnostic else index.get(obj.get("category") or CLUTTER, clutter)
            lines.append(f"{cls} " + " ".join(f"{v:.6f}" for v in label))
        _link_or_copy(src, root / "images" / split / f"{stem}{src.suffix.lower() or '.jpg'}")
        (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        export.images[split] = export.images.get(split, 0) + 1
        export.boxes[split] = export.boxes.get(split, 0) + len(lines)
        export.ad_ids.setdefault(split, []).append(ad_id)
        progress(done, len(rows), f"export: {ad_id}")
    yaml_names = "\n".join(f"  {i}: {n!r}" for i, n in enumerate(names))
    export.data_yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{yaml_names}\n")
    return export


def heldout_exposure(objects_per_creative: list[list[dict]], unseen: set[str]) -> dict[str, Any]:
    """How often objects of held-out categories (``unseen``) appear in the given creatives' ground truth
    (``truth["objects"]``): creatives with at least one, their share of all boxes, and the glyphs seen."""
    creatives = boxes = heldout = 0
    glyphs: set[str] = set()
    for objects in objects_per_creative:
        hits = [o for o in objects if o.get("category") in unseen]
        creatives += bool(hits)
        boxes += len(objects)
        heldout += len(hits)
        glyphs.update(str(o.get("glyph")) for o in hits)
    n = len(objects_per_creative)
    return {"creatives": n, "creatives_with_heldout_object": creatives,
            "creatives_share": round(creatives / n, 4) if n else None, "heldout_boxes": heldout,
            "boxes_share": round(heldout / boxes, 4) if boxes else None, "heldout_glyphs": len(glyphs)}


@contextmanager
def _no_downloads():
    """Ultralytics' dataset check fetches a plotting font; AdLens trains with plots off, so skip it."""
    import ultralytics.data.utils as data_utils

    original = data_utils.check_font
    data_utils.check_font = lambda *_a, **_k: None
    try:
        yield
    finally:
        data_utils.check_font = original


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return round(float(value), 4) if value is not None else None


@dataclass(frozen=True)
class Recipe:
    """The training recipe of the catalog detector (``train-detector --recipe products``), and why.

    * class-agnostic ("object"): every glyph on a creative (product, distractor, scene emoji) is one
      class, so the detector learns *where things are*, not *which category*: it then finds the products
      of held-out categories too (a per-category head calls them background), and the ranking of the
      product among the kept boxes is left to the semantic clues (SCA) and the region descriptors.
    * imgsz 256: the product is 10-20% of the creative's side (51-102 px on 512), 26-51 px at 256, three
      or more cells of the stride-8 level; halving the side quarters the cost of an epoch on CPU.
    * time budget (minutes): Ultralytics' ``time`` re-plans the epochs after the first one so that
      training (with its per-epoch validation) ends within the budget on whatever machine runs it,
      and the learning-rate schedule follows the re-planned epochs.
    * one optimizer step per batch (``nbs = batch``): from scratch, with a few hundred batches in all,
      the default gradient accumulation to 64 images would leave a quarter of the updates.
    * augmentation for fixed-scale creatives: mosaic (4 creatives per image: 4x the objects per step),
      flips and HSV as usual; scale jitter 0.25 (creatives come at one size, products at 10-20% of it),
      mosaic off for the last 2 epochs; images cached in RAM (decoding JPEGs costs as much as a step).
    """

    class_agnostic: bool = True
    imgsz: int = 256
    batch: int = 16
    epochs: int = 60  # an upper bound: the time budget decides
    minutes: float | None = 18.0
    lr0: float = 0.002
    mosaic: float = 1.0
    scale: float = 0.25
    close_mosaic: int = 2
    cache: bool = True
    warmup_epochs: float = 1.0


PRODUCTS = Recipe()


def train_detector(name: str = "demo", *, epochs: int = 30, imgsz: int = 320, batch: int = 16, limit: int | None = None,
                   class_agnostic: bool = False, device: str | None = None, patience: int = 50, seed: int = 0, lr0: float = 0.002,
                   minutes: float | None = None, mosaic: float = 1.0, scale: float = 0.5, close_mosaic: int = 10,
                   cache: bool = False, nbs: int | None = None, warmup_epochs: float | None = None,
                   recipe: str | None = None,
                   engine: Engine | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Export the dataset, train YOLOv8n on it from scratch and register the result; returns a summary dict.

    ``minutes``: a wall-clock budget for the training (Ultralytics ``time``; epochs become an upper
    bound). ``nbs``: the nominal batch size gradients accumulate to (default: ``batch``, one step per
    batch). ``mosaic``, ``scale``, ``close_mosaic``, ``cache``: Ultralytics' augmentation / caching
    settings. :data:`PRODUCTS` is the recipe that finds the demo world's products (see :class:`Recipe`).

    Progress stages: ``export: <ad>``, ``train: epoch e/E`` (after every epoch). The ModelRun row is
    ``running`` while training, then ``done`` (metrics: mAP50, mAP50-95, precision, recall of the
    best epoch on the val split) or ``failed`` with the error as its message.
    """
    from core.device import resolve_device
    from core.regions.yolo import ultralytics_yolo
    from core.runs import DETECTOR_KIND, create_run, ends_failed_on_error, start_run, update_run
    from core.store import get_engine

    if epochs < 1:
        raise TrainError("epochs must be >= 1")
    if not 64 <= imgsz <= 1280 or imgsz % 32:
        raise TrainError("imgsz must be a multiple of 32 in [64, 1280]")
    if batch < 1:
        raise TrainError("batch must be >= 1")
    if minutes is not None and minutes <= 0:
        raise TrainError("minutes must be > 0")
    progress = progress or no_progress
    engine = engine or get_engine()
    started = time.perf_counter()
    export = export_dataset(name, class_agnostic=class_agnostic, limit=limit, engine=engine, progress=progress)
    info = resolve_device(device)
    config = {"base": "yolov8n.yaml", "epochs": epochs, "imgsz": imgsz, "batch": batch, "class_agnostic": class_agnostic,
              "classes": len(export.names), "device": info.name, "seed": seed, "limit": limit, "patience": patience,
              "optimizer": "AdamW", "lr0": lr0, "minutes": minutes, "mosaic": mosaic, "scale": scale,
              "close_mosaic": close_mosaic, "cache": cache, "nbs": nbs or batch, "recipe": recipe}
    run_id = create_run(DETECTOR_KIND, f"YOLOv8n detector '{name}'", config, engine=engine,
                        data_split={"splits": list(DETECTOR_SPLITS), "images": export.images, "boxes": export.boxes})
    start_run(run_id, "training", engine=engine)
    with ends_failed_on_error(run_id, engine=engine):  # any error after the start (a copy, a write) ends the run failed
        out_dir = detectors_dir() / _safe_name(name)
        model = ultralytics_yolo()("yolov8n.yaml", task="detect")

        history: list[dict[str, Any]] = []

        def on_epoch_end(trainer) -> None:
            progress(int(trainer.epoch) + 1, int(trainer.epochs), f"train: epoch {int(trainer.epoch) + 1}/{int(trainer.epochs)}")

        def on_fit_epoch_end(trainer) -> None:  # after validation: the epoch's val metrics, for the run's history
            m = trainer.metrics or {}
            history.append({"epoch": int(trainer.epoch) + 1, "seconds": round(time.perf_counter() - started, 1),
                            "mAP50": _metric(m, "metrics/mAP50(B)"), "recall": _metric(m, "metrics/recall(B)")})

        model.add_callback("on_train_epoch_end", on_epoch_end)
        model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
        budget = {"time": minutes / 60.0} if minutes else {}
        warmup = min(3.0, epochs / 10)
        try:
            with _no_downloads():
                model.train(data=str(export.data_yaml), epochs=epochs, imgsz=imgsz, batch=batch,
                            device=0 if info.name == "cuda" else info.name,
                            workers=0 if info.name == "cpu" else 2, amp=info.name == "cuda", plots=False, project=str(out_dir.resolve()),
                            name="train", exist_ok=True, patience=patience, seed=seed, deterministic=False, verbose=False, val=True,
                            optimizer="AdamW", lr0=lr0, warmup_epochs=warmup if warmup_epochs is None else warmup_epochs, nbs=nbs or batch,
                            mosaic=mosaic,
                            scale=scale, close_mosaic=close_mosaic, cache="ram" if cache else False, **budget)
            trainer = model.trainer
            best = Path(trainer.best)
            if not best.is_file():
                best = Path(trainer.last)
            if not best.is_file():
                raise TrainError("training produced no checkpoint")
        except Exception as exc:
            update_run(run_id, engine=engine, finished=True, status="failed", message=f"{exc.__class__.__name__}: {str(exc)[:300]}")
            raise
        final = out_dir / "best.pt"
        shutil.copyfile(best, final)
        shutil.copyfile(best, detectors_dir() / LATEST)
        raw = {k: v for k, v in (trainer.metrics or {}).items()}
        metrics = {
            "mAP50": _metric(raw, "metrics/mAP50(B)"), "mAP50-95": _metric(raw, "metrics/mAP50-95(B)"),
            "precision": _metric(raw, "metrics/precision(B)"), "recall": _metric(raw, "metrics/recall(B)"),
            "best_fitness": round(float(trainer.best_fitness), 4) if trainer.best_fitness is not None else None,
            "epochs_run": int(trainer.epoch) + 1, "seconds": round(time.perf_counter() - started, 1), "history": history,
        }
        from core.config import get_settings

        rel = final.resolve().relative_to(get_settings().home.resolve()).as_posix()
        update_run(run_id, engine=engine, finished=True, status="done", metrics=metrics, checkpoint_path=rel, progress=1.0,
                   message=f"trained {metrics['epochs_run']} epochs")
        return {"ok": True, "run_id": run_id, "name": name, "weights": str(final), "latest": str(detectors_dir() / LATEST),
                "dataset": export.to_dict(), "config": config, "metrics": metrics}


def evaluate_detector(weights: str | Path | None = None, *, split: str = "test", imgsz: int | None = None, batch: int = 16,
                      engine: Engine | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Box mAP50 / mAP50-95 / precision / recall of a detector (default: ``latest.pt``) on one split's labelled
    creatives, every ground-truth object as one class (``single_cls``: where things are, not which category;
    the test split holds the held-out categories). Writes a YOLO dataset under ``home/detectors/eval-<split>``."""
    from core.filestore import resolve
    from core.regions.yolo import _trained_imgsz, ultralytics_yolo
    from core.store import Ad, get_engine, session_scope

    progress = progress or no_progress
    engine = engine or get_engine()
    weights = Path(weights) if weights else latest_detector()
    if weights is None or not Path(weights).is_file():
        raise TrainError("no detector to evaluate: train one first (python -m core train-detector) or give its weights")
    with session_scope(engine) as s:
        rows = [(a.id, a.image_path, a.width, a.height, (a.truth or {}).get("objects") or [])
                for a in s.scalars(select(Ad).where(Ad.split == split).order_by(Ad.id))]
    rows = [r for r in rows if r[4]]
    if not rows:
        raise TrainError(f"no labelled creatives in the {split!r} split")
    root = detectors_dir() / f"eval-{_safe_name(split)}"
    if root.exists():
        shutil.rmtree(root)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    boxes = 0
    for done, (ad_id, image_path, width, height, objects) in enumerate(rows, 1):
        src = resolve(image_path)
        stem = _safe_name(ad_id)
        labels = [lab for lab in (yolo_label(o["box"], width, height) for o in objects) if lab is not None]
        _link_or_copy(src, root / "images" / "val" / f"{stem}{src.suffix.lower() or '.jpg'}")
        (root / "labels" / "val" / f"{stem}.txt").write_text("".join("0 " + " ".join(f"{v:.6f}" for v in lab) + "\n" for lab in labels))
        boxes += len(labels)
        progress(done, len(rows), f"export: {ad_id}")
    data = root / "data.yaml"
    data.write_text(f"path: {root.resolve()}\ntrain: images/val\nval: images/val\nnames:\n  0: 'object'\n")
    started = time.perf_counter()
    model = ultralytics_yolo()(str(weights), task="detect")
    size = int(imgsz or _trained_imgsz(model) or 640)
    with _no_downloads():
        metrics = model.val(data=str(data), imgsz=size, batch=batch, single_cls=True, plots=False, device="cpu", workers=0,
                            verbose=False, project=str(root.resolve()), name="val", exist_ok=True)
    raw = dict(metrics.results_dict)
    return {"ok": True, "weights": str(weights), "split": split, "images": len(rows), "boxes": boxes, "imgsz": size,
            "mAP50": _metric(raw, "metrics/mAP50(B)"), "mAP50-95": _metric(raw, "metrics/mAP50-95(B)"),
            "precision": _metric(raw, "metrics/precision(B)"), "recall": _metric(raw, "metrics/recall(B)"),
            "seconds": round(time.perf_counter() - started, 1)}
