"""The `plangate` command. Exit codes: EXIT_CODES_TEXT below (also in `plangate --help`).

Agents poll by running it, so it starts light: building the parser imports no third-party package, and
each command imports what it needs when it runs (`status` needs redis-py, the settings and the status
model; not arq, the LLM client or the worker). tests/unit/test_cli_startup.py holds that.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.capabilities import BUILTIN_VOCABULARY, SEED_ALLOWED_SIDE_EFFECTS, SEED_FORBIDDEN_ACTIONS
from plangate_base import codec
from plangate_base.vocabulary import SEED_AGENT_ID, JobState
from worker.cli.arg_types import port_number, seconds
from worker.cli.doctor import add_doctor_commands
from worker.cli.ledger import add_ledger_commands
from worker.cli.mcp_stdio import add_mcp_commands
from worker.cli.queue_ops import add_queue_commands
from worker.cli.render import echo, render_event, render_fields, render_status, status_json
from worker.cli.serve import add_serve_commands
from worker.cli.stats import add_stats_commands
from worker.cli.subparsers import Commands
from worker.cli.templates import (
    add_agent_template_arguments,
    add_agent_upgrade_command,
    add_template_commands,
)
from worker.cli.tenants import add_tenant_commands
from worker.cli.web import add_web_commands
from worker.cli.webhooks import add_webhook_commands
from worker.errors import (
    BadRequest,
    JobNotFound,
    PlangateError,
    QueueUnavailable,
    Unauthenticated,
    WaitTimeout,
)
from worker.keys import Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from governance.registry import AgentRegistry
    from worker.admin import AgentAdmin
    from worker.client import PlanClient
    from worker.settings import Settings

EXIT_OK, EXIT_TIMEOUT, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
# `wait` and `submit --wait`: 0 only for done; each other ending has its own code.
EXIT_REFUSED, EXIT_FAILED, EXIT_CANCELLED = 4, 5, 6
EXIT_OF_STATE = {
    JobState.DONE: EXIT_OK,
    JobState.REFUSED: EXIT_REFUSED,
    JobState.FAILED: EXIT_FAILED,
    JobState.CANCELLED: EXIT_CANCELLED,
}
EXIT_CODES_TEXT = (
    "Exit codes: 0 success (for wait and submit --wait: the job ended done), 1 timeout, 2 bad input or "
    "unknown job, 3 Redis unreachable, 4 the job was refused, 5 it failed, 6 it was cancelled."
)
NO_WORKER_NOTICE_S = 3.0


class CLIError(PlangateError):
    """A usage problem found by the CLI itself (exit code 2)."""


# --- job commands -------------------------------------------------------------------------


def _parse_context(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = _read_context_file(value[1:]) if value.startswith("@") else value
    try:
        data = codec.loads(text)
    except ValueError as exc:
        raise CLIError(f"--context is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CLIError("--context must be a JSON object")
    return data


def _read_context_file(path: str) -> str:
    """The text of `--context @FILE`: at most MAX_CONTEXT_BYTES of UTF-8, read without reading more
    (so `@/dev/zero` or a huge log is refused at once, not loaded into memory)."""
    from governance.models import MAX_CONTEXT_BYTES

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONTEXT_BYTES + 1)
    except OSError as exc:
        raise CLIError(f"--context @{path}: cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONTEXT_BYTES:
        raise CLIError(f"--context @{path} is larger than the context limit of {MAX_CONTEXT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(
            f"--context @{path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"
        ) from exc


def submit_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request `plangate submit` sends, from its arguments (over Redis or over the HTTP API)."""
    request: dict[str, Any] = {
        "agent_id": args.agent or SEED_AGENT_ID,
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
    if args.callback_url:
        request["callback_url"] = args.callback_url
    for name in ("priority", "delay_s", "not_before", "deadline"):
        if getattr(args, name, None) is not None:
            request[name] = getattr(args, name)
    return request


async def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    request = submit_request(args)
    key = settings.agent_key.get_secret_value() if settings.agent_key else None
    async with PlanClient.connect(settings, agent_key=key) as client:
        if args.tenant is None:  # the agent's own tenant
            agent = await client.agent(request["agent_id"])
            request["tenant_id"] = agent.tenant_id if agent else "default"
        job_id = await client.submit(request)
        if not args.wait:
            status = await client.status(job_id)
            echo(status_json(status) if args.json else job_id)
            return EXIT_OK
        return await _wait_and_show(client, job_id, args)


async def _wait_and_show(client: PlanClient, job_id: str, args: argparse.Namespace) -> int:
    import asyncio

    waiting = asyncio.ensure_future(client.wait(job_id, timeout=args.timeout))
    try:
        done, _ = await asyncio.wait({waiting}, timeout=min(NO_WORKER_NOTICE_S, args.timeout))
        if not done:
            await _say_if_no_worker(client, job_id)
        status = await waiting
    except WaitTimeout as exc:
        status = await client.status(job_id)
        if args.json:
            echo(status_json(status))
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_TIMEOUT
    finally:
        if not waiting.done():
            waiting.cancel()
    _show(status, args)
    return EXIT_OF_STATE[status.state]


async def _say_if_no_worker(client: PlanClient, job_id: str) -> None:
    """A job that waits in the queue with no worker alive waits forever: say so, keep waiting."""
    status = await client.status(job_id)
    if status.state is JobState.QUEUED and not await client.healthy_workers(
        client.settings.liveness_window_s
    ):
        sys.stderr.write(
            f"plangate: job {job_id} is still queued and no worker of queue {client.settings.queue_name} "
            "is alive (start one with `plangate worker`); still waiting\n"
        )


def _show(status: Any, args: argparse.Namespace) -> None:
    if args.json:
        echo(status_json(status))
    else:
        render_status(status, sys.stdout)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    async with PlanClient.connect(settings) as client:
        _show(await client.status(args.job_id), args)
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    async with PlanClient.connect(settings) as client:
        return await _wait_and_show(client, args.job_id, args)


async def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    live = sys.stdout.isatty() and not args.json
    async with PlanClient.connect(settings) as client:
        status = await client.status(args.job_id)
        if status.state is JobState.QUEUED and not args.json:
            ahead = await client.queue_position(args.job_id)
            where = f" ({ahead} ahead of it in the queue, running ones included)" if ahead else ""
            echo(f"job {args.job_id} is queued: waiting for a worker{where}")
        async for event in client.watch(args.job_id):
            if args.json:
                echo(event.model_dump_json())
            else:
                render_event(event, sys.stdout, live=live)
        if not args.json:
            render_status(await client.status(args.job_id), sys.stdout)
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    async with PlanClient.connect(settings) as client:
        status = await client.cancel(args.job_id)
    if args.json:
        echo(status_json(status))
    elif status.state is JobState.CANCELLED:
        echo(f"job {status.job_id} cancelled")
    else:
        echo(f"job {status.job_id} is {status.state.value}: cancel requested, it stops at its next heartbeat")
    return EXIT_OK


# --- worker, demo, stub ---------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pydantic import ValidationError

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
    import asyncio

    from worker.demo.run import run_demo

    return asyncio.run(run_demo(args))


def cmd_llm_stub(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from worker.llm_stub.server import serve_forever

    try:
        asyncio.run(serve_forever(args.host, args.port, args.api_key))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, or the address is not ours: a setting to change
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return EXIT_OK


# --- agents and ledger ----------------------------------------------------------------------


def _redis(settings: Settings) -> Redis:
    from worker.redis_conn import text_client

    return text_client(settings.redis_url)


def _registry(redis: Redis, settings: Settings) -> AgentRegistry:
    from governance.registry import AgentRegistry

    return AgentRegistry(redis, Keys(settings.key_prefix))


def _names(values: list[str]) -> list[str]:
    """Repeatable name flags that may also be comma-separated (`--allow read_docs,read_logs`)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


# `agents add`'s flags that set the record itself, by the record's field they set (a template sets them).
_RECORD_FLAGS = {
    "role": "--role",
    "tier": "--tier",
    "confidence_threshold": "--confidence-threshold",
    "allowed_side_effects": "--allow",
    "forbidden_actions": "--forbid",
    "lifted_forbidden": "--lift",
    "allowed_task_types": "--task-type",
    "error_budget_limit": "--error-budget",
    "error_budget_window_s": "--error-window",
}


def _record_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The record's fields given on the command line (the others keep the record's defaults)."""
    given = {
        "role": args.role,
        "tier": args.tier,
        "confidence_threshold": args.confidence_threshold,
        "allowed_side_effects": _names(args.allow),  # none: the seed's read and plan capabilities
        "forbidden_actions": _names(args.forbid),
        "lifted_forbidden": _names(args.lift),
        "allowed_task_types": args.task_type,
        "error_budget_limit": args.error_budget,
        "error_budget_window_s": args.error_window,
    }
    return {name: value for name, value in given.items() if value not in (None, [])}


async def _installed_from(admin: AgentAdmin, agent_id: str) -> str | None:
    """NAME@VERSION of the template the stored agent was installed from (None: by hand, or unknown)."""
    from governance.registry import RegistryError

    try:
        stored = await admin.agents.get(agent_id)
    except RegistryError:
        return None
    if stored is None or stored.template is None:
        return None
    return f"{stored.template.name}@{stored.template.version}"


async def cmd_agents_add(args: argparse.Namespace, settings: Settings) -> int:
    fields: dict[str, Any] = _record_fields(args)
    if args.template:  # the profile comes from the template (worker/cli/templates.py)
        if fields:
            flags = ", ".join(_RECORD_FLAGS[name] for name in fields)
            raise BadRequest(
                f"--template sets the agent's profile; {flags} cannot be combined with it "
                "(pass the template's parameters with --param NAME=VALUE; `agents add` without --template "
                "replaces the agent by hand afterwards)"
            )
        from worker.cli.templates import cmd_agents_add_template

        return await cmd_agents_add_template(args, settings)
    if args.param or args.allow_unsigned:
        raise BadRequest("--param and --allow-unsigned apply to --template only")
    from pydantic import ValidationError

    from governance.models import AgentRecord
    from worker.admin import AgentAdmin
    from worker.errors import describe_validation_error

    fields |= {"agent_id": args.agent_id, "tenant_id": args.tenant, "keyless": args.keyless}
    try:
        record = AgentRecord.model_validate(fields)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc, "agent")) from exc
    async with _redis(settings) as redis:
        admin = AgentAdmin(redis, Keys(settings.key_prefix))
        detached = await _installed_from(admin, record.agent_id)
        changed = await admin.save_agent(record, by=args.by)
        key = await admin.issue_agent_key(record.agent_id, by=args.by) if args.issue_key else None
    if args.json:
        echo(codec.dumps({**record.model_dump(mode="json"), **({"agent_key": key} if key else {})}))
    else:
        what = "saved" if changed else "unchanged (the stored record is the same)"
        echo(f"agent {record.agent_id} {what} (tier {record.tier}, tenant {record.tenant_id})")
        if detached is not None:
            echo(
                f"replaced by hand: it no longer runs template {detached} (nor its instructions); "
                f"`plangate agents add {record.agent_id} --template {detached}` installs it again"
            )
        if record.lifted_forbidden:
            echo(f"lifted forbidden actions (recorded in the ledger): {', '.join(record.lifted_forbidden)}")
        if key:
            echo(f"agent key (shown once; jobs must carry it, e.g. PLANGATE_AGENT_KEY): {key}")
        elif record.keyless:
            echo("keyless: anyone who can submit may claim this agent until a key is issued")
        else:
            echo(f"jobs need its key: issue one with `plangate agents issue-key {record.agent_id}`")
    return EXIT_OK


async def cmd_agents_issue_key(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import AgentAdmin

    async with _redis(settings) as redis:
        key = await AgentAdmin(redis, Keys(settings.key_prefix)).issue_agent_key(args.agent_id, by=args.by)
    echo(key)  # the only time it is shown: it is stored hashed
    return EXIT_OK


async def cmd_agents_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _redis(settings) as redis:
        registry = _registry(redis, settings)
        records = await registry.list()
    if args.json:
        echo(codec.dumps([r.model_dump(mode="json") for r in records]))
    else:
        for r in records:
            keyless = "\tkeyless" if r.keyless else ""
            echo(
                f"{r.agent_id}\ttier {r.tier}\t{r.role}\ttenant {r.tenant_id}"
                f"\tthreshold {r.confidence_threshold:.2f}{keyless}"
            )
    return EXIT_OK


async def cmd_agents_show(args: argparse.Namespace, settings: Settings) -> int:
    from governance.live_state import AgentStateStore
    from worker.admin import agent_keys

    keys = Keys(settings.key_prefix)
    async with _redis(settings) as redis:
        registry = _registry(redis, settings)
        record = await registry.get(args.agent_id)
        if record is None:
            raise BadRequest(f"no agent with id {args.agent_id!r}")
        states = AgentStateStore(redis, keys)
        state, raw_state = await states.read(record), await states.raw(record.agent_id)
        has_key = await agent_keys(redis, keys).stored(record.agent_id) is not None
    key = "issued" if has_key else ("none: keyless (anyone may submit as it)" if record.keyless else "none")
    shown = {
        **record.model_dump(mode="json"),
        "key": key,
        "state": {**raw_state, **state.model_dump(mode="json")},
    }
    if args.json:
        echo(codec.dumps(shown))
    else:
        render_fields(shown, sys.stdout)
    return EXIT_OK


async def cmd_agents_admin(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import AgentAdmin

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
    echo(f"agent {args.agent_id} {done} by {args.by}")
    return EXIT_OK


async def cmd_vocabulary(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import AgentAdmin

    async with _redis(settings) as redis:
        admin = AgentAdmin(redis, Keys(settings.key_prefix))
        if args.vocabulary_cmd == "add":
            new = await admin.add_vocabulary(_names(args.word), by=args.by, reason=args.reason)
            echo(f"added: {', '.join(new)}" if new else "nothing new: every word is known already")
            return EXIT_OK
        added = {word: codec.loads(raw) for word, raw in (await admin.vocabulary.added()).items()}
    words = sorted(BUILTIN_VOCABULARY | set(added))
    if args.json:
        echo(
            codec.dumps([{"word": w, "builtin": w in BUILTIN_VOCABULARY, **added.get(w, {})} for w in words])
        )
        return EXIT_OK
    for word in words:
        if word in added:
            entry = added[word]
            echo(f"{word}\tadded by {entry.get('by')} at {entry.get('at')}: {entry.get('reason')}")
        else:
            kind = "seed, forbidden to every agent" if word in SEED_FORBIDDEN_ACTIONS else "seed"
            echo(f"{word}\t{kind}")
    return EXIT_OK


async def cmd_reviewers(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from governance.models import ReviewerRecord
    from worker.admin import AgentAdmin
    from worker.errors import describe_validation_error

    async with _redis(settings) as redis:
        admin = AgentAdmin(redis, Keys(settings.key_prefix))
        if args.reviewers_cmd == "add":
            try:
                record = ReviewerRecord(reviewer_id=args.reviewer_id, tenant_id=args.tenant, name=args.name)
            except ValidationError as exc:
                raise BadRequest(describe_validation_error(exc, "reviewer")) from exc
            key = await admin.save_reviewer(record, by=args.by)
            if args.json:
                echo(codec.dumps({**record.model_dump(mode="json"), "reviewer_key": key}))
            else:
                echo(f"reviewer {record.reviewer_id} saved for tenant {record.tenant_id}")
                echo(
                    f"reviewer key (shown once; `plangate review` reads it from PLANGATE_REVIEWER_KEY): {key}"
                )
            return EXIT_OK
        records = await admin.reviewers.list()
    if args.json:
        echo(codec.dumps([r.model_dump(mode="json") for r in records]))
    elif not records:
        echo("no reviewers (add one with `plangate reviewers add ID --tenant T`)")
    for r in [] if args.json else records:
        echo(f"{r.reviewer_id}\ttenant {r.tenant_id}\t{r.name}")
    return EXIT_OK


async def cmd_locks_list(args: argparse.Namespace, settings: Settings) -> int:
    from governance.live_state import LockStore

    async with _redis(settings) as redis:
        holders = await LockStore(redis, Keys(settings.key_prefix)).holders()
    if args.json:
        echo(codec.dumps([{"resource": h.resource, "job_id": h.job_id, "ttl_ms": h.ttl_ms} for h in holders]))
    elif not holders:
        echo("no locks held")
    else:
        for h in holders:
            echo(f"{h.resource}\theld by job {h.job_id}\t(expires in {h.ttl_ms / 1000:.1f}s unless renewed)")
    return EXIT_OK


async def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    key = settings.reviewer_key.get_secret_value() if settings.reviewer_key else None
    async with PlanClient.connect(settings) as client:
        desk = await client.review_desk(args.by, key)
        if args.review_cmd == "list":
            pending = await desk.pending()
            if args.json:
                echo(codec.dumps([s.model_dump(mode="json") for s in pending]))
            elif not pending:
                echo(f"no plans of tenant {desk.reviewer.tenant_id} waiting for review")
            for status in [] if args.json else pending:
                flags = ", ".join(status.output.metadata.get("flags", [])) if status.output else ""
                echo(f"{status.job_id}\tagent {status.agent_id}\tfinished {status.finished_at}\t{flags}")
            return EXIT_OK
        status = await desk.decide(args.job_id, approve=args.review_cmd == "approve", note=args.note)
        if args.json:
            echo(status_json(status))
        else:
            verb = "approved" if args.review_cmd == "approve" else "rejected"
            echo(
                f"job {status.job_id} {verb} by reviewer {desk.reviewer.reviewer_id} (recorded in the ledger)"
            )
    return EXIT_OK


async def cmd_failed(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    async with PlanClient.connect(settings) as client:
        if args.failed_cmd == "retry":
            new_id = await client.retry(args.job_id)
            echo(status_json(await client.status(new_id)) if args.json else new_id)
            return EXIT_OK
        failed = await client.failed(args.limit)
    if args.json:
        echo(codec.dumps([s.model_dump(mode="json") for s in failed]))
    elif not failed:
        echo("no failed jobs")
    else:
        for s in failed:
            cause = f"{s.error.type}: {s.error.message}" if s.error else "?"
            echo(f"{s.job_id}\t{s.finished_at}\tagent {s.agent_id}\t{cause}")
    return EXIT_OK


async def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    from worker.client import PlanClient

    async with PlanClient.connect(settings) as client:
        alive = await client.healthy_workers(settings.liveness_window_s)
    if alive:
        echo(f"ok: {alive} worker(s) of queue {settings.queue_name} taking jobs")
        return EXIT_OK
    sys.stderr.write(
        f"plangate: no worker of queue {settings.queue_name} takes jobs"
        " (none beat recently, or all are draining)\n"
    )
    return EXIT_TIMEOUT


# --- the parser -----------------------------------------------------------------------------


def _add_json(p: argparse.ArgumentParser, prints: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {prints} as JSON, for scripts")


def _add_api(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api",
        metavar="URL",
        default=None,
        help="talk to `plangate serve` at URL over HTTP instead of Redis (default PLANGATE_API_URL)",
    )
    p.add_argument(
        "--token",
        default=None,
        help="the API token with --api (default PLANGATE_TOKEN; an agent's token is its key)",
    )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `plangate` parser: every command's arguments, or only those of command `only` (see Commands)."""
    parser = argparse.ArgumentParser(
        prog="plangate",
        description=(
            "A governed planning queue. Agents submit planning jobs; workers check them against "
            "governance, stream an LLM call for a plan, check the plan, and record the outcome in "
            "Redis (poll it by job id) and in an append-only SQLite ledger. Configuration comes from "
            "PLANGATE_* environment variables (see README). Try `plangate demo` first."
        ),
        epilog=EXIT_CODES_TEXT,
    )
    parser.add_argument("--version", action=_Version)
    sub = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), only)

    p = sub.add_parser("submit", help="submit a planning job", description="Submit a planning job.")
    p.add_argument(
        "--agent", default=None, help=f"agent id (default {SEED_AGENT_ID}; with --api: the token's agent)"
    )
    p.add_argument("--task-type", default="plan", help="plan, analyze or review (default plan)")
    p.add_argument("--description", required=True, help="what to plan (at most 8,000 characters)")
    p.add_argument("--constraint", action="append", default=[], help="a constraint (repeatable, at most 50)")
    p.add_argument(
        "--side-effect", action="append", default=[], help="a side effect the plan may need (repeatable)"
    )
    p.add_argument("--context", help="read-only context as a JSON object, or @FILE (at most 64 KiB)")
    p.add_argument("--tenant", help="tenant id (default: the agent's own tenant)")
    p.add_argument("--project", help="the tenant's project this plan is for")
    p.add_argument(
        "--callback-url", help="POST the job's events here, signed (its host on the tenant's allow list)"
    )
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
        type=seconds,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for held locks (default 0)",
    )
    p.add_argument("--handoff-from", metavar="JOB_ID", help="carry that finished job's plan in as context")
    p.add_argument(
        "--priority", choices=["high", "normal", "low"], help="within its tenant: higher goes first (aging)"
    )
    p.add_argument(
        "--delay", dest="delay_s", type=seconds, metavar="S", help="start no earlier than S s from now"
    )
    p.add_argument("--not-before", metavar="TIME", help="start no earlier than TIME (ISO 8601)")
    p.add_argument(
        "--deadline", metavar="TIME", help="end failed (deadline_exceeded) if not started by TIME (ISO 8601)"
    )
    p.add_argument("--wait", action="store_true", help="wait for the terminal state and print it")
    p.add_argument("--timeout", type=seconds, default=300.0, help="seconds to wait with --wait (default 300)")
    _add_json(p, "the job's status object (with --wait: its final one)")
    _add_api(p)
    p.set_defaults(run=cmd_submit)

    JSON_PRINTS = {
        "status": "the job's status object",
        "wait": "the job's final status object",
        "watch": "each event of the job, one JSON object per line",
        "cancel": "the job's status object after the cancel",
    }
    for name, fn, text in (
        ("status", cmd_status, "print a job's status"),
        ("wait", cmd_wait, "wait for a job to finish and print its status"),
        ("watch", cmd_watch, "follow a job's phases and token count live"),
        ("cancel", cmd_cancel, "cancel a job (queued: at once; running: at its next heartbeat)"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id", help="the job's id (as submit printed it)")
        if name == "wait":
            p.add_argument(
                "--timeout", type=seconds, default=300.0, help="seconds to wait (default 300; 0: only look)"
            )
        _add_json(p, JSON_PRINTS[name])
        _add_api(p)
        p.set_defaults(run=fn)

    p = sub.add_parser("worker", help="run a worker", description="Run an arq worker for the planning queue.")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default PLANGATE_CONCURRENCY, 10)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--no-ledger-writer",
        action="store_true",
        help="do not drain the ledger stream here (run it elsewhere)",
    )
    p.set_defaults(run=cmd_worker, sync=True, logs="service")

    p = sub.add_parser(
        "demo",
        help="run everything embedded and plan one job",
        description="Run one planning job with everything in this process: an in-process Redis stand-in, "
        "the scripted LLM endpoint on loopback, a worker and the ledger writer. Needs no server and no key.",
    )
    p.add_argument(
        "--description",
        default="Roll out a new version of the web service to the staging cluster",
        help="what to plan (default: a staging rollout)",
    )
    p.add_argument(
        "--model", default="scripted-slow", help="scripted behaviour to use (default scripted-slow)"
    )
    p.add_argument(
        "--ledger",
        type=Path,
        help="ledger file, kept afterwards (default ./plangate-demo-ledger.db; never PLANGATE_LEDGER_PATH)",
    )
    p.set_defaults(run=cmd_demo, sync=True, logs="quiet")

    p = sub.add_parser(
        "llm-stub",
        help="run the scripted OpenAI-compatible endpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_stub_description(),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=8088, help="TCP port (default 8088; 0 picks a free one)"
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="refuse (401) requests that do not carry this key as a bearer token (default: take any)",
    )
    p.set_defaults(run=cmd_llm_stub, sync=True, logs="service")

    agents = sub.add_parser("agents", help="the agent registry").add_subparsers(
        dest="agents_cmd", required=True
    )
    p = agents.add_parser(
        "add",
        help="add or replace an agent (deny-by-default: see --allow, --forbid, --lift)",
        description="Add or replace an agent. Its plans may use only the capabilities it is allowed (by "
        "default the seed's read and plan ones); the seed's forbidden actions apply to every agent, whatever "
        "its tier, unless lifted for it with --lift. Every name must be in the vocabulary "
        "(`plangate vocabulary list`). The change is recorded in the ledger.",
    )
    p.add_argument("agent_id", help="the agent's id (letters, digits and _.@-; no ':')")
    # The record's flags default to None: the record's own defaults apply, and --template can tell which
    # were given (a template sets them all).
    p.add_argument("--role", help="the agent's role (default observer)")
    p.add_argument("--tier", type=int, help="governance tier 0-4 (default 0, the observer)")
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NAME",
        help="a capability its plans may use (repeatable or comma-separated); replaces the default "
        f"{', '.join(SEED_ALLOWED_SIDE_EFFECTS)}",
    )
    p.add_argument(
        "--forbid",
        action="append",
        default=[],
        metavar="NAME",
        help="a forbidden action on top of the seed's (repeatable or comma-separated)",
    )
    p.add_argument(
        "--lift",
        action="append",
        default=[],
        metavar="NAME",
        help="lift one of the seed's forbidden actions for this agent (repeatable; shown by `agents show`)",
    )
    p.add_argument("--confidence-threshold", type=float, help="below it a plan escalates (default 0.7)")
    p.add_argument(
        "--task-type", action="append", default=[], help="a task type a tier>=1 agent may plan (repeatable)"
    )
    p.add_argument(
        "--error-budget",
        type=int,
        help="failed jobs of its own doing (invalid_output) that suspend the agent (default 5)",
    )
    p.add_argument("--error-window", type=int, help="seconds the failures are counted over (default 3600)")
    p.add_argument("--tenant", default="default", help="the tenant the agent belongs to (default 'default')")
    p.add_argument("--issue-key", action="store_true", help="issue an agent key that its jobs must carry")
    p.add_argument(
        "--keyless",
        action="store_true",
        help="let jobs claim this agent without a key while none is issued (not recommended)",
    )
    p.add_argument("--by", help="who (recorded in the ledger; default: the current user)")
    add_agent_template_arguments(p)
    _add_json(p, "the saved agent record (and agent_key with --issue-key)")
    p.set_defaults(run=cmd_agents_add)
    p = agents.add_parser("list", help="list agents")
    _add_json(p, "every agent record, as a list")
    p.set_defaults(run=cmd_agents_list)
    p = agents.add_parser(
        "show", help="show one agent, its live state and the tracker (phase, job, heartbeat)"
    )
    p.add_argument("agent_id", help="the agent's id (letters, digits and _.@-; no ':')")
    _add_json(p, "the agent's record, whether a key is issued, and its live state")
    p.set_defaults(run=cmd_agents_show)
    for name, text in (
        ("revoke", "the kill switch: refuse the agent's queued jobs and stop its running ones"),
        ("restore", "lift a revocation"),
        ("reset-budget", "forget the agent's counted failures and lift its suspension"),
    ):
        p = agents.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("agent_id", help="the agent's id (letters, digits and _.@-; no ':')")
        p.add_argument("--reason", required=name == "revoke", help="why (recorded in the ledger)")
        # Resolved when the command runs: the user lookup reads /etc/passwd, and `--help` need not.
        p.add_argument("--by", help="who (default: the current user)")
        p.set_defaults(run=cmd_agents_admin)

    add_agent_upgrade_command(agents)
    p = agents.add_parser("issue-key", help="issue (or replace) an agent's key; printed once, stored hashed")
    p.add_argument("agent_id", help="the agent's id (letters, digits and _.@-; no ':')")
    p.add_argument("--by", help="who (recorded in the ledger; default: the current user)")
    p.set_defaults(run=cmd_agents_issue_key)

    vocabulary = sub.add_parser(
        "vocabulary", help="the capability words agents and plans may name"
    ).add_subparsers(dest="vocabulary_cmd", required=True)
    p = vocabulary.add_parser(
        "list", help="every known capability word: the seed's and those operators added"
    )
    _add_json(p, "every word (word, builtin, and by/at/reason for added ones), as a list")
    p.set_defaults(run=cmd_vocabulary)
    p = vocabulary.add_parser(
        "add",
        help="add capability words (lower snake case) so agents may be allowed or forbidden them",
        description="Add capability words to the vocabulary. A plan naming a word outside it always "
        "escalates; agents add --allow/--forbid refuse words outside it. Recorded in the ledger.",
    )
    p.add_argument("word", nargs="+", help="the words (e.g. read_metrics)")
    p.add_argument("--reason", required=True, help="why (recorded in the ledger)")
    p.add_argument("--by", help="who (default: the current user)")
    p.set_defaults(run=cmd_vocabulary)

    reviewers = sub.add_parser(
        "reviewers", help="the humans who review a tenant's escalated plans"
    ).add_subparsers(dest="reviewers_cmd", required=True)
    p = reviewers.add_parser("add", help="add (or replace) a reviewer and issue its key, printed once")
    p.add_argument("reviewer_id", help="the reviewer's id (what `review --by` names)")
    p.add_argument(
        "--tenant", default="default", help="the tenant whose plans it reviews (default 'default')"
    )
    p.add_argument("--name", default="", help="the reviewer's full name (shown with its decisions)")
    p.add_argument("--by", help="who (recorded in the ledger; default: the current user)")
    _add_json(p, "the reviewer record and its reviewer_key")
    p.set_defaults(run=cmd_reviewers)
    p = reviewers.add_parser("list", help="list reviewers")
    _add_json(p, "every reviewer record, as a list")
    p.set_defaults(run=cmd_reviewers)

    locks = sub.add_parser("locks", help="resource locks").add_subparsers(dest="locks_cmd", required=True)
    p = locks.add_parser("list", help="who holds which resource lock")
    _add_json(p, "each held lock (resource, job_id, ttl_ms), as a list")
    p.set_defaults(run=cmd_locks_list)

    review = sub.add_parser(
        "review",
        help="human review of escalated plans (as an authenticated reviewer)",
        description="Human review of escalated plans. Every command acts as the reviewer named by --by, "
        "authenticated by its key in PLANGATE_REVIEWER_KEY (`plangate reviewers add`), and sees only "
        "that reviewer's tenant's jobs.",
    ).add_subparsers(dest="review_cmd", required=True)
    p = review.add_parser("list", help="plans that ended ESCALATE and wait for a human")
    p.add_argument("--by", required=True, metavar="REVIEWER_ID", help="your reviewer id")
    _add_json(p, "the status objects of the jobs waiting for review, as a list")
    p.set_defaults(run=cmd_review)
    for name in ("approve", "reject"):
        p = review.add_parser(name, help=f"{name} an escalated plan (once per job; recorded in the ledger)")
        p.add_argument("job_id", help="the escalated job's id")
        p.add_argument("--by", required=True, metavar="REVIEWER_ID", help="your reviewer id")
        p.add_argument("--note", default="", help="why")
        _add_json(p, "the job's status object, with its review")
        p.set_defaults(run=cmd_review)

    failed = sub.add_parser("failed", help="the dead-letter view of failed jobs").add_subparsers(
        dest="failed_cmd", required=True
    )
    p = failed.add_parser("list", help="jobs that ended failed (tries exhausted, timeouts, LLM errors)")
    p.add_argument("--limit", type=int, default=100, help="at most this many, newest first (default 100)")
    _add_json(p, "the status objects of the failed jobs, newest first, as a list")
    p.set_defaults(run=cmd_failed)
    p = failed.add_parser("retry", help="submit a failed job's request again as a new job")
    p.add_argument("job_id", help="the failed job's id")
    _add_json(p, "the new job's status object")
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
    add_webhook_commands(sub)
    add_template_commands(sub)
    add_queue_commands(sub)
    add_stats_commands(sub)
    add_web_commands(sub)
    add_serve_commands(sub)
    add_doctor_commands(sub)
    add_mcp_commands(sub)
    return parser


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _stub_description() -> str:
    from worker.llm_stub.behaviours import BEHAVIOURS

    lines = [
        "Run the scripted OpenAI-compatible endpoint (/v1/chat/completions, /v1/models) for offline use.",
        "Point workers at it with PLANGATE_LLM_BASE_URL=http://HOST:PORT/v1.",
        "The model name picks a behaviour:",
        "",
    ]
    lines += [f"  {name:<26} {text}" for name, text in BEHAVIOURS.items()]
    return "\n".join(lines)


def _command_in(argv: list[str] | None) -> str:
    """The command `argv` names (its first word), or "" when it starts with an option such as --help."""
    words = sys.argv[1:] if argv is None else argv
    return words[0] if words and not words[0].startswith("-") else ""


def _not_utf8(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """Which argument, if any, is not UTF-8 text. Python hands such bytes over as lone surrogates,
    which no JSON encoder or Redis client accepts: refuse them here, naming the argument."""
    for dest, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                try:
                    shown = repr(item.encode("utf-8", "surrogateescape")[:60])
                except UnicodeEncodeError:  # a surrogate that did not come from undecodable bytes
                    shown = ascii(item[:60])
                return f"argument {_arg_names(parser).get(dest, dest)} is not valid UTF-8: {shown}"
    return None


def _arg_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each argument's dest and how a user writes it (its long option, or its name), in every subcommand."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                names.update({k: v for k, v in _arg_names(subparser).items() if k not in names})
        elif action.option_strings:
            names.setdefault(action.dest, max(action.option_strings, key=len))
        else:
            names.setdefault(action.dest, str(action.metavar or action.dest))
    return names


def _quiet_on_closed_pipe() -> int:
    """The reader went away (`plangate ledger export | head`): stop quietly, like any Unix filter.
    Python's documented way: point stdout at devnull so the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


class _Version(argparse.Action):
    """`plangate --version`: the installed package's version (looked up only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print plangate's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("plangate")
        except PackageNotFoundError:
            text = "unknown (not installed)"
        sys.stdout.write(f"plangate {text}\n")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plangate` console script."""
    parser = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # `plangate --help | head`
        return _quiet_on_closed_pipe()
    problem = _not_utf8(args, parser)
    if problem:
        sys.stderr.write(f"plangate: {problem}\n")
        return EXIT_BAD_INPUT
    if getattr(args, "by", "") is None:  # an operator's `--by`, not given: the current user
        args.by = _operator()
    api_url = getattr(args, "api", None) or (os.environ.get("PLANGATE_API_URL") if "api" in args else None)
    if api_url:  # the HTTP API instead of Redis: no Settings, no redis-py (worker/cli/over_http.py)
        from worker.cli.over_http import run_over_http

        return run_over_http(args, api_url, args.token or os.environ.get("PLANGATE_TOKEN"))
    # Imported once the command is known: `--help` and usage errors exit above without them.
    import asyncio

    from pydantic import ValidationError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from governance.registry import RegistryError
    from worker.log_setup import configure_logging
    from worker.redis_conn import redacted, refusal, unreachable
    from worker.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PLANGATE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.stderr.write(f"plangate: invalid configuration: {problems}\n")
        return EXIT_BAD_INPUT
    # Logging is configured here, once per process. Services (`logs="service"`) log at LOG_LEVEL, INFO
    # by default; the demo's own output is the point, so its worker logs only when something goes
    # wrong (`logs="quiet"`); one-shot commands keep stderr for errors unless LOG_LEVEL asks.
    logs = getattr(args, "logs", None)
    explicit = "log_level" in settings.model_fields_set
    configure_logging(
        settings.log_level if logs == "service" or (explicit and logs != "quiet") else "WARNING"
    )
    run: Callable[..., Any] = args.run
    try:
        if getattr(args, "sync", False):
            code = int(run(args, settings))
        else:
            coro: Awaitable[int] = run(args, settings)
            code = asyncio.run(coro)  # type: ignore[arg-type]
        sys.stdout.flush()  # (a closed pipe shows here, not in the interpreter's flush at exit)
        return code
    except BrokenPipeError:
        return _quiet_on_closed_pipe()
    except (BadRequest, JobNotFound, CLIError, RegistryError, Unauthenticated) as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_BAD_INPUT
    except QueueUnavailable as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_UNAVAILABLE
    except (RedisConnectionError, RedisTimeoutError) as exc:
        sys.stderr.write(f"plangate: {unreachable(settings.redis_url, exc)}\n")
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
