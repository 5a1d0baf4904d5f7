"""The paper's experiment table from one call: ION, ToTYEmb, three baselines, four ablations; k1/k2 grid; gamma/rho sweeps.

Each entry is one model run (trained and evaluated by core.retrieval.training.train_run on the catalog's test
split); the table reads Hit P@1/5/10 on seen and unseen categories from the runs' metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from core.progress import ProgressFn, no_progress


@dataclass
class Experiment:
    label: str
    kind: str
    ablate: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


MAIN = (
    Experiment("ION", "ion"),
    Experiment("ToTYEmb", "totyemb"),
    Experiment("text-only (MiniLM)", "text"),
    Experiment("image-only (EfficientNet-Lite0)", "image"),
    Experiment("image-only over regions (EfficientNet-Lite0 descriptors of the most confident box)", "image-regions"),
    Experiment("concatenation", "concat"),
    Experiment("ION w/o KSG", "ion", ("ksg",)),
    Experiment("ION w/o SCA", "ion", ("sca",)),
    Experiment("ION w/o DFA", "ion", ("dfa",)),
    Experiment("ION w/o all", "ion", ("ksg", "sca", "dfa")),
    Experiment("ION without BatchNorm neck (paper's head)", "ion", (), {"neck": "none"}),
    Experiment("ION with random word vectors", "ion", (), {"word_init": "random"}),
    Experiment("ION with eq. 6 as printed (literal SCA)", "ion", (), {"sca": "literal"}),
    Experiment("ION, paper recipe (no deviation)", "ion", (), {"recipe": "paper"}),
    Experiment("ToTYEmb, paper recipe (no deviation)", "totyemb", (), {"recipe": "paper"}),
)


def parse_floats(text: str | None, name: str) -> list[float]:
    if not text:
        return []
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def parse_grid(text: str | None) -> list[tuple[int, int]]:
    """'10:5,20:10' -> [(10, 5), (20, 10)] (k1:k2 pairs, k2 <= k1)."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        try:
            k1, k2 = (int(v) for v in item.split(":"))
        except ValueError:
            raise ValueError(f"--grid: expected k1:k2 pairs like 20:10, got {item!r}") from None
        if not 1 <= k2 <= k1:
            raise ValueError(f"--grid: need 1 <= k2 <= k1, got {item!r}")
        pairs.append((k1, k2))
    return pairs


def plan(only: Sequence[str] | None = None, grid: Sequence[tuple[int, int]] = (), gammas: Sequence[float] = (),
         rhos: Sequence[float] = (), main: bool = True) -> list[Experiment]:
    """The experiments to run: the main table (optionally only the labels/kinds in ``only``) and the sweeps (ION)."""
    chosen = [e for e in MAIN if not only or e.kind in only or e.label in only] if main else []
    chosen += [Experiment(f"ION k1={k1} k2={k2}", "ion", (), {"k1": k1, "k2": k2}) for k1, k2 in grid]
    chosen += [Experiment(f"ION gamma={g:g}", "ion", (), {"margin": g}) for g in gammas]
    chosen += [Experiment(f"ION rho={r:g}", "ion", (), {"keyword_weight": r}) for r in rhos]
    return chosen


def run_experiments(experiments: Sequence[Experiment], options: dict[str, Any] | None = None, *, engine: Engine | None = None,
                    progress: ProgressFn = no_progress, on_done: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Train / embed and evaluate every experiment (shared ``options``: epochs, seed, detector); one row each."""
    from core.retrieval.training import train_run
    from core.runs import get_run

    rows = []
    for i, exp in enumerate(experiments):
        opts = {**(options or {}), **exp.options}
        if exp.kind not in ("ion", "totyemb"):
            opts = {k: v for k, v in opts.items() if k in ("seed",)}
        run_id = train_run(exp.kind, exp.ablate, opts, progress, engine=engine, name=exp.label)
        run = get_run(run_id, engine=engine)
        m = run["metrics"]
        row = {"label": exp.label, "run_id": run_id, "kind": exp.kind, "ablate": list(exp.ablate), "options": exp.options,
               "status": run["status"], "seconds": m.get("seconds"), "n_seen": m.get("n_seen"), "n_unseen": m.get("n_unseen")}
        row["chance_seen"], row["chance_unseen"] = (m.get("chance") or {}).get("seen"), (m.get("chance") or {}).get("unseen")
        for part in ("seen", "unseen"):
            values = m.get(part) or []
            for k in (1, 5, 10):
                row[f"{part}_p{k}"] = values[k - 1] if len(values) >= k else None
        rows.append(row)
        progress(i + 1, len(experiments), f"experiments: {exp.label} done")
        if on_done:
            on_done(row)
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The README table: Hit P@1/5/10 (%) on seen and unseen categories."""
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    lines = ["| Model | seen P@1 | seen P@5 | seen P@10 | unseen P@1 | unseen P@5 | unseen P@10 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(pct(r.get(f"{p}_p{k}")) for p in ("seen", "unseen") for k in (1, 5, 10)) + " |")
    chance = next((r for r in rows if r.get("chance_seen") is not None or r.get("chance_unseen") is not None), None)
    if chance is not None:
        cells = [pct(chance.get(f"chance_{p}")) for p in ("seen", "unseen") for _ in range(3)]
        lines.append("| random ranking (chance) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
