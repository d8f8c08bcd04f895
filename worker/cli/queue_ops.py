"""`plangate pause`, `plangate resume` and `plangate bulk ...`: an operator's hold on the queue and bulk
changes by filter (worker.fair_queue, worker.bulk_ops)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from plangate_base import codec
from worker.cli.render import echo
from worker.keys import Keys

if TYPE_CHECKING:  # `plangate --help` registers these commands without redis-py or pydantic
    from plangate_base.vocabulary import PauseScope
    from worker.settings import Settings


def _scope(args: argparse.Namespace) -> tuple[PauseScope, str]:
    from plangate_base.vocabulary import PauseScope
    from worker.errors import BadRequest

    if [bool(args.all), bool(args.tenant), bool(args.agent)].count(True) != 1:
        raise BadRequest(f"{args.command} needs exactly one of --tenant, --agent or --all")
    if args.all:
        return PauseScope.ALL, ""
    if args.tenant:
        return PauseScope.TENANT, args.tenant
    return PauseScope.AGENT, args.agent


def _by(args: argparse.Namespace) -> str:
    import getpass

    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    from worker.fair_queue import FairQueue
    from worker.queue_backend import job_queue
    from worker.redis_conn import text_client

    scope, target = _scope(args)
    what = "the whole queue" if not target else f"{scope.value} {target}"
    async with text_client(settings.redis_url) as redis:
        fair = FairQueue(
            redis,
            Keys(settings.key_prefix),
            job_queue(settings.queue_name),
            aging_s=settings.priority_aging_s,
        )
        if args.command == "pause":
            changed = await fair.pause(scope, target, by=_by(args), reason=args.reason)
            echo(f"{what} paused by {_by(args)}" if changed else f"{what} was paused already")
        else:
            changed = await fair.resume(scope, target, by=_by(args), reason=args.reason or "")
            echo(f"{what} resumed by {_by(args)}" if changed else f"{what} was not paused")
    return 0


async def cmd_bulk(args: argparse.Namespace, settings: Settings) -> int:
    from plangate_base.vocabulary import JobState
    from worker.bulk_ops import BulkOps, JobFilter
    from worker.client import PlanClient

    flt = JobFilter(tenant_id=args.tenant, agent_id=args.agent, older_than_s=args.older_than)
    async with PlanClient.connect(settings) as client:
        ops = BulkOps(client, client.redis, Keys(settings.key_prefix))
        if args.bulk_cmd == "cancel":
            states = frozenset(JobState(s) for s in args.state or [JobState.QUEUED.value])
            result = await ops.cancel(flt, states=states, dry_run=args.dry_run)
        else:
            result = await ops.retry(flt, dry_run=args.dry_run)
    if args.json:
        echo(codec.dumps(result.as_dict()))
    elif result.dry_run:
        echo(f"dry run: {len(result.matched)} job(s) would be touched")
    else:
        verb = "cancelled" if args.bulk_cmd == "cancel" else "retried"
        echo(f"{len(result.changed)} of {len(result.matched)} matching job(s) {verb}")
    return 0


def add_queue_commands(sub: Any) -> None:
    """Register `plangate pause`, `plangate resume` and `plangate bulk ...`."""
    for name, text in (
        ("pause", "hold a tenant's, an agent's or all queued work (running jobs finish)"),
        ("resume", "let paused work start again (within a second)"),
    ):
        p = sub.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + "; recorded in the ledger."
        )
        p.add_argument("--tenant", help="one tenant's jobs")
        p.add_argument("--agent", help="one agent's jobs")
        p.add_argument("--all", action="store_true", help="the whole queue")
        p.add_argument("--reason", required=name == "pause", help="why (recorded in the ledger)")
        p.add_argument("--by", help="who (default: the current user)")
        p.set_defaults(run=cmd_pause)

    bulk = sub.add_parser("bulk", help="cancel queued jobs or retry dead letters by filter").add_subparsers(
        dest="bulk_cmd", required=True
    )
    for name, text in (
        ("cancel", "cancel the matching queued (or running) jobs, each recorded in the ledger"),
        ("retry", "submit the matching failed jobs again, each as a new job linked by retry_of"),
    ):
        p = bulk.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--tenant", help="only this tenant's jobs")
        p.add_argument("--agent", help="only this agent's jobs")
        p.add_argument(
            "--older-than",
            type=float,
            metavar="S",
            help="only jobs submitted (retry: failed) S seconds ago or more",
        )
        if name == "cancel":
            p.add_argument(
                "--state",
                action="append",
                choices=["queued", "running"],
                help="queued (default) and/or running: a running job stops at its next heartbeat",
            )
        p.add_argument("--dry-run", action="store_true", help="only print how many jobs it would touch")
        p.add_argument(
            "--json", action="store_true", help="print the counts and job ids as JSON, for scripts"
        )
        p.set_defaults(run=cmd_bulk)
