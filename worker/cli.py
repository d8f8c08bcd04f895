"""The `plangate` command. Exit codes: 0 success, 1 timeout, 2 bad input, 3 queue unavailable."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from governance.agent_keys import AgentKeyStore
from governance.live_state import AgentStateStore, LockStore
from governance.models import SEED_AGENT_ID, AgentRecord
from governance.registry import AgentRegistry, RegistryError, TenantRegistry
from worker import codec
from worker.admin import AgentAdmin
from worker.cli_ledger import add_ledger_commands
from worker.cli_render import render_event, render_status, status_json
from worker.cli_stats import add_stats_commands
from worker.cli_tenants import add_tenant_commands
from worker.client import PlanClient, describe_validation_error
from worker.errors import BadRequest, JobNotFound, PlangateError, QueueUnavailable, WaitTimeout
from worker.keys import Keys
from worker.log_setup import configure_logging
from worker.redis_conn import redacted, refusal, text_client
from worker.settings import Settings
from worker.web import add_web_commands

EXIT_OK, EXIT_TIMEOUT, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CLIError(PlangateError):
    """A usage problem found by the CLI itself (exit code 2)."""


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


# --- job commands -------------------------------------------------------------------------


def _parse_context(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        data = codec.loads(text)
    except ValueError as exc:
        raise CLIError(f"--context is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CLIError("--context must be a JSON object")
    return data


async def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    request: dict[str, Any] = {
        "agent_id": args.agent,
        "tenant_id": args.tenant,
        "task_type": args.task_type,
        "description": args.description,
        "constraints": args.constraint,
        "side_effects": args.side_effect,
        "context": _parse_context(args.context),
    }
    if args.lock:
        request["locks"] = args.lock
        request["wait_lock_s"] = args.wait_lock
    if args.handoff_from:
        request["handoff_from"] = args.handoff_from
    if args.project:
        request["project_id"] = args.project
    if args.idempotency_key:
        request["idempotency_key"] = args.idempotency_key
    if args.model:
        request["model"] = args.model
    key = settings.agent_key.get_secret_value() if settings.agent_key else None
    async with PlanClient.connect(settings, agent_key=key) as client:
        job_id = await client.submit(request)
        if not args.wait:
            status = await client.status(job_id)
            _out(status_json(status) if args.json else job_id)
            return EXIT_OK
        return await _wait_and_show(client, job_id, args)


async def _wait_and_show(client: PlanClient, job_id: str, args: argparse.Namespace) -> int:
    try:
        status = await client.wait(job_id, timeout=args.timeout)
    except WaitTimeout as exc:
        status = await client.status(job_id)
        if args.json:
            _out(status_json(status))
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_TIMEOUT
    _show(status, args)
    return EXIT_OK


def _show(status: Any, args: argparse.Namespace) -> None:
    if args.json:
        _out(status_json(status))
    else:
        render_status(status, sys.stdout)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async with PlanClient.connect(settings) as client:
        _show(await client.status(args.job_id), args)
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace, settings: Settings) -> int:
    async with PlanClient.connect(settings) as client:
        return await _wait_and_show(client, args.job_id, args)


async def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    live = sys.stdout.isatty() and not args.json
    async with PlanClient.connect(settings) as client:
        async for event in client.watch(args.job_id):
            if args.json:
                _out(event.model_dump_json())
            else:
                render_event(event, sys.stdout, live=live)
        if not args.json:
            render_status(await client.status(args.job_id), sys.stdout)
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    async with PlanClient.connect(settings) as client:
        _show(await client.cancel(args.job_id), args)
    return EXIT_OK


# --- worker, demo, stub ---------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from worker.heap import freeze_startup_objects
    from worker.worker_process import serve

    if args.concurrency is not None:
        try:
            settings = settings.with_changes(concurrency=args.concurrency)
        except ValidationError as exc:
            raise CLIError(f"--concurrency {args.concurrency}: {exc.errors()[0]['msg']}") from exc
    freeze_startup_objects()
    asyncio.run(serve(settings, burst=args.burst, ledger_writer=not args.no_ledger_writer))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from worker.demo import run_demo

    # The demo's own output is the point; worker logs only when something goes wrong.
    configure_logging("WARNING")
    return asyncio.run(run_demo(args))


def cmd_llm_stub(args: argparse.Namespace, settings: Settings) -> int:
    from worker.llm_stub import serve_forever

    try:
        asyncio.run(serve_forever(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# --- agents and ledger ----------------------------------------------------------------------


def _redis(settings: Settings) -> Redis:
    return text_client(settings.redis_url)


def _registry(redis: Redis, settings: Settings) -> AgentRegistry:
    return AgentRegistry(redis, Keys(settings.key_prefix))


async def cmd_agents_add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        record = AgentRecord(
            agent_id=args.agent_id,
            role=args.role,
            tier=args.tier,
            confidence_threshold=args.confidence_threshold,
            allowed_side_effects=args.allow,
            forbidden_actions=args.forbid,
            allowed_task_types=args.task_type,
            error_budget_limit=args.error_budget,
            error_budget_window_s=args.error_window,
            tenant_id=args.tenant,
        )
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc, "agent")) from exc
    async with _redis(settings) as redis:
        if await TenantRegistry(redis, Keys(settings.key_prefix)).get(record.tenant_id) is None:
            raise BadRequest(f"no tenant with id {record.tenant_id!r} (add it with `plangate tenants add`)")
        await _registry(redis, settings).put(record)
        key = (
            await AgentKeyStore(redis, Keys(settings.key_prefix)).issue(record.agent_id)
            if args.issue_key
            else None
        )
    if args.json:
        _out(codec.dumps({**record.model_dump(mode="json"), **({"agent_key": key} if key else {})}))
    else:
        _out(f"agent {record.agent_id} saved (tier {record.tier}, tenant {record.tenant_id})")
        if key:
            _out(f"agent key (shown once; jobs must carry it, e.g. PLANGATE_AGENT_KEY): {key}")
    return EXIT_OK


async def cmd_agents_issue_key(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        if await _registry(redis, settings).get(args.agent_id) is None:
            raise BadRequest(f"no agent with id {args.agent_id!r}")
        key = await AgentKeyStore(redis, Keys(settings.key_prefix)).issue(args.agent_id)
    _out(key)  # the only time it is shown: it is stored hashed
    return EXIT_OK


async def cmd_agents_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        registry = _registry(redis, settings)
        records = await registry.list()
    if args.json:
        _out(codec.dumps([r.model_dump(mode="json") for r in records]))
    else:
        for r in records:
            _out(f"{r.agent_id}\ttier {r.tier}\t{r.role}\tthreshold {r.confidence_threshold:.2f}")
    return EXIT_OK


async def cmd_agents_show(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        registry = _registry(redis, settings)
        record = await registry.get(args.agent_id)
        if record is None:
            raise BadRequest(f"no agent with id {args.agent_id!r}")
        states = AgentStateStore(redis, Keys(settings.key_prefix))
        state, raw_state = await states.read(record), await states.raw(record.agent_id)
    shown = {**record.model_dump(mode="json"), "state": {**raw_state, **state.model_dump(mode="json")}}
    if args.json:
        _out(codec.dumps(shown))
    else:
        for name, value in shown.items():
            if name == "state":
                for key, item in value.items():
                    _out(f"state.{key}: {item}")
            else:
                _out(f"{name}: {', '.join(value) if isinstance(value, list) else value}")
    return EXIT_OK


async def cmd_agents_admin(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        registry = _registry(redis, settings)
        if await registry.get(args.agent_id) is None:
            raise BadRequest(f"no agent with id {args.agent_id!r}")
        admin = AgentAdmin(redis, Keys(settings.key_prefix))
        if args.agents_cmd == "revoke":
            await admin.revoke(args.agent_id, reason=args.reason, by=args.by)
        elif args.agents_cmd == "restore":
            await admin.restore(args.agent_id, by=args.by, reason=args.reason or "")
        else:
            await admin.reset_budget(args.agent_id, by=args.by, reason=args.reason or "")
    done = {"revoke": "revoked", "restore": "restored", "reset-budget": "error budget reset"}[args.agents_cmd]
    _out(f"agent {args.agent_id} {done} by {args.by}")
    return EXIT_OK


async def cmd_locks_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        holders = await LockStore(redis, Keys(settings.key_prefix)).holders()
    if args.json:
        _out(codec.dumps([{"resource": h.resource, "job_id": h.job_id, "ttl_ms": h.ttl_ms} for h in holders]))
    elif not holders:
        _out("no locks held")
    else:
        for h in holders:
            _out(f"{h.resource}\theld by job {h.job_id}\t(expires in {h.ttl_ms / 1000:.1f}s unless renewed)")
    return EXIT_OK


async def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    async with PlanClient.connect(settings) as client:
        desk = client.review_desk()
        if args.review_cmd == "list":
            pending = await desk.pending()
            if args.json:
                _out(codec.dumps([s.model_dump(mode="json") for s in pending]))
            elif not pending:
                _out("no plans waiting for review")
            for status in [] if args.json else pending:
                flags = ", ".join(status.output.metadata.get("flags", [])) if status.output else ""
                _out(f"{status.job_id}\tagent {status.agent_id}\tfinished {status.finished_at}\t{flags}")
            return EXIT_OK
        status = await desk.decide(
            args.job_id, approve=args.review_cmd == "approve", by=args.by, note=args.note
        )
        _show(status, args)
    return EXIT_OK


async def cmd_failed(args: argparse.Namespace, settings: Settings) -> int:
    async with PlanClient.connect(settings) as client:
        if args.failed_cmd == "retry":
            new_id = await client.retry(args.job_id)
            _out(status_json(await client.status(new_id)) if args.json else new_id)
            return EXIT_OK
        failed = await client.failed(args.limit)
    if args.json:
        _out(codec.dumps([s.model_dump(mode="json") for s in failed]))
    elif not failed:
        _out("no failed jobs")
    else:
        for s in failed:
            cause = f"{s.error.type}: {s.error.message}" if s.error else "?"
            _out(f"{s.job_id}\t{s.finished_at}\tagent {s.agent_id}\t{cause}")
    return EXIT_OK


async def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    from worker.watchdog import liveness_window_s

    async with PlanClient.connect(settings) as client:
        alive = await client.healthy_workers(liveness_window_s(settings))
    if alive:
        _out(f"ok: {alive} worker(s) of queue {settings.queue_name} taking jobs")
        return EXIT_OK
    sys.stderr.write(
        f"plangate: no worker of queue {settings.queue_name} takes jobs"
        " (none beat recently, or all are draining)\n"
    )
    return EXIT_TIMEOUT


# --- the parser -----------------------------------------------------------------------------


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the job's status object as JSON (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plangate",
        description=(
            "A governed planning queue. Agents submit planning jobs; workers check them against "
            "governance, stream an LLM call for a plan, check the plan, and record the outcome in "
            "Redis (poll it by job id) and in an append-only SQLite ledger. Configuration comes from "
            "PLANGATE_* environment variables (see README). Try `plangate demo` first."
        ),
        epilog="Exit codes: 0 success, 1 timeout, 2 bad input or unknown job, 3 Redis unreachable.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a planning job", description="Submit a planning job.")
    p.add_argument("--agent", default=SEED_AGENT_ID, help=f"agent id (default {SEED_AGENT_ID})")
    p.add_argument("--task-type", default="plan", help="plan, analyze or review (default plan)")
    p.add_argument("--description", required=True, help="what to plan (at most 8,000 characters)")
    p.add_argument("--constraint", action="append", default=[], help="a constraint (repeatable, at most 50)")
    p.add_argument(
        "--side-effect", action="append", default=[], help="a side effect the plan may need (repeatable)"
    )
    p.add_argument("--context", help="read-only context as a JSON object, or @FILE (at most 64 KiB)")
    p.add_argument("--tenant", default="default", help="tenant id (default 'default')")
    p.add_argument("--project", help="the tenant's project this plan is for")
    p.add_argument(
        "--model", help="model to use instead of PLANGATE_MODEL (must be on PLANGATE_ALLOWED_MODELS)"
    )
    p.add_argument("--idempotency-key", help="submitting again with the same key returns the same job")
    p.add_argument(
        "--lock",
        action="append",
        default=[],
        help="a resource this plan is for; held while it runs (repeatable)",
    )
    p.add_argument(
        "--wait-lock",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for held locks (default 0)",
    )
    p.add_argument("--handoff-from", metavar="JOB_ID", help="carry that finished job's plan in as context")
    p.add_argument("--wait", action="store_true", help="wait for the terminal state and print it")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait (default 300)")
    _add_json(p)
    p.set_defaults(run=cmd_submit)

    for name, fn, text in (
        ("status", cmd_status, "print a job's status"),
        ("wait", cmd_wait, "wait for a job to finish and print its status"),
        ("watch", cmd_watch, "follow a job's phases and token count live"),
        ("cancel", cmd_cancel, "cancel a job (queued: at once; running: at its next heartbeat)"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id")
        if name == "wait":
            p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
        _add_json(p)
        p.set_defaults(run=fn)

    p = sub.add_parser("worker", help="run a worker", description="Run an arq worker for the planning queue.")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default PLANGATE_CONCURRENCY, 10)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--no-ledger-writer",
        action="store_true",
        help="do not drain the ledger stream here (run it elsewhere)",
    )
    p.set_defaults(run=cmd_worker, sync=True)

    p = sub.add_parser(
        "demo",
        help="run everything embedded and plan one job",
        description="Run one planning job with everything in this process: an in-process Redis stand-in, "
        "the scripted LLM endpoint on loopback, a worker and the ledger writer. Needs no server and no key.",
    )
    p.add_argument(
        "--description", default="Roll out a new version of the web service to the staging cluster"
    )
    p.add_argument(
        "--model", default="scripted-slow", help="scripted behaviour to use (default scripted-slow)"
    )
    p.add_argument("--ledger", type=Path, help="ledger file (default: a temporary file)")
    p.set_defaults(run=cmd_demo, sync=True)

    p = sub.add_parser(
        "llm-stub",
        help="run the scripted OpenAI-compatible endpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_stub_description(),
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088)
    p.set_defaults(run=cmd_llm_stub, sync=True)

    agents = sub.add_parser("agents", help="the agent registry").add_subparsers(
        dest="agents_cmd", required=True
    )
    p = agents.add_parser("add", help="add or replace an agent")
    p.add_argument("agent_id")
    p.add_argument("--role", default="observer")
    p.add_argument("--tier", type=int, default=0)
    p.add_argument("--allow", action="append", default=[], help="an allowed side effect (repeatable)")
    p.add_argument("--forbid", action="append", default=[], help="a forbidden action (repeatable)")
    p.add_argument("--confidence-threshold", type=float, default=0.7, help="below it a plan escalates")
    p.add_argument(
        "--task-type", action="append", default=[], help="a task type a tier>=1 agent may plan (repeatable)"
    )
    p.add_argument(
        "--error-budget", type=int, default=5, help="failed jobs that suspend the agent (default 5)"
    )
    p.add_argument("--error-window", type=int, default=3600, help="seconds the failures are counted over")
    p.add_argument("--tenant", default="default", help="the tenant the agent belongs to (default 'default')")
    p.add_argument("--issue-key", action="store_true", help="issue an agent key that its jobs must carry")
    _add_json(p)
    p.set_defaults(run=cmd_agents_add)
    p = agents.add_parser("list", help="list agents")
    _add_json(p)
    p.set_defaults(run=cmd_agents_list)
    p = agents.add_parser(
        "show", help="show one agent, its live state and the tracker (phase, job, heartbeat)"
    )
    p.add_argument("agent_id")
    _add_json(p)
    p.set_defaults(run=cmd_agents_show)
    for name, text in (
        ("revoke", "the kill switch: refuse the agent's queued jobs and stop its running ones"),
        ("restore", "lift a revocation"),
        ("reset-budget", "forget the agent's counted failures and lift its suspension"),
    ):
        p = agents.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("agent_id")
        p.add_argument("--reason", required=name == "revoke", help="why (recorded in the ledger)")
        p.add_argument("--by", default=_operator(), help="who (default: the current user)")
        p.set_defaults(run=cmd_agents_admin)

    p = agents.add_parser("issue-key", help="issue (or replace) an agent's key; printed once, stored hashed")
    p.add_argument("agent_id")
    p.set_defaults(run=cmd_agents_issue_key)

    locks = sub.add_parser("locks", help="resource locks").add_subparsers(dest="locks_cmd", required=True)
    p = locks.add_parser("list", help="who holds which resource lock")
    _add_json(p)
    p.set_defaults(run=cmd_locks_list)

    review = sub.add_parser("review", help="human review of escalated plans").add_subparsers(
        dest="review_cmd", required=True
    )
    p = review.add_parser("list", help="plans that ended ESCALATE and wait for a human")
    _add_json(p)
    p.set_defaults(run=cmd_review)
    for name in ("approve", "reject"):
        p = review.add_parser(name, help=f"{name} an escalated plan (once per job; recorded in the ledger)")
        p.add_argument("job_id")
        p.add_argument("--by", required=True, help="the reviewer's name")
        p.add_argument("--note", default="", help="why")
        _add_json(p)
        p.set_defaults(run=cmd_review)

    failed = sub.add_parser("failed", help="the dead-letter view of failed jobs").add_subparsers(
        dest="failed_cmd", required=True
    )
    p = failed.add_parser("list", help="jobs that ended failed (tries exhausted, timeouts, LLM errors)")
    p.add_argument("--limit", type=int, default=100)
    _add_json(p)
    p.set_defaults(run=cmd_failed)
    p = failed.add_parser("retry", help="submit a failed job's request again as a new job")
    p.add_argument("job_id")
    _add_json(p)
    p.set_defaults(run=cmd_failed)

    p = sub.add_parser(
        "health",
        help="exit 0 when a worker of this queue takes jobs (container probes)",
        description="Exit 0 when a worker of this queue beat recently and takes jobs (not draining); "
        "1 when none does; 3 when Redis cannot be reached or used.",
    )
    p.set_defaults(run=cmd_health)

    add_ledger_commands(sub)
    add_tenant_commands(sub)
    add_stats_commands(sub)
    add_web_commands(sub)
    return parser


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _stub_description() -> str:
    from worker.llm_stub import BEHAVIOURS

    lines = [
        "Run the scripted OpenAI-compatible endpoint (/v1/chat/completions, /v1/models) for offline use.",
        "Point workers at it with PLANGATE_LLM_BASE_URL=http://HOST:PORT/v1.",
        "The model name picks a behaviour:",
        "",
    ]
    lines += [f"  {name:<26} {text}" for name, text in BEHAVIOURS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plangate` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PLANGATE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.stderr.write(f"plangate: invalid configuration: {problems}\n")
        return EXIT_BAD_INPUT
    # Services log at INFO by default; one-shot commands keep stderr for errors unless asked.
    service = args.command in ("worker", "llm-stub")
    explicit = "log_level" in settings.model_fields_set
    configure_logging(settings.log_level if service or explicit else "WARNING")
    run: Callable[..., Any] = args.run
    try:
        if getattr(args, "sync", False):
            return int(run(args, settings))
        coro: Awaitable[int] = run(args, settings)
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (BadRequest, JobNotFound, CLIError, RegistryError) as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_BAD_INPUT
    except QueueUnavailable as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_UNAVAILABLE
    except (RedisConnectionError, RedisTimeoutError) as exc:
        sys.stderr.write(f"plangate: cannot reach Redis at {redacted(settings.redis_url)}: {exc}\n")
        return EXIT_UNAVAILABLE
    except RedisError as exc:  # a server that answers but refuses (a read-only replica, out of memory)
        sys.stderr.write(
            f"plangate: Redis at {redacted(settings.redis_url)} refused a command ({refusal(exc)})\n"
        )
        return EXIT_UNAVAILABLE
    except OSError as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
