"""Region detection speed: p50 latency per 1024x1024 creative and regions per second, per backend and device.

Backends: the offline detector (selective search + EfficientNet-Lite0) and YOLO. For YOLO the
configured weights are used when they are on this machine; otherwise a YOLOv8n built from its
architecture file (untrained weights, same computation as yolov8n.pt; no download). The creative is
a 1024x1024 collage of scikit-image photographs with printed words. OCR is timed separately.
Devices: CPU always, CUDA too when available (half precision there).

``describe``: catalogue throughput of detection + region descriptors (:mod:`core.regions.describe`), in
creatives per second, on the home's catalogue creatives (the first 64 by id; 512x512 collages when the
home has none) with the detector ``auto`` picks (the catalogue-trained YOLO when there is one), batch 8,
each descriptor mode timed on the boxes the detector kept.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def creative(seed: int = 0) -> Image.Image:
    """A 1024x1024 ad-like image: two photographs on a coloured background and a line of large text."""
    from skimage import data

    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (1024, 1024), tuple(int(v) for v in rng.integers(150, 255, 3)))
    canvas.paste(Image.fromarray(data.coffee()).resize((560, 374)), (40, 80))
    canvas.paste(Image.fromarray(data.astronaut()).resize((380, 380)), (620, 520))
    ImageDraw.Draw(canvas).text((60, 860), "FRESH ESPRESSO", font=ImageFont.load_default(size=72), fill=(30, 30, 30))
    return canvas


def _time_detector(detector, images: list[Image.Image], batch: int, conf: float) -> dict[str, Any]:
    detector.detect(images[:1], conf=conf)  # warm-up
    latencies, boxes = [], 0
    for img in images:
        t = time.perf_counter()
        boxes += len(detector.detect([img], conf=conf)[0])
        latencies.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    n_batched = 0
    for start in range(0, len(images), batch):
        n_batched += sum(len(r) for r in detector.detect(images[start: start + batch], conf=conf))
    batched_s = time.perf_counter() - t
    return {
        "images": len(images), "p50_ms": round(statistics.median(latencies), 1), "max_ms": round(max(latencies), 1),
        "regions_per_image": round(boxes / len(images), 1), "regions_per_s": round(boxes / (sum(latencies) / 1000), 1),
        "batch": batch, "conf": conf, "batched_images_per_s": round(len(images) / batched_s, 2),
        "batched_regions_per_s": round(n_batched / batched_s, 1),
    }


def _yolo_weights(tmp: Path) -> tuple[str, str]:
    from core.config import get_settings
    from core.regions.yolo import find_local_weights, trust_weights, ultralytics_yolo

    local = find_local_weights(get_settings().yolo_weights)
    if local is not None:
        return str(local), f"configured weights {local.name}"
    path = tmp / "yolov8n-arch.pt"
    ultralytics_yolo()("yolov8n.yaml").save(str(path))
    trust_weights(path)  # built here by this benchmark: as trusted as a --weights file
    return str(path), "yolov8n architecture, untrained weights (no yolov8n.pt on this machine)"


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from core.regions.ocr import read_text
    from core.regions.offline import OfflineDetector
    from core.regions.yolo import YoloDetector

    n = 3 if quick else 10
    images = [creative(i) for i in range(n)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out: dict[str, Any] = {"image": "1024x1024 collage", "torch_threads": torch.get_num_threads(), "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        weights, weights_note = _yolo_weights(Path(tmp))
        out["yolo_weights"] = weights_note
        for device in devices:
            for name, build in (("offline", lambda d: OfflineDetector(d)), ("yolo", lambda d: YoloDetector(weights, d))):
                t = time.perf_counter()
                detector = build(device)
                load_s = time.perf_counter() - t
                row = {"backend": name, "device": device, "load_s": round(load_s, 2), "detector": detector.version}
                # the untrained YOLO scores near 0: time it with conf 0 so it carries a realistic number of boxes
                conf = 0.0 if name == "yolo" and "untrained" in weights_note else 0.05
                row.update(_time_detector(detector, images, batch=8, conf=conf))
                out["results"].append(row)
    out["describe"] = describe_throughput(16 if quick else 64)
    t = time.perf_counter()
    words = [line.text for line in read_text(images[0])]
    out["ocr"] = {"ms_per_image": round((time.perf_counter() - t) * 1000, 1), "words": words}
    return out


def _catalogue_images(n: int) -> tuple[list[Image.Image], str]:
    try:
        from sqlalchemy import select

        from core.filestore import resolve
        from core.images import load_image
        from core.store import Ad, get_engine, session_scope

        with session_scope(get_engine()) as s:
            paths = list(s.scalars(select(Ad.image_path).order_by(Ad.id).limit(n)))
        if paths:
            return [load_image(resolve(p)).image for p in paths], f"{len(paths)} catalogue creatives"
    except Exception:  # noqa: BLE001 - no catalogue here: synthetic creatives
        pass
    return [creative(i).resize((512, 512)) for i in range(n)], f"{n} 512x512 collages"


def describe_throughput(n: int = 64, batch: int = 8) -> dict[str, Any]:
    """Creatives per second: detection alone, each descriptor mode alone, and detection + the default descriptors."""
    import torch

    from core.regions.describe import RegionDescriber
    from core.regions.registry import get_detector

    images, source = _catalogue_images(n)
    choice = get_detector("auto")
    det = getattr(choice.detector, "primary", choice.detector)  # time the detector and the descriptors apart
    det.detect(images[:batch])  # warm-up
    t = time.perf_counter()
    results = []
    for start in range(0, len(images), batch):
        results += det.detect(images[start: start + batch], conf=0.05, iou=0.5, max_det=50)
    detect_s = time.perf_counter() - t
    out: dict[str, Any] = {"images": source, "detector": det.version, "torch_threads": torch.get_num_threads(), "batch": batch,
                           "boxes_per_image": round(sum(len(r) for r in results) / len(images), 2),
                           "detect_images_per_s": round(len(images) / detect_s, 2), "modes": []}
    for settings in ({"mode": "crop", "crop_side": 96}, {"mode": "crop", "crop_side": 64}, {"mode": "roi", "input_side": 384}):
        d = RegionDescriber("cpu", **settings)
        d.describe(images[:batch], [r.boxes for r in results[:batch]])  # warm-up
        t = time.perf_counter()
        for start in range(0, len(images), batch):
            d.describe(images[start: start + batch], [r.boxes for r in results[start: start + batch]])
        describe_s = time.perf_counter() - t
        out["modes"].append({"describer": d.version, "describe_images_per_s": round(len(images) / describe_s, 2),
                             "end_to_end_images_per_s": round(len(images) / (detect_s + describe_s), 2)})
    return out


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    rows = [(f"{r['backend']} detector ({r['detector']}), {result['image']}, {r['device']}",
             f"p50 {r['p50_ms']:.0f} ms, {r['regions_per_image']} regions/image, batched {r['batched_images_per_s']} images/s")
            for r in result["results"]]
    d = result["describe"]
    rows.append((f"detector on catalogue creatives ({d['detector']}), batch {d['batch']}",
                 f"{d['detect_images_per_s']} creatives/s, {d['boxes_per_image']} boxes/creative"))
    rows += [(f"region descriptors {m['describer']}", f"{m['describe_images_per_s']} creatives/s alone, "
              f"{m['end_to_end_images_per_s']} creatives/s with detection") for m in d["modes"]]
    rows.append(("OCR (RapidOCR), one creative", f"{result['ocr']['ms_per_image']:.0f} ms"))
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
