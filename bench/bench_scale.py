"""A large catalogue end to end: demo world, region extraction, embedding, index, search (issue 15).

For each size (quick: 10k ads; full: 10k and 100k) a demo world is built in a temporary home
(`python -m core demo --ads N --no-models`: 20,000 users, impressions per ad scaled down automatically),
the shipped demo detector is installed (the default `auto` detector: trained YOLOv8n + EfficientNet-Lite0
region descriptors, OCR off), then `python -m core extract --no-ocr` (one process; ``EXTRACT_WORKERS`` > 1 runs it as
`--dask local:N` instead; ``extract_profile_per_image`` gives one process's cost per image and stage) fills the
region cache and every ad is
embedded (core.scale.embed_catalog_stream, chunks of 2,048 ads). The embedding model is the ION architecture
UNTRAINED (seeded, word table from MiniLM static vectors, vocabulary of the train split): training would dominate
the run and the figures here are throughput, memory and index quality, not retrieval precision. The vectors are
indexed with the index AdLens picks (``auto_factory``); search latency is one query at a time over 200 catalogue
ads, recall@10 is against exact (Flat) search on the same real embeddings.

Each stage runs in its own process; ``peak_rss_gb`` is the largest peak resident memory of any one of those processes
(and their children: the extraction's Dask workers) and of this one (resource.getrusage).
``disk_gb``: the home's files (images, database, region cache, vectors).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
USERS = 20_000
QUERIES = 200
EXTRACT_WORKERS = 1  # N > 1: extraction runs as `extract --dask local:N` (N single-threaded worker processes) instead
# torch threads of the extraction and embedding stages: every core of the machine (the targets are "on 2 cores");
# OMP_NUM_THREADS in the environment overrides it
STAGE_THREADS = str(os.cpu_count() or 1)
# a folder that keeps each size's home and the stages done in it: a run stopped part way (the 100k run takes hours)
# continues where it stopped, reusing the figures each finished stage recorded when it ran
ROOT_ENV = "ADLENS_BENCH_SCALE_ROOT"
MODEL_NOTE = "ION architecture, untrained (seed 0, MiniLM word vectors, train-split vocabulary)"
# runs a command and writes its peak RSS (kB, the largest of its process tree's waited-for processes) to a file
_RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
                "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)")


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "ADLENS_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1",
           "ADLENS_OFFLINE": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", STAGE_THREADS)}
    env.pop("ADLENS_DATABASE_URL", None)
    return env


def _stage(args: list[str], home: Path, name: str | None = None) -> tuple[dict, float, float]:
    """(the command's JSON output, seconds, peak RSS in GB) of ``python args...`` run in the home. A ``name``d stage
    records them in home/bench-stages/<name>.json once it has finished, and a later run reuses that record."""
    record = home / "bench-stages" / f"{name}.json" if name else None
    if record is not None and record.exists():
        kept = json.loads(record.read_text())
        return kept["out"], kept["seconds"], kept["rss_gb"]
    rss_file = home.parent / "rss.txt"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, str(rss_file), sys.executable, *args], cwd=REPO, env=_env(home),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
    rss_gb = int(rss_file.read_text()) / 1024 ** 2
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"out": out, "seconds": seconds, "rss_gb": rss_gb, "finished": time.time()}))
    return out, seconds, rss_gb


def _disk_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 ** 3


def embed_stage(out_dir: str) -> dict:
    """In a stage process (ADLENS_HOME set): embed the catalogue with the untrained ION into ``out_dir``."""
    from sqlalchemy import select

    from core.embed.pipeline import build_model
    from core.embed.text import Vocabulary, tokenize
    from core.embed.word_vectors import init_word_embeddings
    from core.scale import embed_catalog_stream
    from core.store import Ad, RegionSet, get_engine, session_scope

    engine = get_engine()
    with session_scope(engine) as s:
        texts = s.scalars(select(Ad.text).where(Ad.split == "train")).all()
        dim = s.scalar(select(RegionSet.feature_dim).limit(1))
    vocab = Vocabulary.build([[w.text for w in tokenize(t or "")] for t in texts])
    model = build_model("ion", len(vocab), int(dim), seed=0)
    init_word_embeddings(model.text.word, vocab.words)
    model.eval()
    return embed_catalog_stream(model, vocab, out_dir, engine=engine)


def profile_stage(n_images: int = 96, batch: int = 8) -> dict:
    """In a stage process: where extraction's time goes, per image (cached images re-read; nothing stored)."""
    from sqlalchemy import select

    from core.filestore import resolve
    from core.images import load_image
    from core.regions.registry import get_detector
    from core.store import Ad, get_engine, session_scope

    det = get_detector(None).detector
    with session_scope(get_engine()) as s:
        paths = s.scalars(select(Ad.image_path).order_by(Ad.id).limit(n_images + batch)).all()
    t0 = time.perf_counter()
    images = [load_image(resolve(p)).image for p in paths]
    decode = (time.perf_counter() - t0) / len(images)
    det.detect(images[:batch])  # warm-up
    yolo = describe = 0.0
    boxes = 0
    primary, describer = getattr(det, "primary", det), getattr(det, "describer", None)
    for lo in range(batch, len(images), batch):
        chunk = images[lo: lo + batch]
        t0 = time.perf_counter()
        found = primary.detect(chunk, conf=0.05, iou=0.5, max_det=50)
        t1 = time.perf_counter()
        if describer is not None:
            describer.describe_and_name(chunk, [r.boxes for r in found])
        yolo, describe = yolo + t1 - t0, describe + time.perf_counter() - t1
        boxes += sum(len(r) for r in found)
    n = len(images) - batch
    return {"decode_ms": round(1000 * decode, 1), "detector_ms": round(1000 * yolo / n, 1), "describe_ms": round(1000 * describe / n, 1),
            "boxes_per_image": round(boxes / n, 2), "torch_threads": __import__("torch").get_num_threads()}


def _search(vectors: np.ndarray, ids: list[str]) -> dict:
    from core.search import VectorIndex
    from core.search.index import SearchResult, recall_at_k

    t0 = time.perf_counter()
    index = VectorIndex.build(vectors, ids, factory="auto")
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(len(vectors), size=min(QUERIES, len(vectors)), replace=False)]
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(index.search(q[None, :], 10).ids[0])
        latencies.append((time.perf_counter() - t) * 1000)
    exact = VectorIndex(vectors.shape[1], "Flat")
    exact.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    exact.ids = ids
    recall = recall_at_k(SearchResult(found, np.zeros((len(found), 10))), exact.search(queries, 10), 10)
    return {"index": index.factory, "nprobe": index.nprobe or None, "index_build_s": round(build_s, 3),
            "search_p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "search_p99_ms": round(float(np.percentile(latencies, 99)), 3), "recall_at_10": round(recall, 4)}


def measure(n_ads: int, root: Path) -> dict:
    from core.demo.models import SHIPPED_DETECTOR

    home = root / f"home-{n_ads}"
    reused = sorted(p.stem for p in (home / "bench-stages").glob("*.json"))
    world, world_s, world_rss = _stage(["-m", "core", "demo", "--ads", str(n_ads), "--users", str(USERS), "--no-models", "--json"], home,
                                       "world")
    world_disk = world.get("bench_disk_gb")
    if world_disk is None:  # measured once, right after the world is built, kept in its stage record
        world_disk = world["bench_disk_gb"] = round(_disk_gb(home), 3)
        record = home / "bench-stages" / "world.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "out": world}))
    (home / "detectors").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHIPPED_DETECTOR, home / "detectors" / "latest.pt")
    workers = min(EXTRACT_WORKERS, os.cpu_count() or 1)
    spread = ["--dask", f"local:{workers}"] if workers > 1 else []
    extracted, extract_s, extract_rss = _stage(["-m", "core", "extract", "--no-ocr", "--batch-size", "8", *spread, "--json"], home,
                                               "extract")
    embedded, embed_s, embed_rss = _stage([str(Path(__file__).resolve()), "embed", str(home / "vectors")], home, "embed")
    profile, _s, _rss = _stage([str(Path(__file__).resolve()), "profile", "-"], home, "profile")
    from core.scale import load_parts

    ids, vectors = load_parts(home / "vectors")
    search = _search(vectors, ids)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return {
        "ads": n_ads, "users": USERS, "impressions": world.get("impressions"), "impressions_per_ad": world.get("impressions_per_ad"),
        "world_s": round(world_s, 1), "world_stage_s": world.get("stage_seconds"),
        "extract_mode": f"python -m core extract --no-ocr {' '.join(spread)}".strip(),
        "extract_s": round(extract_s, 1), "extract_per_s": round(n_ads / extract_s, 2),
        "extract_detect_s": extracted.get("seconds_detect"), "detector": extracted.get("detector"), "extract_profile_per_image": profile,
        "embed_s": round(embed_s, 1), "embed_per_s": round(n_ads / embed_s, 2), "embed_model_s": embedded.get("seconds_embed"),
        "extract_embed_per_s": round(n_ads / (extract_s + embed_s), 2), **search, "dim": int(vectors.shape[1]),
        "peak_rss_gb": round(max(world_rss, extract_rss, embed_rss, self_rss), 3),
        "peak_rss_gb_by_stage": {"world": round(world_rss, 3), "extract": round(extract_rss, 3), "embed": round(embed_rss, 3),
                                 "index_search": round(self_rss, 3)},
        "disk_gb": round(_disk_gb(home), 3), "world_disk_gb": world_disk, "model": MODEL_NOTE, "ocr": False,
        "threads": int(_env(home)["OMP_NUM_THREADS"]), "stages_reused": reused,
    }


def run(quick: bool = False) -> dict:
    sizes = [10_000] if quick else [10_000, 100_000]
    if os.environ.get(ROOT_ENV):
        root = Path(os.environ[ROOT_ENV]).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return {"model": MODEL_NOTE, "root": str(root), "sizes": [measure(n, root) for n in sizes]}
    with tempfile.TemporaryDirectory(prefix="adlens-scale-") as tmp:
        return {"model": MODEL_NOTE, "sizes": [measure(n, Path(tmp)) for n in sizes]}


def summary(result: dict) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    rows = []
    for s in result["sizes"]:
        rows.append((f"{s['ads']:,} ads: world, extraction + embedding (default detector, OCR off)",
                     f"world {s['world_s']} s; {s['extract_embed_per_s']} creatives/s end to end (extract {s['extract_per_s']}/s, "
                     f"embed {s['embed_per_s']}/s); peak {s['peak_rss_gb']} GB; disk {s['disk_gb']} GB"))
        rows.append((f"{s['ads']:,} ads: index {s['index']} on the real embeddings",
                     f"build {s['index_build_s']} s, p50 {s['search_p50_ms']} ms, p99 {s['search_p99_ms']} ms, "
                     f"recall@10 {s['recall_at_10']}"))
    return rows


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] in ("embed", "profile"):
    sys.path.insert(0, str(REPO))
    print(json.dumps(embed_stage(sys.argv[2]) if sys.argv[1] == "embed" else profile_stage()))
