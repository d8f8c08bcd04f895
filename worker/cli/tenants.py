"""`plangate tenants ...` and `plangate usage`: who owns agents and projects, their quotas and spend."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import TYPE_CHECKING, Any

from plangate_base import codec
from worker.cli.render import echo, render_fields
from worker.errors import BadRequest
from worker.keys import Keys

if TYPE_CHECKING:  # `plangate --help` registers these commands without redis-py or pydantic
    from worker.settings import Settings

_LIMITS = ("max_concurrent", "jobs_per_minute", "tokens_per_day", "cost_per_day_usd")


async def cmd_tenants(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from governance.models import TenantRecord
    from governance.registry import TenantRegistry
    from plangate_base.clock import utc_day
    from worker.errors import describe_validation_error
    from worker.redis_conn import text_client

    keys = Keys(settings.key_prefix)
    async with text_client(settings.redis_url) as redis:
        registry = TenantRegistry(redis, keys)
        if args.tenants_cmd == "add":
            try:
                record = TenantRecord(
                    tenant_id=args.tenant_id,
                    name=args.name,
                    projects=args.project,
                    weight=args.weight,
                    **{name: getattr(args, name) for name in _LIMITS},
                )
            except ValidationError as exc:
                raise BadRequest(describe_validation_error(exc, "tenant")) from exc
            await registry.put(record)
            echo(record.model_dump_json() if args.json else f"tenant {record.tenant_id} saved")
            return 0
        if args.tenants_cmd == "list":
            records = await registry.list()
            if args.json:
                echo(codec.dumps([r.model_dump(mode="json") for r in records]))
            for r in [] if args.json else records:
                limits = ", ".join(f"{n}={getattr(r, n)}" for n in _LIMITS if getattr(r, n) is not None)
                echo(f"{r.tenant_id}\t{r.name}\tweight={r.weight:g}\t{limits or 'no limits'}")
            return 0
        record = await registry.get(args.tenant_id)
        if record is None:
            raise BadRequest(f"no tenant with id {args.tenant_id!r}")
        day = utc_day()
        account = await redis.hgetall(keys.tenant_day(record.tenant_id, day))
        running = await redis.zcard(keys.tenant_running(record.tenant_id))
    shown: dict[str, Any] = {
        **record.model_dump(mode="json"),
        "today": {"day": day, "running": running, **account},
    }
    if args.json:
        echo(codec.dumps(shown))
    else:
        render_fields(shown, sys.stdout)
    return 0


async def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    try:
        since = date.fromisoformat(args.since)
    except ValueError as exc:
        raise BadRequest(f"--since must be a date like 2026-11-01, not {args.since!r}") from exc
    async with PlanClient.connect(settings) as client:
        rows = await client.usage(args.tenant, since)
    if args.json:
        echo(codec.dumps(rows))
        return 0
    if not rows:
        echo(f"no usage for tenant {args.tenant} since {since}")
    for row in rows:
        echo(
            f"{row['day']}  jobs {row.get('jobs', 0)}  prompt {row.get('prompt_tokens', 0)}  "
            f"completion {row.get('completion_tokens', 0)}  cost ${row.get('cost_usd', 0.0):.4f}"
            + (f"  ({row['estimated_calls']} estimated)" if row.get("estimated_calls") else "")
        )
        for agent_id, agent in sorted(row["agents"].items()):
            echo(
                f"    {agent_id}: jobs {agent.get('jobs', 0)}  prompt {agent.get('prompt_tokens', 0)}  "
                f"completion {agent.get('completion_tokens', 0)}"
            )
    return 0


def add_tenant_commands(sub: Any) -> None:
    """Register `plangate tenants ...` and `plangate usage`."""
    tenants = sub.add_parser("tenants", help="tenants: who owns agents and projects, and their quotas")
    tsub = tenants.add_subparsers(dest="tenants_cmd", required=True)
    p = tsub.add_parser("add", help="add or replace a tenant and its quotas")
    p.add_argument("tenant_id", help="the tenant's id (letters, digits and _.@-; no ':')")
    p.add_argument("--name", default="", help="a display name")
    p.add_argument("--project", action="append", default=[], help="a project of this tenant (repeatable)")
    p.add_argument("--max-concurrent", type=int, help="running jobs at once, across all workers")
    p.add_argument("--jobs-per-minute", type=int, help="jobs admitted per rolling minute")
    p.add_argument("--tokens-per-day", type=int, help="LLM tokens per UTC day (reserved before each call)")
    p.add_argument("--cost-per-day-usd", type=float, help="USD per UTC day (needs PLANGATE_MODEL_PRICES)")
    p.add_argument(
        "--weight", type=float, default=1.0, help="its share of job starts when workers are busy (default 1)"
    )
    p.add_argument("--json", action="store_true", help="print the saved tenant record as JSON, for scripts")
    p.set_defaults(run=cmd_tenants)
    p = tsub.add_parser("list", help="list tenants")
    p.add_argument(
        "--json", action="store_true", help="print every tenant record as a JSON list, for scripts"
    )
    p.set_defaults(run=cmd_tenants)
    p = tsub.add_parser("show", help="a tenant, its quotas and today's account")
    p.add_argument("tenant_id", help="the tenant's id")
    p.add_argument(
        "--json", action="store_true", help="print the tenant record and today's account as JSON, for scripts"
    )
    p.set_defaults(run=cmd_tenants)

    p = sub.add_parser("usage", help="LLM tokens and cost per tenant, agent and day")
    p.add_argument("--tenant", required=True, help="the tenant's id")
    p.add_argument("--since", required=True, help="first UTC day, e.g. 2026-11-01")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per day, as a list, for scripts"
    )
    p.set_defaults(run=cmd_usage)
