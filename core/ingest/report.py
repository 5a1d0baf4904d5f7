"""Import reports: what was taken, what was skipped as already present, and what was rejected."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowError:
    """A rejected row: its 1-based row number in the source (header = row 1 for CSV), and why."""

    row: int
    reason: str
    column: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column '{self.column}'" if self.column else "")
        return f"{where}: {self.reason}"


@dataclass
class ImportReport:
    kind: str
    source: str
    imported: int = 0
    skipped: int = 0  # identical rows already in the store (re-import is idempotent)
    errors: list[RowError] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Number of distinct rejected rows (a row may carry several errors)."""
        return len({e.row for e in self.errors})

    @property
    def ok(self) -> bool:
        return not self.errors

    def reject(self, row: int, reason: str, column: str | None = None) -> None:
        self.errors.append(RowError(row, reason, column))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "ok": self.ok,
            "imported": self.imported,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "errors": [asdict(e) for e in self.errors],
            **({"details": self.details} if self.details else {}),
        }

    def summary(self) -> str:
        if self.ok:
            return f"{self.kind}: imported {self.imported}, already present {self.skipped}"
        head = f"{self.kind}: {self.rejected} row(s) rejected, nothing was imported"
        lines = [head] + [f"  {e}" for e in self.errors[:50]]
        if len(self.errors) > 50:
            lines.append(f"  ... and {len(self.errors) - 50} more")
        return "\n".join(lines)


class ImportRejected(Exception):
    """Raised (after rolling back) when any row was rejected: the import changed nothing."""

    def __init__(self, report: ImportReport):
        super().__init__(report.summary())
        self.report = report
