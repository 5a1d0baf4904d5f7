"""Import MS-COCO the way the ION paper did (section 4.1): single-category images, caption as ad text.

* Only images whose annotations all carry ONE object category are kept (the paper's 25,211 of
  train+val 2014); images with no annotation or no caption are left out and counted.
* Ad text = the image's first caption (lowest caption id); category = the COCO category name;
  truth = {"product_box": [x1, y1, x2, y2] of the largest instance, "objects": every instance's box}
  in the pixels of the EXIF-rotated image (the picture a person sees).
* ``unseen_categories`` categories, drawn from ``seed``, are held out: Category.unseen=True and their
  ads only in the test split. The other ads are split train/val/test ~ 70/10/20, fixed by seed + image id.
* Ad ids ``coco-<image_id>``, source ``coco``. All-or-nothing like every importer: a listed image that
  is missing or unreadable rejects the import (row = 1-based index in the instances ``images`` list).
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import Engine, select

from core.images import DecodedImage
from core.ingest.adrows import MAX_CATEGORY, AdRow, detect_lang, inspect_images, split_existing, write_ads
from core.ingest.archive import open_images
from core.ingest.common import engine_or_default, progress_or_silent, raise_if_rejected, split_for
from core.ingest.report import ImportReport
from core.progress import ProgressFn
from core.store import IN_CHUNK, Category, chunks, session_scope
from core.uploads import check_upload_size

STAGE = "coco"
EXIF_ORIENTATION = 0x0112


def _load_json(path: Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; expected a COCO JSON file")
    check_upload_size(path.name, path.stat().st_size)
    try:
        doc = json.loads(path.read_bytes())
    except RecursionError:
        raise ValueError(f"{path.name} ({what}) is nested too deeply to be a COCO file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} ({what}) is not UTF-8 JSON text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} ({what}) is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name} ({what}) must hold a JSON object with 'images', 'annotations' and 'categories'")
    return doc


def _records(doc: dict[str, Any], key: str, path: Path, fields: dict[str, tuple[type, ...]]) -> list[dict[str, Any]]:
    """``doc[key]`` as a list of objects having ``fields`` of the given types; ValueError naming the first bad record."""
    if key not in doc:
        kind = "captions" if key == "annotations" else "instances"
        raise ValueError(f"{path.name}: the '{key}' list is missing; is this a COCO {kind} file?")
    items = doc[key]
    if not isinstance(items, list):
        raise ValueError(f"{path.name}: '{key}' must be a list")
    for i, rec in enumerate(items):
        if not isinstance(rec, dict):
            raise ValueError(f"{path.name}: {key}[{i}] must be an object")
        for name, types in fields.items():
            value = rec.get(name)
            if value is None or isinstance(value, bool) or not isinstance(value, types):
                want = " or ".join("number" if t in (int, float) else "text" if t is str else t.__name__ for t in types)
                raise ValueError(f"{path.name}: {key}[{i}] needs '{name}' ({want}), found {value!r}")
    return items


def _xyxy(bbox: Any) -> list[float] | None:
    """COCO [x, y, w, h] -> [x1, y1, x2, y2], or None when it is not four finite numbers with w, h >= 0."""
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        return None
    return [x, y, x + w, y + h]


def orient_box(box: list[float], orientation: int, width: int, height: int) -> list[float]:
    """A box on the raw (stored) pixels -> the same box after EXIF ``orientation`` is applied.

    ``width``/``height`` are the raw image size; the transform matches PIL's ``ImageOps.exif_transpose``.
    """
    x1, y1, x2, y2 = box
    w, h = float(width), float(height)

    def point(x: float, y: float) -> tuple[float, float]:
        if orientation == 2:
            return w - x, y
        if orientation == 3:
            return w - x, h - y
        if orientation == 4:
            return x, h - y
        if orientation == 5:
            return y, x
        if orientation == 6:
            return h - y, x
        if orientation == 7:
            return h - y, w - x
        if orientation == 8:
            return y, w - x
        return x, y

    (ax, ay), (bx, by) = point(x1, y1), point(x2, y2)
    return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]


def _clip(box: list[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(min(max(x1, 0.0), width), 2), round(min(max(y1, 0.0), height), 2),
            round(min(max(x2, 0.0), width), 2), round(min(max(y2, 0.0), height), 2)]


def choose_unseen(category_ids: list[int], count: int, seed: int) -> set[int]:
    """The held-out categories: ``count`` of ``category_ids`` drawn by ``seed`` (order of the input does not matter)."""
    pool = sorted(set(category_ids))
    if count < 0:
        raise ValueError("unseen_categories cannot be negative")
    if count >= len(pool):
        raise ValueError(
            f"unseen_categories={count} leaves no category for training: only {len(pool)} categories have single-category images"
        )
    return set(random.Random(seed).sample(pool, count))


def _check_stored_categories(engine: Engine, unseen_by_name: dict[str, bool]) -> None:
    with session_scope(engine) as s:
        stored: dict[str, bool] = {}
        for part in chunks(sorted(unseen_by_name), IN_CHUNK):
            stored.update(s.execute(select(Category.name, Category.unseen).where(Category.name.in_(part))).all())
    clash = sorted(n for n, flag in stored.items() if flag != unseen_by_name[n])
    if clash:
        raise ValueError(
            f"{len(clash)} categor{'y' if len(clash) == 1 else 'ies'} ({', '.join(clash[:5])}) already stored with a different "
            "held-out (unseen) setting: COCO was imported before with another --seed or --unseen-categories. "
            "Use the same values, or import into a fresh AdLens home."
        )


def import_coco(
    instances: Path, captions: Path, images: Path, *, unseen_categories: int = 20, seed: int = 0,
    engine: Engine | None = None, progress: ProgressFn | None = None,
) -> ImportReport:
    """Import the single-category images of a COCO split (instances + captions JSON + image folder or zip)."""
    progress = progress_or_silent(progress)
    instances, captions = Path(instances), Path(captions)
    progress(0, 0, f"{STAGE}: reading annotations")
    inst = _load_json(instances, "instances")
    caps = _load_json(captions, "captions")
    image_recs = _records(inst, "images", instances, {"id": (int,), "file_name": (str,)})
    ann_recs = _records(inst, "annotations", instances, {"id": (int,), "image_id": (int,), "category_id": (int,)})
    cat_recs = _records(inst, "categories", instances, {"id": (int,), "name": (str,)})
    cap_recs = _records(caps, "annotations", captions, {"id": (int,), "image_id": (int,), "caption": (str,)})

    cat_name = {c["id"]: c["name"].strip() for c in cat_recs}
    for c in cat_recs:
        if not c["name"].strip() or len(c["name"].strip()) > MAX_CATEGORY:
            raise ValueError(f"{instances.name}: category {c['id']} has an empty or over-long name")
    if len(set(cat_name.values())) != len(cat_name):
        raise ValueError(f"{instances.name}: two categories share one name")
    anns_by_image: dict[int, list[dict[str, Any]]] = {}
    for a in ann_recs:
        if a["category_id"] not in cat_name:
            raise ValueError(f"{instances.name}: annotation {a['id']} names category {a['category_id']}, which is not in 'categories'")
        anns_by_image.setdefault(a["image_id"], []).append(a)
    first_caption: dict[int, tuple[int, str]] = {}
    for c in cap_recs:
        best = first_caption.get(c["image_id"])
        if best is None or c["id"] < best[0]:
            first_caption[c["image_id"]] = (c["id"], c["caption"].strip())

    engine = engine_or_default(engine)
    report = ImportReport(kind="coco", source=str(instances))
    excluded: Counter[str] = Counter()
    candidates: list[tuple[int, dict[str, Any], int, list[list[float]]]] = []  # (row, image record, category id, raw boxes)
    seen_ids: dict[int, int] = {}
    for i, rec in enumerate(image_recs):
        row, image_id = i + 1, rec["id"]
        if image_id in seen_ids:
            report.reject(row, f"image id {image_id} is listed twice (first as record {seen_ids[image_id]})", "id")
            continue
        seen_ids[image_id] = row
        anns = anns_by_image.get(image_id, [])
        cats = {a["category_id"] for a in anns}
        if not anns:
            excluded["no_objects"] += 1
            continue
        if len(cats) > 1:
            excluded["multi_category"] += 1
            continue
        if image_id not in first_caption:
            excluded["no_caption"] += 1
            continue
        boxes = [_xyxy(a.get("bbox")) for a in anns]
        if any(b is None for b in boxes):
            bad = next(a["id"] for a, b in zip(anns, boxes, strict=True) if b is None)
            report.reject(row, f"annotation {bad} of image {image_id} has no valid bbox [x, y, width, height]", "bbox")
            continue
        candidates.append((row, rec, cats.pop(), boxes))  # type: ignore[arg-type]
    if not candidates and not report.errors:
        raise ValueError(f"{instances.name}: no image has exactly one object category and a caption; nothing to import")

    held = choose_unseen([c[2] for c in candidates], unseen_categories, seed) if candidates else set()
    unseen_by_name = {cat_name[cid]: cid in held for cid in {c[2] for c in candidates}}
    _check_stored_categories(engine, unseen_by_name)

    raw_boxes: dict[str, list[list[float]]] = {}
    declared_size: dict[str, tuple[int, int] | None] = {}
    rows: list[AdRow] = []
    for row, rec, cid, boxes in candidates:
        ad_id = f"coco-{rec['id']}"
        text = first_caption[rec["id"]][1]
        if not text:
            report.reject(row, f"the first caption of image {rec['id']} is empty", "caption")
            continue
        split = "test" if cid in held else split_for(f"coco-split:{seed}:{rec['id']}", 0.7, 0.1)
        raw_boxes[ad_id] = boxes
        w, h = rec.get("width"), rec.get("height")
        declared_size[ad_id] = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        rows.append(AdRow(row=row, ad_id=ad_id, text=text, lang=detect_lang(text), image_name=rec["file_name"],
                          category=cat_name[cid], split=split))

    def place_boxes(r: AdRow, data: bytes, decoded: DecodedImage) -> str | None:
        with Image.open(io.BytesIO(data)) as raw:
            raw_w, raw_h = raw.size
            orientation = int(raw.getexif().get(EXIF_ORIENTATION, 1) or 1)
        size = declared_size[r.ad_id]
        if size is not None and size != (raw_w, raw_h):
            return (f"image '{r.image_name}' is {raw_w}x{raw_h} pixels but the instances file says {size[0]}x{size[1]}; "
                    "its boxes would not line up")
        width, height = decoded.size
        placed = [_clip(orient_box(b, orientation, raw_w, raw_h), width, height) for b in raw_boxes[r.ad_id]]
        largest = max(placed, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        r.truth = {"product_box": largest, "objects": placed, "coco_image_id": int(r.ad_id.removeprefix("coco-"))}
        return None

    report.details.update({
        "images_listed": len(image_recs),
        "kept": len(candidates),
        "excluded_multi_category": excluded["multi_category"],
        "excluded_no_objects": excluded["no_objects"],
        "excluded_no_caption": excluded["no_caption"],
        "seed": seed,
        "unseen_categories": sorted(cat_name[c] for c in held),
    })
    with open_images(images) as image_source:
        rows = inspect_images(rows, image_source, report, progress, STAGE, check=place_boxes)
        rows = split_existing(rows, engine, report)
        raise_if_rejected(report)
        report.details["splits"] = dict(sorted(Counter(r.split for r in rows).items()))
        meta = {cat_name[cid]: {"coco_id": cid} for cid in {c[2] for c in candidates}}
        write_ads(rows, image_source, engine, report, progress, STAGE, ad_source="coco", category_source="coco",
                  unseen=unseen_by_name, category_meta=meta)
    return report
