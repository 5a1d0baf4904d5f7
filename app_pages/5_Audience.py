"""Audience: a package's targeting model enlarged by the clickers of similar ads (ION section 4.7)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import pandas as pd
import streamlit as st

from core.audience import AudienceError, ExpansionConfig, make_retriever, run_all_packages, run_expansion
from core.audience.charts import ctr_figure, importance_figure, positives_figure, roc_figure
from core.audience.packages import create_package, list_packages
from core.audience.retrieval import embedding_runs
from core.audience.store import audience_csv, get_run, list_runs
from core.catalog import get_ad
from ui.adpicker import pick_ad
from ui.cards import ad_grid
from ui.common import data_changed, engine, page_end, page_frame
from ui.waiting import wait_for

SIZES = (0.01, 0.02, 0.05, 0.1, 0.2)


def progress_bar():
    bar = st.progress(0.0, text="starting…")

    def report(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=message)

    return bar, report


def retriever_choices() -> dict[str, tuple[str, int | None]]:
    """label -> (kind, model run id) for the similar-ad step."""
    out = {"Same-category oracle (labels)": ("oracle", None), "Random ads (baseline)": ("random", None)}
    for run in embedding_runs(engine()):
        out[f"{run['kind']} · run {run['id']} · {run['name']}"] = ("model", run["id"])
    return out


def controls(packages: list[dict]) -> dict:
    with st.sidebar:
        st.header("Experiment")
        labels = {f"#{p['id']} {p['name']} · CTR {100 * p['ctr']:.2f}%": p["id"] for p in packages}
        package = labels[st.selectbox("Package", list(labels), key="aud_package")]
        choices = retriever_choices()
        retriever = choices[st.selectbox("Similar ads from", list(choices), key="aud_retriever",
                                         help="an embedding model run, or a baseline")]
        similar = st.slider("N similar ads", 1, 50, 10, key="aud_similar")
        ratio = st.slider("Negatives per positive", 1.0, 10.0, 3.0, 0.5, key="aud_ratio")
        test_fraction = st.slider("Held-out test set T", 0.05, 0.3, 0.1, 0.05, key="aud_test")
        trees = st.slider("XGBoost trees", 20, 800, 550, 10, key="aud_trees")
        seed = st.number_input("Seed", 0, 10_000, 0, key="aud_seed")
    return {"package": package, "retriever": retriever, "config": ExpansionConfig(
        similar=similar, ratio=ratio, test_fraction=test_fraction, n_estimators=trees, seed=int(seed), audience_sizes=SIZES)}


def run_one(choice: dict) -> None:
    kind, run_id = choice["retriever"]
    _, report = progress_bar()
    try:
        retriever = make_retriever(kind, engine=engine(), model_run_id=run_id, seed=choice["config"].seed)
        result = run_expansion(choice["package"], retriever, choice["config"], engine=engine(), progress=report)
    except (AudienceError, KeyError, ConnectionError) as exc:
        st.error(str(exc))
        return
    st.session_state["aud_run"] = result.run_id


def show_run(run_id: int) -> None:
    run = get_run(run_id, engine=engine())
    m = run["metrics"]
    st.subheader(f"Run {run_id}: package {m['package_name']} · similar ads by {m['retriever']}")
    cols = st.columns(4)
    cols[0].metric("AUC initial", f"{m['auc_initial']:.3f}")
    cols[1].metric("AUC expanded", f"{m['auc_expanded']:.3f}", f"{m['auc_expanded'] - m['auc_initial']:+.3f}")
    cols[2].metric("Positives", f"{m['positives_after']:,}", f"+{m['added_positives']:,}")
    cols[3].metric("Base CTR in P'", f"{100 * m['base_ctr']:.2f}%")
    uncertainty(m)
    left, right = st.columns(2)
    left.plotly_chart(roc_figure(m), key=f"roc-{run_id}")
    right.plotly_chart(ctr_figure([(m["retriever"], m)]), key=f"ctr-{run_id}")
    left, right = st.columns(2)
    left.plotly_chart(positives_figure([m]), key=f"pos-{run_id}")
    right.plotly_chart(importance_figure(m), key=f"imp-{run_id}")
    st.markdown("**The similar ads whose clickers were added**")
    records = []
    for a in m["similar_ads"]:
        try:
            records.append(get_ad(a["ad_id"]))
        except KeyError:
            continue
    ad_grid(records[:20], columns=5, captions=[f"{a['clickers']} clickers in P" for a in m["similar_ads"]][:20], key_prefix="aud")
    st.markdown("**Export the audience** (users ranked by the expanded model)")
    size = st.select_slider("Audience size", options=[0.01, 0.02, 0.05, 0.1, 0.2], value=0.05,
                            format_func=lambda v: f"{v:.0%}", key="aud_size")
    try:
        csv = audience_csv(run_id, size, engine=engine())
    except AudienceError as exc:
        st.warning(str(exc))
        return
    st.download_button(f"Download {csv.count(chr(10)) - 1:,} users (CSV)", csv, file_name=f"audience-run{run_id}-{size:.0%}.csv",
                       mime="text/csv", key="aud_download")


MIN_TEST_POSITIVES = 30


def uncertainty(m: dict) -> None:
    """Size of T and the bootstrap intervals of the AUCs: one package's T is small, its AUCs move a lot."""
    n_pos, n_neg = m.get("test_positives", 0), m.get("test_negatives", 0)
    ci = m.get("auc_intervals") or {}

    def fmt(v: list[float] | None) -> str:
        return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "n/a"

    st.caption(f"Held-out test set T: **{n_pos} positives**, {n_neg} negatives. 95% intervals (bootstrap over T, paired): "
               f"AUC initial {fmt(ci.get('initial'))}, expanded {fmt(ci.get('expanded'))}, difference {fmt(ci.get('delta'))}.")
    delta = ci.get("delta")
    if n_pos < MIN_TEST_POSITIVES:
        st.warning(f"T has only {n_pos} positives (fewer than {MIN_TEST_POSITIVES}): this package's AUCs are noisy"
                   + (" and the difference is not significant (its interval contains 0)" if delta and delta[0] <= 0 <= delta[1] else "")
                   + ". The table over all packages above is the result to read.", icon=":material/warning:")


def stored_table() -> None:
    """The newest averaged table over all packages (the paper's Table 3): what the page leads with."""
    from core.runs import list_runs

    runs = list_runs("expansion-table", "done", engine=engine(), limit=1, fresh=True)
    st.subheader("Averaged over all packages (the paper's Table 3)")
    if not runs:
        if not wait_for(["expansion-table"], "the expansion table over all packages"):
            st.info("No table over all packages yet: run one under **Run every package** below, or "
                    "`python -m core expand --all-packages --retriever random --retriever oracle --retriever ion`.",
                    icon=":material/table_chart:")
        return
    run = runs[0]
    table_view(run["metrics"], key=f"stored-{run['id']}")
    st.caption(f"Run #{run['id']} of {run['finished_at']:%Y-%m-%d %H:%M} · {len(run['config'].get('packages', []))} packages · "
               f"{run['config'].get('trees')} trees · N = {run['config'].get('similar')} similar ads. AUC on each package's T, "
               "CTR of the top 5% of P' users, averaged over packages.")


def table_view(table: dict, *, key: str) -> None:
    rows = pd.DataFrame(table["rows"]).drop(columns=["ctr_by_size"], errors="ignore")
    st.dataframe(rows, hide_index=True, width="stretch")
    per = pd.DataFrame(table.get("per_package") or [])
    if not per.empty:
        left, right = st.columns(2)
        first = table["rows"][1]["model"].removeprefix("expanded: ") if len(table["rows"]) > 1 else None
        left.plotly_chart(positives_figure([r for r in table["per_package"] if r["retriever"] == first]), key=f"pos-{key}")
        right.plotly_chart(auc_delta_figure(per), key=f"delta-{key}")
    if table.get("skipped"):
        st.caption("Skipped: " + "; ".join(f"{s['package_id']}: {s['reason']}" for s in table["skipped"]))


def auc_delta_figure(per: pd.DataFrame):
    import plotly.express as px

    df = per.assign(delta=per["auc_expanded"] - per["auc_initial"])
    fig = px.strip(df, x="retriever", y="delta", hover_data=["package", "auc_initial", "auc_expanded"],
                   title="AUC expanded − initial, one dot per package")
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def compare_runs() -> None:
    runs = list_runs(engine=engine())
    if not runs:
        return
    with st.expander(f"Compare stored runs ({len(runs)})"):
        st.dataframe(pd.DataFrame(runs), hide_index=True)
        picked = st.multiselect("Runs to compare", [r["run_id"] for r in runs], default=[r["run_id"] for r in runs[:2]],
                                key="aud_compare")
        if picked:
            metrics = [(f"run {i}", get_run(i, engine=engine())["metrics"]) for i in picked]
            st.plotly_chart(ctr_figure(metrics), key="ctr-compare")


def all_packages() -> None:
    with st.expander("Run every package (a new averaged table)"):
        choices = retriever_choices()
        picked = st.multiselect("Similar ads from", list(choices), default=list(choices)[:3], key="aud_all_retrievers")
        trees = st.slider("Trees", 20, 800, 550, 10, key="aud_all_trees")
        if st.button("Run every package", key="aud_all_run") and picked:
            _, report = progress_bar()
            try:
                retrievers = [make_retriever(choices[p][0], engine=engine(), model_run_id=choices[p][1]) for p in picked]
                run_all_packages(retrievers, ExpansionConfig(n_estimators=trees), engine=engine(), progress=report)
            except (AudienceError, KeyError, ConnectionError) as exc:
                st.error(str(exc))
                return
            st.rerun()  # the stored table above is the new one


def _add_ad(ad_id: str | None) -> None:
    """Append the picked ad to the package's id list (a callback: it runs before the text area is drawn again)."""
    lines = [line.strip() for line in st.session_state.get("aud_new_ids", "").splitlines() if line.strip()]
    if ad_id and ad_id not in lines:
        st.session_state["aud_new_ids"] = "\n".join([*lines, ad_id])


def new_package() -> None:
    with st.expander("New package from ads"):
        if "aud_new_ids" not in st.session_state:
            st.session_state["aud_new_ids"] = "\n".join(st.session_state.get("selected_ads", []))
        pick, add = st.columns([5, 1], vertical_alignment="bottom")
        with pick:
            ad_id = pick_ad("aud_pick")
        add.button("Add to the list", key="aud_pick_add", on_click=_add_ad, args=(ad_id,), disabled=ad_id is None,
                   icon=":material/add:")
        ids = st.text_area("Ad ids (one per line; add them with the picker above, or paste them)", key="aud_new_ids")
        name = st.text_input("Package name", key="aud_new_name")
        if st.button("Create package", key="aud_new_go"):
            try:
                pid = create_package(name, [line.strip() for line in ids.splitlines() if line.strip()], engine=engine())
            except AudienceError as exc:
                st.error(str(exc))
            else:
                data_changed()
                st.success(f"package {pid} created")


def main() -> None:
    stats = page_frame("Audience", heading="Audience expansion")
    st.caption("A long-tail package has few clickers to learn from. The clickers of the N most similar ads join them as "
               "positives; both targeting models (XGBoost on one-hot user features) are compared on the same held-out "
               "users (AUC) and by the CTR of the users each would target in the later period P'.")
    packages = list_packages(engine())
    if not packages:
        st.info("No ad packages yet: build the demo world (`python -m core demo`) or create one below.")
        new_package()
        page_end(stats)
        return
    stored_table()
    st.subheader("One package")
    choice = controls(packages)
    if st.button("Run expansion", type="primary", key="aud_go"):
        run_one(choice)
    if st.session_state.get("aud_run"):
        show_run(st.session_state["aud_run"])
    compare_runs()
    all_packages()
    new_package()
    page_end(stats)


main()
