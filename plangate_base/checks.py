"""One finding of a deployment check (`plangate doctor`): which check, ok / warn / fail, why in one
line, and for warn and fail what to do. Plain data, so governance/ can return findings from its pure
checks and worker/ can render, count and export them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from plangate_base.vocabulary import CheckStatus


@dataclass(frozen=True, slots=True)
class CheckResult:
    """`name` is dotted, group first (`redis.persistence`); `fix` is None for an ok."""

    name: str
    status: CheckStatus
    why: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


def ok(name: str, why: str) -> CheckResult:
    return CheckResult(name, CheckStatus.OK, why)


def warn(name: str, why: str, fix: str) -> CheckResult:
    return CheckResult(name, CheckStatus.WARN, why, fix)


def fail(name: str, why: str, fix: str) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, why, fix)
