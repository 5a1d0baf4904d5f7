"""Why two ads are close, and what ION attended to: keywords, gates, SCA scores and the DFA matrix.

Plain dicts for the Similar ads and Attention pages (and the CLI); regions are listed in the
detector's confidence order with their boxes in image pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine

import core.retrieval.regions as region_reads  # looked up at call time: tests replace the region reads there
from core.embed.text import tokenize
from core.errors import RetrievalError
from core.retrieval.models import load_model
from core.retrieval.regions import RegionData, empty_regions
from core.runs import get_run
from core.store import get_engine


def _ad_inputs(run: dict[str, Any], ad_id: str, engine: Engine) -> tuple[str, RegionData, dict[str, Any]]:
    from core.catalog import get_ad

    try:
        record = get_ad(ad_id, engine)
    except KeyError as exc:
        raise RetrievalError(str(exc.args[0])) from None
    _key, _dim, regions = region_reads.regions_for_ads([ad_id], [record["image_hash"]], run["config"].get("detector"), engine=engine)
    reg = regions.get(record["image_hash"]) or empty_regions(int(run["config"].get("region_dim", 0)))
    return record["text"], reg, record


def attention(run_id: int, *, ad_id: str | None = None, image: Image.Image | None = None, text: str = "",
              engine: Engine | None = None) -> dict[str, Any]:
    """ION's view of one ad (catalog ``ad_id``, or an uploaded ``image`` + ``text``).

    -> {"words": [{word, in_vocab, keyword_label, keyword_prob, gate}], "regions": [{index, box, label, confidence,
    in_k1, alpha, kept, kept_rank}], "beta": [[n words x k kept]], "kept": [region indices], "ablate": [...]}.
    Values the model does not compute under an ablation are None.
    """
    from core.embed.attention import ion_attention

    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    if run["kind"] != "ion":
        raise RetrievalError(f"the attention view needs an ION run; run {run_id} is {run['kind']}")
    ckpt = load_model(run)
    record = None
    if ad_id:
        text, reg, record = _ad_inputs(run, ad_id, engine)
    elif image is not None:
        reg = region_reads.regions_for_image(image, run["config"].get("detector"), run["config"].get("regions_key"))
    else:
        raise RetrievalError("give a catalog ad or an uploaded image")
    att = ion_attention(ckpt.model, ckpt.vocab, text, reg.features, reg.confidences)
    in_k1 = set(att.region_order)
    kept_rank = {idx: r for r, idx in enumerate(att.kept)}
    words = [{"word": w, "in_vocab": v, "keyword_label": int(lab),
              "keyword_prob": None if att.keyword_prob is None else float(att.keyword_prob[i]),
              "gate": None if att.gate is None else float(att.gate[i])}
             for i, (w, v, lab) in enumerate(zip(att.words, att.in_vocab, att.keyword_label, strict=True))]
    regions = [{"index": i, "box": [float(v) for v in reg.boxes[i]], "label": reg.labels[i] if i < len(reg.labels) else "",
                "confidence": float(reg.confidences[i]), "in_k1": i in in_k1,
                "alpha": None if att.alpha is None else float(att.alpha[i]),
                "kept": i in kept_rank, "kept_rank": kept_rank.get(i)} for i in range(len(reg.confidences))]
    return {"run_id": run["id"], "ad": record["id"] if record else None, "text": text, "words": words, "regions": regions,
            "kept": att.kept, "beta": None if att.beta is None else att.beta.tolist(), "k1": ckpt.model.config.k1,
            "k2": ckpt.model.config.k2, "ablate": sorted(ckpt.model.config.ablate), "embedding_norm": float(np.linalg.norm(att.embedding))}


def _keywords(text: str) -> set[str]:
    return {w.text.lower() for w in tokenize(text) if w.keyword}


def _region_weights(att: dict[str, Any], shared: set[str]) -> dict[int, float]:
    """Weight of each kept region: its DFA attention (softmax over regions) summed over the shared keywords
    (over all words when none is shared); without DFA, the SCA alpha."""
    if att["beta"] is not None and att["kept"]:
        beta = np.asarray(att["beta"], np.float64)
        rows = [i for i, w in enumerate(att["words"]) if w["word"].lower() in shared] or list(range(len(beta)))
        if not rows:
            return {}
        b = beta[rows]
        p = np.exp(b - b.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        weights = p.mean(axis=0)
        return {int(idx): float(w) for idx, w in zip(att["kept"], weights, strict=True)}
    return {r["index"]: float(r["alpha"] if r["alpha"] is not None else r["confidence"]) for r in att["regions"] if r["kept"]}


def explain_pair(run_id: int, query_ad: str, result_ad: str, *, engine: Engine | None = None) -> dict[str, Any]:
    """Why ``result_ad`` is near ``query_ad``: shared keywords; for ION runs, each ad's kept regions weighted
    by the DFA attention of the shared keywords, and the best-matching region pairs (cosine of detector features)."""
    from core.catalog import get_ad

    engine = engine or get_engine()
    run = get_run(run_id, engine=engine)
    try:
        a, b = get_ad(query_ad, engine), get_ad(result_ad, engine)
    except KeyError as exc:
        raise RetrievalError(str(exc.args[0])) from None
    shared = sorted(_keywords(a["text"]) & _keywords(b["text"]))
    out: dict[str, Any] = {"run_id": run_id, "query": query_ad, "result": result_ad, "shared_keywords": shared,
                           "same_category": a["category"] is not None and a["category"] == b["category"],
                           "regions": None, "pairs": []}
    if run["kind"] != "ion":
        return out
    att_a, att_b = attention(run_id, ad_id=query_ad, engine=engine), attention(run_id, ad_id=result_ad, engine=engine)
    wa, wb = _region_weights(att_a, set(shared)), _region_weights(att_b, set(shared))
    out["regions"] = {
        "query": [{**r, "weight": wa.get(r["index"], 0.0)} for r in att_a["regions"] if r["kept"]],
        "result": [{**r, "weight": wb.get(r["index"], 0.0)} for r in att_b["regions"] if r["kept"]],
    }
    detector = run["config"].get("detector")
    _k, _d, regs = region_reads.regions_for_ads([query_ad, result_ad], [a["image_hash"], b["image_hash"]], detector, engine=engine)
    fa, fb = regs.get(a["image_hash"]), regs.get(b["image_hash"])
    if fa is not None and fb is not None and att_a["kept"] and att_b["kept"]:
        va = fa.features[att_a["kept"]]
        vb = fb.features[att_b["kept"]]
        va = va / np.maximum(np.linalg.norm(va, axis=1, keepdims=True), 1e-9)
        vb = vb / np.maximum(np.linalg.norm(vb, axis=1, keepdims=True), 1e-9)
        sim = va @ vb.T
        order = np.dstack(np.unravel_index(np.argsort(-sim, axis=None), sim.shape))[0][:3]
        out["pairs"] = [{"query_region": int(att_a["kept"][i]), "result_region": int(att_b["kept"][j]),
                         "cosine": round(float(sim[i, j]), 4)} for i, j in order]
    return out
