"""Progress callbacks: the engine reports, the CLI (tqdm) or the app (st.progress) shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

# progress(done, total, message): called by long work in core; total may be 0 when unknown
ProgressFn = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:  # noqa: ARG001
    return None


@contextmanager
def tqdm_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A ProgressFn drawing one tqdm bar per stage (a stage is a distinct message prefix)."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(done: int, total: int, message: str) -> None:
        if not enabled:
            return
        stage = message.split(":", 1)[0]
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total or None, desc=stage, unit="it", leave=True, dynamic_ncols=True)
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()
