"""Rate and time left of long batch work, for progress messages (core.progress: ``progress(done, total, message)``)."""

from __future__ import annotations


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far (None before anything is done or when the total is unknown)."""
    if done <= 0 or total <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta_text(done: int, total: int, elapsed: float) -> str:
    """`` (12.3/s, ETA 4m05s)`` for a progress message, or "" before the first item."""
    left = eta_seconds(done, total, elapsed)
    if left is None:
        return ""
    return f" ({done / elapsed:.1f}/s, ETA {format_seconds(left)})"
