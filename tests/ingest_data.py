"""Small import fixtures written by the ingest tests themselves: images, manifests, zips, a COCO set."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = ["red", "blue", "green", "orange", "purple", "yellow", "teal", "navy", "maroon", "olive", "lime", "gray", "pink", "brown"]


def png_bytes(size: tuple[int, int] = (48, 32), color: str = "red", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, color)
    arr = np.asarray(img).copy()
    arr[: size[1] // 2, : size[0] // 2] = rng.integers(0, 255, size=(size[1] // 2, size[0] // 2, 3))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_with_orientation(size: tuple[int, int], orientation: int, box: tuple[int, int, int, int] | None = None) -> bytes:
    """A JPEG of raw ``size`` with EXIF orientation; ``box`` (x1, y1, x2, y2) painted black on white."""
    img = Image.new("RGB", size, "white")
    if box is not None:
        arr = np.asarray(img).copy()
        x1, y1, x2, y2 = box
        arr[y1:y2, x1:x2] = 0
        img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height: a tiny file that claims far too many pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def write_images(folder: Path, count: int, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"{prefix}{i}.png"
        (folder / name).write_bytes(png_bytes((40 + i, 30 + i), COLORS[i % len(COLORS)], seed=i))
        names.append(name)
    return names


def write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> Path:
    import csv

    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def zip_folder(folder: Path, target: Path, top: str | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{top}/{path.name}" if top else path.name)
    return target


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- a small COCO-format dataset -------------------------------------------------------------

COCO_CATEGORIES = [(1, "person"), (3, "car"), (18, "dog"), (47, "cup"), (38, "kite"), (62, "chair")]


def coco_dataset(root: Path) -> dict:
    """12 images: 9 with a single category (some with several instances), 3 with two categories.

    Captions are listed out of id order so that "first caption" means the lowest id, not the first listed.
    Returns paths and the expected facts the tests check.
    """
    folder = root / "val2017"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, captions = [], [], []
    single = {  # image id -> (category id, [bboxes x, y, w, h])
        101: (18, [[5, 5, 30, 20], [40, 10, 10, 10]]),
        102: (18, [[0, 0, 20, 20]]),
        103: (3, [[10, 10, 40, 30], [1, 1, 5, 5], [50, 2, 8, 8]]),
        104: (3, [[2, 3, 20, 10]]),
        105: (47, [[4, 4, 16, 16]]),
        106: (47, [[8, 2, 30, 25]]),
        107: (38, [[1, 1, 50, 30]]),
        108: (1, [[20, 5, 10, 35]]),
        109: (62, [[3, 3, 12, 30]]),
    }
    multi = {110: [(18, [5, 5, 10, 10]), (1, [20, 20, 10, 10])], 111: [(3, [0, 0, 5, 5]), (47, [6, 6, 5, 5])],
             112: [(62, [1, 1, 9, 9]), (38, [2, 2, 20, 20])]}
    ann_id = 1000
    for k, image_id in enumerate(list(single) + list(multi)):
        w, h = 64 + k, 48
        name = f"{image_id:012d}.jpg"
        img = Image.new("RGB", (w, h), COLORS[k % len(COLORS)])
        img.save(folder / name, format="JPEG", quality=90)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        pairs = [(single[image_id][0], b) for b in single[image_id][1]] if image_id in single else multi[image_id]
        for cat, bbox in pairs:
            ann_id += 1
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
        # three captions, listed highest id first
        for j, cid in enumerate((image_id * 10 + 3, image_id * 10 + 1, image_id * 10 + 2)):
            captions.append({"id": cid, "image_id": image_id, "caption": f" caption {cid} of image {image_id} ({j}) "})
    cats = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in COCO_CATEGORIES]
    instances = root / "instances_val2017.json"
    instances.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    caps = root / "captions_val2017.json"
    caps.write_text(json.dumps({"images": images, "annotations": captions}))
    return {"instances": instances, "captions": caps, "images": folder, "single": single, "multi": multi}
