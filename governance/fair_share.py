"""Who goes first when workers are saturated: pure rules of the fair queue (worker.fair_queue applies them).

Tenants share job starts by weight (stride scheduling): each tenant with queued work has a *pass*; the
tenant with the lowest pass starts its next job and its pass grows by 1 / weight. A tenant that becomes
active starts at the current virtual time (the pass of the last start), never below its own pass, so going
idle for a moment earns it nothing and a newcomer is not behind an old backlog. Within a tenant, jobs go
in the order of `order_score`: submit time, plus one aging window per priority rank below `high`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from plangate_base.vocabulary import PauseScope, Priority

PAUSE_SEPARATOR = ":"


def stride(weight: float) -> float:
    """How far a tenant's pass moves per job start: the inverse of its weight."""
    return 1.0 / weight


def order_score(enqueue_ms: int, priority: Priority | None, aging_ms: int) -> int:
    """A job's place among its tenant's queued jobs (lowest first). A `low` job counts as submitted two
    aging windows later, a `normal` one one window: so a job is overtaken only by higher-priority jobs
    submitted less than (its rank - theirs) windows after it, and never starves."""
    return enqueue_ms + (priority or Priority.NORMAL).rank * aging_ms


def start_ms(enqueue_ms: int, not_before: datetime | None, delay_s: float | None) -> int:
    """When a job may start (ms since the epoch): its submit time, or later when delayed."""
    if not_before is not None:
        return max(enqueue_ms, int(as_utc(not_before).timestamp() * 1000))
    if delay_s:
        return enqueue_ms + int(delay_s * 1000)
    return enqueue_ms


def as_utc(moment: datetime) -> datetime:
    """A request's time as UTC (a naive time is taken to be UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def deadline_ms(deadline: datetime | None) -> int | None:
    """A request's deadline in ms since the epoch."""
    return None if deadline is None else int(as_utc(deadline).timestamp() * 1000)


def pause_field(scope: PauseScope, target: str = "") -> str:
    """The field of the pause hash that pauses `target` (a tenant or agent id; none for the whole queue)."""
    return scope.value if scope is PauseScope.ALL else f"{scope.value}{PAUSE_SEPARATOR}{target}"
