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

Then (same home): `core ingest ads` of the first 10,000 ads (manifest + the home's image files) into an empty home
(``import_per_s``), one `core train --model ion --epochs 1` over the whole catalogue (``train_epoch_s``; its index is
the one the pages search), search figures on that run's own index vectors (``trained_search``), and every page in
Chromium on the served app (``pages``, bench/page_times.py). ``ADLENS_BENCH_SCALE_ROOT`` keeps the homes and the stages
done (a stopped run continues).

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


def pages_stage(home: str) -> dict:
    """In a stage process: every page's time in Chromium on the app served over this home (bench/page_times.py), with
    the ION run the train stage left; the ad opened is the first test-split ad whose neighbours Similar ads shows (for
    an ad with "nothing close", the page hides its results and its map: a cheaper page than the one to measure)."""
    from sqlalchemy import select

    from core.retrieval.nearest import search
    from core.store import Ad, get_engine, session_scope

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import page_times

    with session_scope(get_engine()) as s:
        candidates = s.scalars(select(Ad.id).where(Ad.split == "test").order_by(Ad.id).limit(50)).all()
    ad_id = next((a for a in candidates if not (search(None, ad_id=a, k=10).get("closeness") or {}).get("far")), candidates[0])
    return page_times.measure(_env(Path(home)), ad_id, Path(home) / "logs" / "bench-pages-server.log")


def trained_search_stage(run_id: str) -> dict:
    """In a stage process: search figures (as for the untrained vectors) on the vectors of the trained ION run's own index
    (reconstructed from FAISS), the embeddings the pages search."""
    import faiss

    from core.filestore import resolve
    from core.runs import get_run
    from core.search import VectorIndex

    run = get_run(int(run_id))
    stored = VectorIndex.load(resolve(run["index_path"]))
    if "IVF" in stored.factory:
        faiss.extract_index_ivf(stored.index).make_direct_map()
    vectors = stored.index.reconstruct_n(0, stored.index.ntotal)
    return {"run": int(run_id), **_search(np.asarray(vectors, np.float32), list(stored.ids))}


IMPORT_ADS = 10_000  # ads re-imported through `core ingest ads` (manifest + image folder) into an empty home


def import_stage(home: str) -> dict:
    """In a stage process: write a manifest of the first IMPORT_ADS ads of this world (their image files as they lie in the
    home's image store), then time `python -m core ingest ads` of it into a new, empty home."""
    import csv

    from sqlalchemy import select

    from core.store import Ad, Category, get_engine, session_scope

    home_path = Path(home)
    target = home_path.parent / f"{home_path.name}-import"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    manifest = target.parent / f"{home_path.name}-import.csv"
    written = 0
    with session_scope(get_engine()) as s, open(manifest, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["ad_id", "text", "image", "category", "split"])
        for ad_id, text, path, category, split in s.execute(
                select(Ad.id, Ad.text, Ad.image_path, Category.name, Ad.split).outerjoin(Category, Ad.category_id == Category.id)
                .order_by(Ad.id).limit(IMPORT_ADS)):
            writer.writerow([ad_id, text, path, category or "", split or ""])
            written += 1
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core", "ingest", "ads", str(manifest), "--images", str(home_path), "--json"],
                          cwd=REPO, env=_env(target), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ingest ads failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    out = json.loads(done.stdout[done.stdout.index("{"):])
    shutil.rmtree(target, ignore_errors=True)
    manifest.unlink()
    return {"ads": written, "seconds": round(seconds, 1), "per_s": round(written / seconds, 2), "imported": out.get("imported"),
            "rejected": out.get("rejected")}


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
    imported, _s, import_rss = _stage([str(Path(__file__).resolve()), "import", str(home)], home, "import")
    # one ION epoch over the whole catalogue (its region features read in parts), then the catalogue indexed: the run
    # the pages use; then every page in Chromium with nothing else running
    trained, train_s, train_rss = _stage(["-m", "core", "train", "--model", "ion", "--epochs", "1", "--json"], home, "train")
    run_id = trained.get("run_id") or trained.get("id")
    searched, _s, _rss = _stage([str(Path(__file__).resolve()), "trained-search", str(run_id)], home, "trained-search")
    (home / "logs").mkdir(exist_ok=True)
    pages, _s, pages_rss = _stage([str(Path(__file__).resolve()), "pages", str(home)], home, "pages")
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
        "import_ads": imported.get("ads"), "import_per_s": imported.get("per_s"), "import_s": imported.get("seconds"),
        "train_epoch_s": round(train_s, 1), "train_run": run_id, "trained_search": searched,
        "pages": pages.get("pages"), "page_warm_max_s": pages.get("slowest_warm_s"), "page_errors": pages.get("errors"),
        "peak_rss_gb": round(max(world_rss, extract_rss, embed_rss, self_rss, train_rss, pages_rss, import_rss), 3),
        "peak_rss_gb_by_stage": {"world": round(world_rss, 3), "extract": round(extract_rss, 3), "embed": round(embed_rss, 3),
                                 "index_search": round(self_rss, 3), "train_1_epoch": round(train_rss, 3),
                                 "app_pages": round(pages_rss, 3), "import": round(import_rss, 3)},
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
        n = f"{s['ads']:,} ads"
        world_disk = f", {s['world_disk_gb']} GB on disk" if s.get("world_disk_gb") is not None else ""
        rows.append((f"{n}: world (`demo --ads {s['ads']} --no-models`)",
                     f"{s['world_s']} s, {s.get('impressions') or 0:,} impressions ({s.get('impressions_per_ad')} per ad){world_disk}"))
        threads = f", {s['threads']} threads" if s.get("threads") else ""
        if s.get("import_per_s") is not None:
            rows.append((f"{n}: `ingest ads` of {s['import_ads']:,} of them (manifest + image folder) into an empty home",
                         f"{s['import_per_s']} ads/s ({s['import_s']} s)"))
        by_stage = s.get("peak_rss_gb_by_stage") or {}
        streamed = max((by_stage[k] for k in ("extract", "embed") if k in by_stage), default=s["peak_rss_gb"])
        rows.append((f"{n}: extraction + embedding (default detector, OCR off{threads})",
                     f"{s['extract_embed_per_s']} creatives/s end to end (extract {s['extract_per_s']}/s, embed {s['embed_per_s']}/s); "
                     f"peak {round(streamed, 2)} GB; disk {s['disk_gb']} GB (the home after every stage)"))
        if len(by_stage) > 4:
            rows.append((f"{n}: peak memory by stage (GB, each stage's own process)",
                         ", ".join(f"{k.replace('_', ' ')} {round(v, 2)}" for k, v in by_stage.items())))
        rows.append((f"{n}: index {s['index']} on the real embeddings",
                     f"build {s['index_build_s']} s, p50 {s['search_p50_ms']} ms, p99 {s['search_p99_ms']} ms, "
                     f"recall@10 {s['recall_at_10']}"))
        if s.get("train_epoch_s") is not None:
            rss = (s.get("peak_rss_gb_by_stage") or {}).get("train_1_epoch")
            rows.append((f"{n}: `train --model ion --epochs 1` (whole catalogue, then indexed)",
                         f"{s['train_epoch_s']} s, peak {rss} GB"))
        t = s.get("trained_search")
        if t:
            nprobe = f" (nprobe {t['nprobe']})" if t.get("nprobe") else ""
            rows.append((f"{n}: index {t['index']}{nprobe} on that trained ION's vectors",
                         f"build {t['index_build_s']} s, p50 {t['search_p50_ms']} ms, p99 {t['search_p99_ms']} ms, "
                         f"recall@10 {t['recall_at_10']}"))
        if s.get("pages"):
            warm = sorted(((p["warm_s"], name) for name, p in s["pages"].items()), reverse=True)
            url = max((p["url_s"], name) for name, p in s["pages"].items())
            rows.append((f"{n}: pages in Chromium, warm (sidebar click, median of 3)",
                         f"slowest {warm[0][1]} {warm[0][0]} s, then {warm[1][1]} {warm[1][0]} s; every page "
                         f"<= {warm[0][0]} s; opened by URL (new tab) slowest {url[1]} {url[0]} s; {s.get('page_errors', 0)} errors"))
    return rows


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] in ("embed", "profile", "pages", "import", "trained-search"):
    sys.path.insert(0, str(REPO))
    stages = {"embed": embed_stage, "profile": lambda _arg: profile_stage(), "pages": pages_stage, "import": import_stage,
              "trained-search": trained_search_stage}
    print(json.dumps(stages[sys.argv[1]](sys.argv[2])))
