"""`plangate ledger ...`: the audit ledger's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from worker import codec
from worker.cli_render import render_output
from worker.errors import BadRequest, JobNotFound
from worker.settings import Settings


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def ledger_path(args: argparse.Namespace, settings: Settings) -> Path:
    """The ledger file: --ledger, else PLANGATE_LEDGER_PATH."""
    return Path(args.ledger or settings.ledger_path)


async def cmd_ledger_show(args: argparse.Namespace, settings: Settings) -> int:
    from ledger.queries import show_job

    path = ledger_path(args, settings)
    if not await asyncio.to_thread(path.exists):
        raise BadRequest(f"no ledger at {path} (set PLANGATE_LEDGER_PATH or --ledger)")
    record = await show_job(path, args.job_id)
    if not record["events"]:
        raise JobNotFound(args.job_id)
    if args.json:
        _out(codec.dumps(record))
    else:
        _out(f"job {args.job_id}: {len(record['events'])} ledger events")
        for event in record["events"]:
            what = event.get("decision") or event.get("reason") or ""
            _out(f"  {event['created_at']}  {event['kind']:<10} {what}  attempt {event.get('attempt', 0)}")
            output = (event.get("payload") or {}).get("output")
            if output:
                render_output(output, sys.stdout)
    return 0


def add_ledger_commands(sub: Any) -> None:
    """Register `plangate ledger ...` on the top-level subparsers."""
    ledger = sub.add_parser("ledger", help="the audit ledger").add_subparsers(
        dest="ledger_cmd", required=True
    )
    p = ledger.add_parser("show", help="a job's ledger events")
    p.add_argument("job_id")
    p.add_argument("--ledger", help="ledger file (default PLANGATE_LEDGER_PATH)")
    p.add_argument("--json", action="store_true", help='print {"job_id": ..., "events": [...]} as JSON')
    p.set_defaults(run=cmd_ledger_show)
