"""`plangate ledger reconcile | redact`: recording the jobs Redis lost, and redactions that keep the proofs.
Both go through the ledger stream: the file changes only through its writer."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from plangate_base import codec
from plangate_base.vocabulary import EventKind
from worker.cli.ledger import EXIT_OK, ledger_errors, ledger_path
from worker.cli.render import echo
from worker.errors import BadRequest
from worker.keys import Keys

if TYPE_CHECKING:
    from worker.settings import Settings


@ledger_errors
async def cmd_ledger_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Jobs submitted past the result retention, never ended, whose status is gone from Redis."""
    from worker.reconcile import find_lost, record_lost
    from worker.redis_conn import text_client

    if args.ledger:
        settings = settings.model_copy(update={"ledger_path": Path(args.ledger)})
    async with text_client(settings.redis_url) as redis:
        await redis.ping()  # (Redis first: what it no longer holds is the question)
        lost = await (find_lost(redis, settings) if args.dry_run else record_lost(redis, settings))
    for job in lost:
        if args.json:
            echo(codec.dumps(job))
        else:
            echo(f"lost  {job['job_id']}  submitted {job['created_at']}  agent {job.get('agent_id') or '-'}")
    if not args.json:
        done = "found (not recorded: --dry-run)" if args.dry_run else "recorded as lost"
        sys.stderr.write(f"plangate: {len(lost)} jobs {done}\n")
    return EXIT_OK


@ledger_errors
async def cmd_ledger_redact(args: argparse.Namespace, settings: Settings) -> int:
    """Put a `redacted` event naming the rows on the ledger stream; the writer tombstones them when it
    records the event (in one transaction), so the file only ever changes through the writer."""
    import asyncio

    from ledger import redaction
    from plangate_base.vocabulary import LEDGER_STREAM_FIELD
    from worker.ledger_events import ledger_event
    from worker.redis_conn import text_client

    if args.job is None and args.before is None:
        raise BadRequest("name what to redact: --job ID or --before DATE")
    async with text_client(settings.redis_url) as redis:
        await redis.ping()  # (the redaction goes to the writer through Redis: fail early without it)
    path = ledger_path(args, settings)
    seqs, old = await asyncio.to_thread(
        functools.partial(redaction.plan, path, job_id=args.job, before=args.before, tenant=args.tenant)
    )
    if old:
        sys.stderr.write(
            f"plangate: {old} rows written before schema version 6 hash their text: not redacted\n"
        )
    if not seqs:
        sys.stderr.write("plangate: nothing to redact\n")
        return EXIT_OK
    criteria = {"job_id": args.job, "before": args.before, "tenant_id": args.tenant}
    event = ledger_event(
        EventKind.REDACTED,
        job_id=args.job,
        agent_id=None,
        tenant_id=args.tenant,
        reason=args.reason,
        payload={"seqs": seqs, "by": args.by, "reason": args.reason, "criteria": criteria},
    )
    async with text_client(settings.redis_url) as redis:
        await redis.xadd(Keys(settings.key_prefix).ledger_stream(), {LEDGER_STREAM_FIELD: codec.dumps(event)})
    echo(f"redaction {event['event_id']}: {len(seqs)} rows; the ledger writer applies it when it records it")
    return EXIT_OK


def add_upkeep_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register reconcile and redact with `command` (the ledger's)."""
    p = command(
        "redact",
        cmd_ledger_redact,
        "replace payloads with tombstones that keep their hash (proofs still hold)",
    )
    p.add_argument("--job", help="redact this job's rows")
    p.add_argument("--before", help="redact the rows created before this UTC time (ISO-8601)")
    p.add_argument("--tenant", help="only this tenant's rows")
    p.add_argument("--reason", required=True, help="why (recorded in the redaction's own row)")
    p.add_argument("--by", required=True, help="who asks for it (recorded in the redaction's own row)")

    p = command(
        "reconcile",
        cmd_ledger_reconcile,
        "record as lost the jobs submitted past RESULT_TTL_S that never ended and are gone from Redis",
    )
    p.add_argument("--dry-run", action="store_true", help="list them, record nothing")
    p.add_argument("--json", action="store_true", help="print each lost job as one JSON object per line")
