"""`plangate stats`: the queue at a glance, from cheap Redis reads only (no SCAN/KEYS).

`collect_stats` returns a plain dict (the `--json` object) so a metrics exporter can reuse it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from plangate_base import codec
from plangate_base.clock import from_ms, iso, utc_minute
from plangate_base.vocabulary import TERMINAL_STATES, JobState
from worker.errors import BadRequest
from worker.keys import LEDGER_GROUP, Keys

if TYPE_CHECKING:  # `plangate --help` registers this command without redis-py, pydantic or the worker
    from redis.asyncio import Redis

    from worker.settings import Settings

# The per-minute hashes expire after two hours (lifecycle_lua RECORD), so no window reaches further.
MAX_MINUTES = 120
DEFAULT_MINUTES = 10
DEFAULT_WATCH_S = 2.0
_STATES = [s.value for s in JobState if s in TERMINAL_STATES]  # done, refused, failed, cancelled
_SHOWN_MINUTES = 15
_CLEAR = "\x1b[H\x1b[2J"


def minute_stamps(now: float, minutes: int) -> list[str]:
    """The UTC minutes (YYYYmmddHHMM) of the window ending with the current one, oldest first."""
    start = int(now // 60) - minutes + 1
    return [utc_minute((start + i) * 60) for i in range(minutes)]


def _by_reason(totals: Counter[str], state: JobState) -> dict[str, int]:
    prefix = f"{state.value}:"
    found = {name[len(prefix) :]: n for name, n in totals.items() if name.startswith(prefix) and n}
    return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))


async def collect_stats(
    redis: Redis, settings: Settings, minutes: int = DEFAULT_MINUTES, *, now: float | None = None
) -> dict[str, Any]:
    """The queue's numbers right now (see the README's `plangate stats`); `redis` decodes responses."""
    from redis.exceptions import ResponseError

    from worker.fair_queue import FairQueue
    from worker.queue_backend import job_queue
    from worker.queue_counts import add_queue_reads, queue_counts_of

    if not 1 <= minutes <= MAX_MINUTES:
        raise BadRequest(f"--minutes must be between 1 and {MAX_MINUTES} (per-minute stats are kept 2 hours)")
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    keys = Keys(settings.key_prefix)
    stamps = minute_stamps(now, minutes)
    async with redis.pipeline(transaction=False) as pipe:
        add_queue_reads(pipe, settings, now_ms)
        pipe.zrange(keys.running(), 0, -1, withscores=True)
        pipe.zrange(keys.workers(), 0, -1, withscores=True)
        for stamp in stamps:
            pipe.hgetall(keys.stats_minute(stamp))
        pipe.xlen(keys.ledger_stream())
        pipe.xpending(keys.ledger_stream(), LEDGER_GROUP)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies[:-1]:
        if isinstance(reply, Exception):
            raise reply
    queue = queue_counts_of(*replies[:3])
    running, workers = replies[3], replies[4]
    minute_hashes: list[dict[str, str]] = replies[5 : 5 + minutes]
    ledger_length, pending = replies[-2], replies[-1]
    if isinstance(pending, ResponseError):  # NOGROUP: no writer has created the group yet
        pending = {"pending": 0}
    elif isinstance(pending, Exception):
        raise pending

    running_by_worker: Counter[str] = Counter()
    if running:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in running:
                pipe.hget(keys.job(job_id), "worker")
            owners = await pipe.execute()
        running_by_worker.update(owner or "unknown" for owner in owners)

    window_ms = int(settings.liveness_window_s * 1000)
    live = [name for name, beat in workers if beat >= now_ms - window_ms]
    per_minute = []
    totals: Counter[str] = Counter()
    for stamp, fields in zip(stamps, minute_hashes, strict=True):
        counts = {name: int(value) for name, value in fields.items()}
        totals.update(counts)
        row = {state: counts.get(state, 0) for state in _STATES}
        per_minute.append({"minute": stamp, **row, "total": sum(row.values())})
    finished = {state: totals.get(state, 0) for state in _STATES}
    oldest_age = max(0.0, (now_ms - running[0][1]) / 1000) if running else None
    fair = FairQueue(redis, keys, job_queue(settings.queue_name), aging_s=settings.priority_aging_s)
    held = await fair.held_counts()
    paused = sorted(await fair.paused())
    tenants = await fair.tenants_view(now_ms)
    return {
        "at": iso(from_ms(now_ms)),
        "queue": settings.queue_name,
        "queue_depth": queue.waiting,
        "queue_deferred": queue.deferred,
        "running": len(running),
        "running_by_worker": dict(sorted(running_by_worker.items())),
        "oldest_running_heartbeat_age_s": None if oldest_age is None else round(oldest_age, 3),
        "workers_live": len(live),
        "workers_known": len(workers),
        "live_workers": sorted(live),
        "liveness_window_s": window_ms / 1000,
        "minutes": minutes,
        "finished": finished,
        "jobs_per_minute": round(sum(finished.values()) / minutes, 3),
        "per_minute": per_minute,
        "refusals": _by_reason(totals, JobState.REFUSED),
        "failures": _by_reason(totals, JobState.FAILED),
        "cancellations": _by_reason(totals, JobState.CANCELLED),
        "ledger_stream_length": int(ledger_length),
        "ledger_pending": int(pending["pending"]),
        "queue_delayed": held["delayed"],
        "queue_parked": held["parked"],
        "paused": paused,
        "tenants": tenants,
    }


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "none"


def render_stats(stats: dict[str, Any], out: TextIO) -> None:
    """The human view of `collect_stats`' result."""
    age = stats["oldest_running_heartbeat_age_s"]
    finished = stats["finished"]
    lines = [
        f"plangate stats  queue {stats['queue']}  at {stats['at']}",
        f"queue depth      {stats['queue_depth']}  (waiting for a worker)",
        f"deferred         {stats['queue_deferred']}  (retries and deferred jobs, not due yet)",
        f"running          {stats['running']}"
        + (f"  (oldest heartbeat {age:.1f}s ago)" if age is not None else ""),
        *(f"  {worker:<30} {n}" for worker, n in stats["running_by_worker"].items()),
        f"workers live     {stats['workers_live']} of {stats['workers_known']} known "
        f"(beat within {stats['liveness_window_s']:g}s)",
        f"last {stats['minutes']} min"
        + "".join(f"  {state} {finished[state]}" for state in _STATES)
        + f"  ({stats['jobs_per_minute']:g} jobs/min)",
        "  per minute     "
        + " ".join(
            f"{row['minute'][-4:-2]}:{row['minute'][-2:]} {row['total']}"
            for row in stats["per_minute"][-_SHOWN_MINUTES:]
        ),
        f"refusals         {_reasons(stats['refusals'])}",
        f"failures         {_reasons(stats['failures'])}",
        f"cancellations    {_reasons(stats['cancellations'])}",
        f"ledger stream    {stats['ledger_stream_length']} entries, {stats['ledger_pending']} pending",
        f"held             {stats['queue_delayed']} delayed, {stats['queue_parked']} of paused agents"
        + (f"; paused: {', '.join(stats['paused'])}" if stats["paused"] else ""),
        "tenants          queued  running  oldest queued  starts/min  share",
        *(
            f"  {tenant:<14} {t['queued']:>6}  {t['running']:>7}  {_age(t['oldest_queued_age_s']):>13}"
            f"  {t['starts_last_minute']:>10}  {t['share_of_starts']:>5.0%}"
            + ("  paused" if t["paused"] else "")
            for tenant, t in stats["tenants"].items()
        ),
    ]
    out.write("\n".join(lines) + "\n")


async def _show(settings: Settings, args: argparse.Namespace) -> None:
    import asyncio
    import contextlib
    import signal

    from worker.redis_conn import text_client

    # Ctrl-C ends a --watch between two redraws: an event, not the cancellation asyncio.run would send
    # into whatever await is running (a cancellation landing as a Redis reply arrives can be lost).
    stop = asyncio.Event()
    if args.watch is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    async with text_client(settings.redis_url) as redis:
        while not stop.is_set():
            stats = await collect_stats(redis, settings, args.minutes)
            if args.json:
                sys.stdout.write(codec.dumps(stats) + "\n")
            else:
                if args.watch is not None:
                    sys.stdout.write(_CLEAR)
                render_stats(stats, sys.stdout)
            sys.stdout.flush()
            if args.watch is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.watch)


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print the stats once, or redraw them every --watch seconds until Ctrl-C (exit 0)."""
    import asyncio

    if args.watch is not None and args.watch <= 0:
        raise BadRequest("--watch needs a positive number of seconds")
    try:
        asyncio.run(_show(settings, args))
    except KeyboardInterrupt:  # (a Ctrl-C before the watch loop began)
        if args.watch is None:
            raise
    return 0


def add_stats_commands(sub: Any) -> None:
    """Register `plangate stats`."""
    p = sub.add_parser(
        "stats",
        help="queue depth (jobs waiting for a worker), deferred and running jobs, live workers, jobs per "
        "minute, refusals, failures, ledger backlog",
        description="The queue at a glance, from cheap Redis reads. Per-minute counts are kept 2 hours.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (with --watch: one per line)")
    p.add_argument(
        "--minutes",
        type=int,
        default=DEFAULT_MINUTES,
        help=f"window of the per-minute counts (default {DEFAULT_MINUTES}, at most {MAX_MINUTES})",
    )
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=DEFAULT_WATCH_S,
        metavar="SECONDS",
        help=f"redraw every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )
    p.set_defaults(run=cmd_stats, sync=True)
