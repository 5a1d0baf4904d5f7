"""Search latency (p50/p99, one query at a time) and recall@10 against exact search.

Vectors: 128-d, L2-normalised, drawn around 1,000 category centres (as ad embeddings are);
sizes 10k, 100k and 1M (quick: 10k and 100k). The index type is the one AdLens picks itself
(``auto_factory``). Recall is measured on 200 queries against exact (Flat) search.
"""

from __future__ import annotations

import time

import numpy as np

from core.search import VectorIndex, auto_factory, recall_at_k

DIM = 128


def clustered_unit_vectors(n: int, rng: np.random.Generator, centres: int = 1000) -> np.ndarray:
    c = rng.normal(size=(centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(n: int, rng: np.random.Generator, n_queries: int = 200) -> dict:
    both = clustered_unit_vectors(n + n_queries, rng)  # queries come from the same categories
    x, queries = both[:n], both[n:]
    ids = [str(i) for i in range(n)]
    t0 = time.perf_counter()
    index = VectorIndex.build(x, ids, factory="auto")
    build_s = time.perf_counter() - t0
    latencies = []
    results = []
    for q in queries:
        t = time.perf_counter()
        results.append(index.search(q[None, :], 10))
        latencies.append((time.perf_counter() - t) * 1000)
    approx_ids = [r.ids[0] for r in results]
    exact = VectorIndex(DIM, "Flat")
    exact.index.add(x)
    exact.ids = ids
    truth = exact.search(queries, 10)
    from core.search.index import SearchResult

    recall = recall_at_k(SearchResult(approx_ids, np.zeros((n_queries, 10))), truth, 10)
    return {
        "vectors": n,
        "index": auto_factory(n),
        "nprobe": index.nprobe or None,
        "build_s": round(build_s, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(recall, 4),
    }


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    return {"dim": DIM, "sizes": [measure(n, rng) for n in sizes]}


def summary(result: dict) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    return [(f"{s['vectors']:,} clustered {result['dim']}-d vectors, index {s['index']}"
             + (f", nprobe {s['nprobe']}" if s["nprobe"] else ""),
             f"build {s['build_s']} s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, recall@10 {s['recall_at_10']}")
            for s in result["sizes"]]
