"""Creative-selection commands: ``train-matcher``, ``match``, ``evaluate-matching``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress

ScopeOpt = Annotated[str, typer.Option("--scope", help="cached: ads whose regions are cached (all ads when < 20); all: every ad")]


@app.command("train-matcher")
def train_matcher_cmd(
    scorer: Annotated[str, typer.Option("--scorer", help="lxmert | clip | early | ion")],
    variant: Annotated[str, typer.Option("--variant", help="auto | pretrained | offline (auto: pretrained only when online)")] = "auto",
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 32,
    lr: Annotated[float | None, typer.Option("--lr", help="default: 1e-4 for lxmert, 1e-3 otherwise")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="stop after this many optimiser steps")] = None,
    scope: ScopeOpt = "cached",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    pairs: Annotated[int, typer.Option("--pairs", min=1, help="training pairs per phrase, x the evaluation sets' 16")] = 1,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="a scorer option KEY=VALUE (repeat), e.g. pool=cls, image=global (docs/creative_selection.md)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one relevance scorer on the catalog's weakly labelled triples (training phrases only) and store it."""
    from core.matching.service import parse_options, train_matcher

    try:
        options = parse_options(option or [])
        with tqdm_progress(enabled=not as_json) as progress:
            result = train_matcher(scorer, variant=variant, epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps,
                                   scope=scope, seed=seed, options=options, pairs=pairs, progress=progress)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), as_json)
    fit = result["metrics"]["fit"]
    val = result["metrics"].get("val", {})
    text = (f"{result['scorer']} matcher: run {result['run_id']}, {result['checkpoint']}\n  variant: {result['variant']}\n"
            f"  why: {result['reason']}\n  data: {result['scope']}; {result['triples']['train']['triples']} training triples\n"
            f"  loss per epoch: {fit.get('epoch_loss')}")
    if val:
        text += f"\n  validation AUC {val['auc']:.3f} [{val['auc_low']:.3f}, {val['auc_high']:.3f}]"
    emit(result, as_json, text)


@app.command("match")
def match_cmd(
    phrase: Annotated[list[str], typer.Option("--phrase", help="a search phrase (repeat for more)")],
    ads: Annotated[list[str] | None, typer.Option("--ads", help="ad ids (repeat); default: first --limit ads with cached regions")] = None,
    scorer: Annotated[list[str] | None, typer.Option("--scorer", help="only these scorers (repeat)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Probability of relevance of each creative for each phrase, per trained scorer."""
    from core.matching.registry import SCORERS
    from core.matching.service import match

    try:
        with tqdm_progress(enabled=not as_json) as progress:
            result = match(phrase, ads or None, scorers=scorer or SCORERS, limit=limit, progress=progress)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), as_json)
    lines = []
    for name, matrix in result["scores"].items():
        lines.append(f"{name}: {result['variants'][name]['variant']}")
        for p, row in zip(result["phrases"], matrix, strict=True):
            best = sorted(zip(result["creatives"], row, strict=True), key=lambda x: -x[1])[:5]
            lines.append(f"  {p!r}: " + ", ".join(f"{a} {s:.3f}" for a, s in best))
    if result["missing"]:
        lines.append(f"not trained yet: {', '.join(result['missing'])} (python -m core train-matcher --scorer NAME)")
    emit(result, as_json, "\n".join(lines))


@app.command("evaluate-matching")
def evaluate_matching_cmd(
    judgements: Annotated[Path | None, typer.Option("--judgements", help="CSV: phrase, ad_id, label[, split]")] = None,
    n_boot: Annotated[int, typer.Option("--bootstrap", min=50, help="bootstrap resamples for the 95% interval")] = 1000,
    scorer: Annotated[list[str] | None, typer.Option("--scorer", help="only these scorers (repeat)")] = None,
    scope: ScopeOpt = "cached",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    run: Annotated[list[str] | None, typer.Option("--run", help="SCORER=RUN_ID: evaluate that run of a scorer (repeat); "
                                                               "default: each scorer's newest")] = None,
    as_json: JsonOpt = False,
) -> None:
    """AUC with bootstrap 95% interval, MAP@10, NDCG@10 and calibration error per trained scorer (stored for the app)."""
    from core.ingest.report import ImportRejected
    from core.matching.registry import SCORERS
    from core.matching.service import evaluate_matching, parse_options

    try:
        pinned = {k: int(v) for k, v in parse_options(run or []).items()}
        with tqdm_progress(enabled=not as_json) as progress:
            result = evaluate_matching(judgements=judgements, n_boot=n_boot, scope=scope, seed=seed, progress=progress,
                                       scorers=scorer or SCORERS, runs=pinned)
    except ImportRejected as exc:
        emit(exc.report.to_dict() | {"ok": False}, as_json, exc.report.summary())
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc), as_json)
    lines = [f"{result['set']}: {result['triples']} pairs, {result['phrases']} phrases, {result['positives']} relevant",
             f"{'scorer':<8} {'AUC':>6}  {'95% interval':<16} {'MAP@10':>7} {'NDCG@10':>8} {'ECE':>6}  variant"]
    for name, row in result["table"].items():
        lines.append(f"{name:<8} {row['auc']:>6.3f}  [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]   {row['map@10'] or 0:>7.3f} "
                     f"{row['ndcg@10'] or 0:>8.3f} {row['ece']:>6.3f}  {row['variant']}")
    lines += group_table(result)
    if result["untrained"]:
        lines.append(f"not trained: {', '.join(result['untrained'])}")
    emit(result, as_json, "\n".join(lines))


def group_table(result: dict) -> list[str]:
    """AUC per group (core.matching.ceiling) for each scorer, with the visible-category oracle's ceiling first."""
    from core.matching.figures import group_rows

    rows = group_rows(result.get("ceiling"), result["scorers"], labels={})
    groups = [g for g in (rows[0] if rows else {}) if g != "scorer"]
    if not groups:
        return []
    lines = ["AUC by group (ceiling: a scorer that knows which categories are visible in each creative)",
             f"{'':<8} " + " ".join(f"{g:>9}" for g in groups)]
    for row in rows:
        lines.append(f"{row['scorer']:<8} " + " ".join(f"{'-' if row[g] is None else f'{row[g]:.3f}':>9}" for g in groups))
    return lines


__all__ = ["evaluate_matching_cmd", "match_cmd", "train_matcher_cmd"]
