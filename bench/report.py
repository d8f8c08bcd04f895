"""Statistics and the printed table of a benchmark session."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, the value, the target, and whether it is met."""

    section: str
    metric: str
    value: str
    target: str = ""
    met: bool | None = None  # None: informational, no target


def render(rows: Sequence[Row], header: str = "") -> str:
    """The rows as a Markdown table (what bench/README.md holds)."""
    lines = [header, ""] if header else []
    lines += ["| section | metric | value | target | met |", "|---|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.section} | {row.metric} | {row.value} | {row.target} | {met} |")
    return "\n".join(lines)


def as_json(rows: Sequence[Row], numbers: dict[str, float]) -> dict[str, object]:
    """The machine-readable result: the rows and the raw numbers the CI test checks."""
    return {"rows": [asdict(r) for r in rows], "numbers": numbers}
