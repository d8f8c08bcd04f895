"""How doctor's results are shown: a line per check (and what to do for warn and fail), JSON for
scripts, the exit code, and a Prometheus gauge per check."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plangate_base.checks import CheckResult
from plangate_base.vocabulary import CheckStatus

EXIT_HEALTHY = 0  # nothing failed (warnings alone do not fail)
EXIT_FAILED = 1


def exit_code(results: Iterable[CheckResult]) -> int:
    return EXIT_FAILED if any(r.status is CheckStatus.FAIL for r in results) else EXIT_HEALTHY


def summary(results: list[CheckResult]) -> dict[str, int]:
    return {status.value: sum(r.status is status for r in results) for status in CheckStatus}


def lines(results: list[CheckResult], *, hints_only: bool = False) -> list[str]:
    """`ok   name  why`, with `     -> fix` under a warn or fail; `hints_only`: only what needs doing."""
    width = max((len(r.name) for r in results), default=0)
    shown = [r for r in results if r.status is not CheckStatus.OK] if hints_only else results
    out: list[str] = []
    for r in shown:
        out.append(f"{r.status.value:<4}  {r.name:<{width}}  {r.why}")
        if r.fix:
            out.append(f"{'':<4}  {'':<{width}}  -> {r.fix}")
    counts = summary(results)
    out.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return out


def as_json(results: list[CheckResult]) -> dict[str, Any]:
    return {
        "ok": exit_code(results) == EXIT_HEALTHY,
        "summary": summary(results),
        "checks": [r.as_dict() for r in results],
    }
