"""Regions: boxes ranked by detector confidence vs. re-ranked by the ad text (ION Figure 8)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import streamlit as st

from core.catalog import get_ad, image_file
from core.config import get_settings
from core.errors import RetrievalError
from core.images import ImageError, decode_image
from core.regions.base import DetectionResult, DetectorError
from core.regions.clues import rerank
from core.regions.figure import rank_table, regions_figure
from core.regions.keywords import keywords
from core.regions.ocr import ocr_words, read_text
from core.regions.registry import BACKENDS, DetectorChoice, get_detector
from core.retrieval import clue_scorer, run_detector_version
from core.runs import full_models_first, list_runs
from ui.adpicker import pick_ad
from ui.common import page_end, page_frame
from ui.runs import run_label

ZERO_SHOT = "zero-shot"


@st.cache_resource(show_spinner="Loading the detector…")
def detector(backend: str, weights: str) -> DetectorChoice:
    return get_detector(backend, weights=weights or None)


@st.cache_data(max_entries=64, show_spinner="Detecting regions…")
def detect(sha256: str, backend: str, weights: str, conf: float, iou: float, _image) -> DetectionResult:  # noqa: ARG001
    return detector(backend, weights).detector.detect([_image], conf=conf, iou=iou, max_det=60)[0]


@st.cache_data(max_entries=64, show_spinner="Reading the words on the creative…")
def ocr_lines(sha256: str, _image) -> list[dict]:  # noqa: ARG001
    return [line.to_dict() for line in read_text(_image)]


def sidebar() -> dict:
    settings = get_settings()
    with st.sidebar:
        st.header("Detector")
        backend = st.selectbox("Backend", BACKENDS, index=BACKENDS.index(settings.detector), key="r_backend")
        weights = st.text_input("YOLO weights", value=settings.yolo_weights, key="r_weights",
                                help="a local .pt/.onnx file or a standard name (fetched by Ultralytics when online)")
        k1 = st.slider("k1: boxes scored (by confidence)", 1, 50, 20, key="r_k1")
        k2 = st.slider("k2: boxes kept after re-weighting", 1, k1, min(10, k1), key="r_k2")
        conf = st.slider("Confidence threshold", 0.0, 1.0, 0.05, 0.01, key="r_conf")
        iou = st.slider("NMS IoU threshold", 0.1, 0.95, 0.5, 0.05, key="r_iou")
        use_ocr = st.checkbox("Read printed words (OCR)", value=True, key="r_ocr")
        st.header("Semantic clues")
        done = full_models_first(list_runs(kind="ion", status="done", fresh=True))
        runs = {r["id"]: r for r in done if "sca" not in (r["config"].get("ablate") or [])}
        scorer = st.selectbox("Clue scorer", [*runs, ZERO_SHOT], key="r_scorer",  # ION's own SCA first when there is a run
                              format_func=lambda i: "Zero-shot: MiniLM(region label, keywords)" if i == ZERO_SHOT else run_label(runs[i]),
                              help="A trained ION run scores each box with its own SCA (alpha, eq. 6); zero-shot compares the "
                                   "box's class name with the text's keywords.")
    return {"backend": backend, "weights": weights, "k1": k1, "k2": k2, "conf": conf, "iou": iou, "ocr": use_ocr,
            "run": runs.get(scorer)}


def pick_creative():
    """(decoded image, text, ground-truth product box or None, origin) from the catalog or an upload."""
    source = st.radio("Creative", ["Catalog ad", "Upload"], horizontal=True, key="r_source")
    if source == "Upload":
        upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"], key="r_upload")
        text = st.text_area("Ad text", key="r_upload_text", placeholder="e.g. Sparkling bracelet for your wrist")
        if upload is None:
            st.info("Upload a creative image and type its text.")
            return None
        return decode_image(upload.getvalue(), name=upload.name), text, None, upload.name
    ad_id = pick_ad("r_ad")
    if ad_id is None:
        st.caption("Or upload a creative instead (the radio above).")
        return None
    record = get_ad(ad_id)
    text = st.text_area("Ad text", value=record["text"], key=f"r_text_{ad_id}")
    decoded = decode_image(image_file(record).read_bytes(), name=ad_id)
    if record["source"] == "demo":
        st.caption("Demo world: generated data.")
    return decoded, text, (record["truth"] or {}).get("product_box"), ad_id


def main() -> None:
    stats = page_frame("Regions", heading="Regions: detector confidence vs. semantic clues")
    st.caption("The top k1 boxes by detector confidence are scored against the ad text (keywords + OCR words) and re-sorted; "
               "the top k2 go on to the ad embedding (ION, section 3.3).")
    show_regions(sidebar())
    page_end(stats)


def show_regions(opts: dict) -> None:
    try:
        picked = pick_creative()
        if picked is None:
            return
        decoded, text, truth, origin = picked
        choice = detector(opts["backend"], opts["weights"])
        dets = detect(decoded.sha256, opts["backend"], opts["weights"], opts["conf"], opts["iou"], decoded.image)
        lines = ocr_lines(decoded.sha256, decoded.image) if opts["ocr"] else []
        run = opts["run"]
        scorer = clue_scorer(run) if run else None
        # ION reads the ad text only (OCR words were not part of its training input)
        sca = rerank(dets, text, k1=opts["k1"], k2=opts["k2"], scorer=scorer, extra_words=[] if run else ocr_words(lines))
    except (ImageError, DetectorError, RetrievalError, ValueError, RuntimeError, OSError) as exc:
        st.error(str(exc))
        return
    if run and run_detector_version(run) not in (None, choice.detector.version):
        st.warning(f"ION run #{run['id']} was trained on regions of `{run_detector_version(run)}`, but this page detects with "
                   f"`{choice.detector.version}`: its clue scores are only meaningful for the detector it was trained with.")
    st.info(f"**{choice.backend}** detector `{choice.detector.version}` on **{choice.device_reason}** — {choice.reason}. "
            f"Clue scorer: {sca.scorer}. Detection took {dets.seconds * 1000:.0f} ms "
            f"({len(dets)} boxes).", icon=":material/memory:")
    text_words = keywords(text)
    st.markdown("**Keywords in the text:** " + (", ".join(f"`{w}`" for w in text_words) or "_none_")
                + "  \n**OCR words:** " + (", ".join(f"`{w}`" for w in ocr_words(lines)) or "_none_"))
    if not text_words and not lines:
        st.warning("No keywords in the text and no printed words: re-weighting keeps the detector order.")
    scored = sca.after()
    before = sorted(scored, key=lambda r: r.rank_before)[: opts["k2"]]
    left, right = st.columns(2)
    left.plotly_chart(regions_figure(decoded.image, before, title=f"Top {len(before)} by detector confidence", rank="before",
                                     truth_box=truth), width="stretch", key="fig_before")
    right.plotly_chart(regions_figure(decoded.image, sca.kept(), title=f"Top {len(sca.kept())} after re-weighting by the text",
                                      rank="after", truth_box=truth), width="stretch", key="fig_after")
    if truth:
        st.caption("Dashed white box: the ground-truth product box of this demo ad.")
    st.subheader("Rank changes")
    st.dataframe(rank_table(sca), hide_index=True, width="stretch")
    st.caption(f"{origin} · image {decoded.size[0]}×{decoded.size[1]} · {len(dets)} boxes detected, {len(scored)} scored (k1), "
               f"{len(sca.kept())} kept (k2).")


main()
