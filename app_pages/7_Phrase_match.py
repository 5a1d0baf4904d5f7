"""Phrase match: which creative fits which search phrase, by LXMERT, CLIP, early fusion and ION scorers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import time

import pandas as pd
import streamlit as st

from core.catalog import AdFilter, category_names, get_ad, list_ads
from core.matching import figures
from core.matching.registry import SCORERS
from core.runs import get_run
from ui.cards import ad_grid
from ui.common import engine, md_escape, page_end, page_frame
from ui.images import load_creative, placeholder
from ui.waiting import job_progress, run_warnings, wait_for

MAX_CREATIVES = 100
TRAIN_HINT = "python -m core train-matcher --scorer {name}"


def main() -> None:
    stats = page_frame("Phrase match", "Phrase match: which creative fits which search phrase")
    st.caption("Type search phrases, pick creatives, and compare every scorer's probability that the creative is relevant "
               "to the phrase (creative-selection paper: LXMERT cross-encoder against CLIP, early fusion, and our ION).")
    scorers_panel()
    score_tab, eval_tab = st.tabs([":material/manage_search: Score creatives", ":material/show_chart: Stored evaluations"])
    with score_tab:
        score_view(stats)
    with eval_tab:
        evaluations_view()
    page_end(stats)


def scorers_panel() -> None:
    """Which variant of each scorer runs, and why; a train / re-train control per scorer (one job system with the CLI)."""
    from core.matching.service import latest_matchers

    trained = latest_matchers(engine())
    missing = [n for n in SCORERS if n not in trained]
    waiting = [n for n in missing if wait_for([f"matcher-{n}"], f"the {figures.SCORER_LABELS[n]} scorer")]
    with st.expander("Scorers: which variant runs, and why; train or re-train", expanded=bool(set(missing) - set(waiting)),
                     icon=":material/info:"):
        rows = []
        for name in SCORERS:
            info = trained.get(name)
            rows.append({"scorer": figures.SCORER_LABELS[name], "run": info["run_id"] if info else None,
                         "variant": info["variant"] if info else "being built" if name in waiting else "not trained",
                         "why": info["reason"] if info else f"train it below or: {TRAIN_HINT.format(name=name)}"})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        for info in trained.values():
            run_warnings(get_run(info["run_id"], engine=engine()))
        train_controls(trained)
    job_progress([f"matcher-{n}" for n in SCORERS], key="pm_jobs")


def train_controls(trained: dict) -> None:
    """Start `train-matcher` for one scorer in the background, with the demo build's recipe for it."""
    from core import jobs
    from core.demo.models import stage_for_kind

    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.selectbox("Scorer", SCORERS, format_func=lambda n: figures.SCORER_LABELS[n], key="pm_train_scorer")
    stage = stage_for_kind(f"matcher-{name}")
    args = list(stage.args) if stage and stage.args else ["train-matcher", "--scorer", name]
    c1.caption(f"Recipe: `python -m core {' '.join(args)}` · budget about {stage.budget_s // 60 if stage else '?'} min on 2 CPU "
               "cores. The ION scorer needs a finished ION run.")
    label = "Re-train" if name in trained else "Train"
    if c2.button(f"{label} {figures.SCORER_LABELS[name]}", icon=":material/model_training:", key="pm_train_go"):
        pid, log = jobs.start_command(args, label=f"matcher-{name}-{int(time.time())}")
        st.toast(f"Training {figures.SCORER_LABELS[name]} in the background (process {pid}; log {log.name})")
        time.sleep(1.0)  # the job creates its run row within a second or two: show it at once
        st.rerun()


# ---------------------------------------------------------------- scoring


def choose_creatives(stats: dict) -> tuple[list[str], list]:
    """(catalog ad ids, uploaded Creative objects) from the chosen source."""
    from core.audience.packages import package_ad_ids, package_choices

    eng = engine()
    source = st.radio("Creatives from", ["Catalog", "Package", "Upload"], horizontal=True, key="pm_source")
    if source == "Catalog":
        if not stats.get("ads"):
            st.info("The catalog is empty: build the demo world (`python -m core demo`) or import ads.", icon=":material/inbox:")
            return [], []
        c1, c2, c3 = st.columns([3, 3, 1])
        cats = c1.multiselect("Categories", category_names(eng), key="pm_categories", placeholder="all categories")
        text = c2.text_input("Search", key="pm_search", placeholder="text, ad id or category")
        limit = c3.number_input("How many", 1, MAX_CREATIVES, 24, key="pm_limit")
        records, _total = list_ads(AdFilter(categories=cats or None, text=text or None), limit=int(limit), engine=eng)
        return [r["id"] for r in records], []
    if source == "Package":
        packages = package_choices(eng)
        if not packages:
            st.info("No package in the catalog yet.", icon=":material/inventory_2:")
            return [], []
        pid = st.selectbox("Package", packages, format_func=lambda p: f"{p[1]} ({p[2]} ads)", key="pm_package")[0]
        return package_ad_ids(pid, eng)[:MAX_CREATIVES], []
    return [], uploaded_creatives()


def uploaded_creatives() -> list:
    from core.images import ImageError, decode_image
    from core.matching.features import creative_from_image

    files = st.file_uploader("Creatives (PNG, JPEG, WebP)", type=["png", "jpg", "jpeg", "webp", "gif", "bmp"],
                             accept_multiple_files=True, key="pm_uploads")
    text = st.text_input("Ad text of the uploads (optional: only ION reads the text)", key="pm_upload_text")
    out = []
    for f in files or []:
        try:
            decoded = decode_image(f.getvalue(), name=f.name)
        except ImageError as exc:
            st.error(f"{f.name}: {exc}")
            continue
        cache = st.session_state.setdefault("pm_upload_cache", {})
        if decoded.sha256 not in cache:
            with st.spinner(f"Detecting the regions of {f.name}…"):
                cache[decoded.sha256] = creative_from_image(decoded.image, key=f"upload:{f.name}")
        creative = cache[decoded.sha256]
        if creative.text != text:
            creative.text = text
            creative.extra.pop("ion", None)
        out.append(creative)
    return out


def score_view(stats: dict) -> None:
    from core.matching.service import load_creatives, score_creatives, uncached_ads

    phrases_text = st.text_area("Search phrases (one per line)", "fruit\nrunning shoes\n咖啡", key="pm_phrases", height=100)
    phrases = [p.strip() for p in phrases_text.splitlines() if p.strip()]
    ad_ids, uploads = choose_creatives(stats)
    n = len(ad_ids) + len(uploads)
    todo = uncached_ads(ad_ids, engine()) if ad_ids else []
    if todo:
        st.caption(f":material/hourglass: {len(todo)} of these creatives have no cached regions yet: they are detected first "
                   "(seconds per image on CPU; `python -m core extract` does the whole catalog).")
    if st.button(f"Score {n} creative(s) for {len(phrases)} phrase(s)", type="primary", disabled=not (phrases and n), key="pm_go"):
        from core.matching.service import latest_matchers

        if not latest_matchers(engine()):  # before any detection: nothing could use it
            st.warning("No scorer is trained yet: train one above (or wait for the demo build), then score.",
                       icon=":material/model_training:")
            return
        bar = st.progress(0.0, text="Loading creatives…")

        def progress(done: int, total: int, message: str) -> None:
            bar.progress(min(1.0, done / max(1, total)), text=message)

        try:
            creatives = load_creatives(ad_ids, engine(), progress=progress) if ad_ids else {}
            ordered = [creatives[a] for a in ad_ids if a in creatives] + uploads
            result = score_creatives(phrases, ordered, engine=engine())
        except (ValueError, RuntimeError) as exc:
            bar.empty()
            st.error(str(exc))
            return
        bar.empty()
        st.session_state["pm_result"] = result
        st.session_state["pm_creatives"] = {c.key: c for c in ordered}
    result = st.session_state.get("pm_result")
    if result:
        show_result(result, st.session_state.get("pm_creatives", {}))


def show_result(result: dict, creatives: dict) -> None:
    if result.get("missing"):
        st.warning("Not trained yet: " + ", ".join(figures.SCORER_LABELS[m] for m in result["missing"]) + ". Train with `"
                   + TRAIN_HINT.format(name="NAME") + "`.", icon=":material/model_training:")
    for name, message in result.get("errors", {}).items():
        st.error(f"{figures.SCORER_LABELS[name]}: {message}")
    if not result["scores"]:
        return
    st.subheader("Every scorer's probability of relevance")
    st.plotly_chart(figures.score_heatmap(result), key="pm_heatmap")
    st.caption(" · ".join(f"**{figures.SCORER_LABELS[n]}**: {md_escape(v['variant'])} ({result['seconds'].get(n, '?')} s)"
                          for n, v in result["variants"].items()))
    st.subheader("Best creatives per phrase")
    tabs = st.tabs(result["phrases"])
    for p_idx, tab in enumerate(tabs):
        with tab:
            cols = st.columns(len(result["scores"]))
            for col, (name, matrix) in zip(cols, result["scores"].items(), strict=True):
                with col:
                    st.markdown(f"**{figures.SCORER_LABELS[name]}**")
                    best = sorted(range(len(result["creatives"])), key=lambda i, m=matrix: -m[p_idx][i])[:3]
                    for i in best:
                        best_card(result["creatives"][i], matrix[p_idx][i], creatives, widget_key=f"{name}-{p_idx}-{i}")
    attention_view(result, creatives)


def best_card(key: str, prob: float, creatives: dict, widget_key: str) -> None:
    caption = f"P(relevant) = {prob:.3f}"
    if key.startswith("upload:"):
        with st.container(border=True):
            image = creatives[key].extra.get("pil")
            st.image(image if image is not None else placeholder(), width="stretch")
            st.caption(f"{md_escape(key[len('upload:'):])} · {caption}")
        return
    try:
        record = get_ad(key, engine())
    except (KeyError, ValueError):
        st.caption(f"{key}: {caption}")
        return
    ad_grid([record], columns=1, captions=[caption], key_prefix=f"pm-{widget_key}")


def attention_view(result: dict, creatives: dict) -> None:
    """For one phrase and one creative, what each scorer looked at, side by side, drawn over the creative."""
    from core.matching.service import get_matcher, latest_matchers

    st.subheader("What each scorer looked at")
    st.caption("LXMERT, CLIP-style and early fusion see only the phrase and the picture; ION's scorer reads the ad text too.")
    c1, c2 = st.columns([2, 3])
    phrase = c1.selectbox("Phrase", result["phrases"], key="pm_att_phrase")
    key = c2.selectbox("Creative", result["creatives"], key="pm_att_creative")
    creative = creatives.get(key)
    if creative is None:
        return
    if not len(creative.region_conf):
        st.info("This creative has no detected region: there is nothing to attend to.", icon=":material/crop_free:")
        return
    trained = latest_matchers(engine(), list(result["scores"]))
    image = creative.extra.get("pil") if key.startswith("upload:") else load_creative(creative.image_path)
    views = {name: get_matcher(info).explain(phrase, creative) for name, info in trained.items()}
    silent = [figures.SCORER_LABELS[n] for n, view in views.items() if view is None]
    views = {name: view for name, view in views.items() if view is not None}
    if silent:
        st.caption(f"No region view for {', '.join(silent)}: that run does not weigh this creative's regions "
                   "(it reads one global image vector, or has no DFA).")
    if not views:
        return
    for tab, (name, view) in zip(st.tabs([figures.SCORER_LABELS[n] for n in views]), views.items(), strict=True):
        with tab:
            explanation_panel(name, view, phrase, image)


def unique_labels(labels: list[str]) -> list[str]:
    """``labels`` with repeats numbered ('the', 'cat', 'the (2)'): a table's index and a picker need unique names."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def explanation_panel(name: str, view: dict, phrase: str, image) -> None:
    import numpy as np

    st.caption(f"{md_escape(view['title'])}. {md_escape(view['note'])}")
    weights = np.asarray(view["weights"], dtype=float)
    columns = [f"r{i} {lab}" for i, lab in enumerate(view["labels"])]
    row = weights
    tokens = unique_labels(view["tokens"]) if view["tokens"] is not None else None  # a phrase may repeat a word
    if tokens is not None:
        word = st.selectbox("Word", [-1, *range(len(tokens))], key=f"pm_att_word_{name}",
                            format_func=lambda i: "all words (mean)" if i < 0 else tokens[i])
        row = weights.mean(0) if word < 0 else weights[word]
    left, right = st.columns([3, 2])
    with left:
        shown = figures.attention_overlay(image if image is not None else placeholder(), view["boxes_px"], row)
        st.image(shown, caption=f"'{phrase}' · P(relevant) = {view['probability']:.3f} · darker = more weight", width="stretch")
    with right:
        table = (pd.DataFrame(weights, index=tokens, columns=unique_labels(columns)) if tokens is not None
                 else pd.DataFrame([weights], index=["weight"], columns=unique_labels(columns)))
        st.dataframe(table.style.format("{:.2f}").background_gradient(axis=1, cmap="Purples"), width="stretch")


# ---------------------------------------------------------------- evaluations


def group_view(evaluation: dict) -> None:
    """AUC per kind of pair beside the ceiling of a scorer that knows only which categories are visible."""
    rows = figures.group_rows(evaluation.get("summary", {}).get("ceiling"), evaluation.get("scorers", {}))
    if not rows:
        return
    st.markdown("**AUC by kind of pair**")
    st.caption("*ceiling*: a scorer that knows exactly which categories are visible in each creative (ground truth) and "
               "nothing else. *absent* / *visible*: relevant pairs against irrelevant ones whose category is absent from / "
               "visible in the picture. A scorer that learns which visible object is the one sold can pass the ceiling on "
               "*visible*. LXMERT, CLIP and early fusion see only the phrase and the picture; ION reads the ad text too.")
    st.dataframe(pd.DataFrame(rows).set_index("scorer").style.format("{:.3f}", na_rep="–"), width="stretch")



def evaluations_view() -> None:
    from core.matching.service import list_evaluations

    evaluations = list_evaluations(engine())
    if not evaluations:
        st.info("No stored evaluation yet: `python -m core evaluate-matching` (held-out phrases of the catalog) or "
                "`python -m core evaluate-matching --judgements FILE.csv` (phrase, ad_id, label).", icon=":material/show_chart:")
        return
    chosen = st.selectbox("Evaluation", evaluations, key="pm_eval",
                          format_func=lambda e: f"#{e['id']} · {e['set']} · {e['created_at'][:16]}")
    summary = chosen["summary"]
    st.caption(f"{summary.get('triples', '?')} (phrase, creative) pairs · {summary.get('phrases', '?')} phrases · "
               f"{summary.get('positives', '?')} relevant · 95% intervals by stratified bootstrap")
    st.dataframe(pd.DataFrame(figures.evaluation_rows(chosen)), hide_index=True, width="stretch")
    group_view(chosen)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.roc_figure(chosen), key="pm_roc")
    with right:
        st.plotly_chart(figures.reliability_figure(chosen), key="pm_reliability")


main()
