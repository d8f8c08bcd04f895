"""`plangate demo`: one planning job with everything embedded in this process, and no key needed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sqlite3
import sys
import time
from pathlib import Path

from governance.models import SEED_AGENT_ID
from governance.templates import seed_agent
from ledger.errors import LedgerError
from ledger.migrations import migrate_file
from ledger.queries import show_job
from ledger.signing import default_key_path, load_or_create_key, public_key_path
from plangate_base.vocabulary import TERMINAL_EVENT_KINDS, JobState
from worker.admin import AgentAdmin
from worker.cli.render import render_event, render_output, render_status
from worker.client import PlanClient
from worker.demo.embedded_redis import EmbeddedRedis
from worker.errors import BadRequest
from worker.keys import Keys
from worker.llm_stub.behaviours import BEHAVIOURS
from worker.llm_stub.server import StubServer
from worker.settings import Settings
from worker.worker_app import build_worker, stop_worker

_LEDGER_DEADLINE_S = 10.0
DEMO_LEDGER = Path("plangate-demo-ledger.db")
"""The demo's ledger file unless --ledger names one: in the current directory, kept, appended to by later
runs (never PLANGATE_LEDGER_PATH, so a demo cannot write into a real ledger)."""


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def run_demo(args: argparse.Namespace) -> int:
    """Start the stand-in Redis, the scripted LLM, a worker and the ledger writer; plan one job."""
    out = sys.stdout
    embedded = EmbeddedRedis()
    ledger_path, earlier = await asyncio.to_thread(_ledger_file, args.ledger)
    await asyncio.to_thread(_open_ledger, ledger_path)
    async with StubServer(host="127.0.0.1", port=0) as stub:
        settings = Settings(
            redis_url="redis://embedded",  # not dialled: the embedded clients are passed in
            llm_base_url=stub.base_url,
            llm_api_key=None,
            model=args.model,
            allowed_models=list(BEHAVIOURS),
            ledger_path=ledger_path,
            # The key beside the demo's file, whatever PLANGATE_LEDGER_SIGNING_KEY names.
            ledger_signing_key=default_key_path(ledger_path),
            heartbeat_s=0.5,
            concurrency=4,
            metrics_port=0,
        )
        _say("plangate demo — running EMBEDDED: an in-process Redis stand-in (fakeredis), the scripted")
        _say(f"LLM endpoint at {stub.base_url} (model {settings.model}), one worker and the ledger writer.")
        kept = "kept after the demo; this run appends to the earlier runs' record" if earlier else "kept"
        _say(f"Ledger file: {ledger_path} ({kept})")
        _say()
        worker = build_worker(
            settings,
            handle_signals=False,
            redis_factory=lambda: (embedded.queue_pool(settings.queue_name), embedded.text_client()),
        )
        worker_task = asyncio.create_task(worker.async_run())
        client = PlanClient(embedded.text_client(), settings)
        try:
            # The demo opts out of agent keys for its one agent; a real deployment requires them.
            demo_agent = seed_agent().model_copy(update={"keyless": True})
            admin = AgentAdmin(embedded.text_client(), Keys(settings.key_prefix))
            await admin.save_agent(demo_agent, by="plangate demo", source="demo")
            _say(
                f"AGENT KEYS ARE OFF for the demo's agent {SEED_AGENT_ID} (keyless): a real deployment "
                "requires a key per agent."
            )
            job_id = await client.submit(
                {
                    "agent_id": SEED_AGENT_ID,
                    "task_type": "plan",
                    "description": args.description,
                    "constraints": ["No production access", "Use sandbox only"],
                    "side_effects": ["read_docs", "generate_plan"],
                }
            )
            _say(f"Submitted job {job_id} for agent {SEED_AGENT_ID}; its phases as they happen:")
            async for event in client.watch(job_id):
                render_event(event, out, live=out.isatty())
            status = await client.status(job_id)
            _say()
            _say("Status object (what `plangate status JOB_ID` shows):")
            render_status(status, out)
            _say()
            record = await _ledger_record(ledger_path, job_id)
            _say(f"Ledger record of job {job_id} ({len(record['events'])} events, from {ledger_path}):")
            for event in record["events"]:
                what = event.get("decision") or event.get("reason") or ""
                _say(f"  {event['created_at']}  {event['kind']:<10} {what}  event {event['event_id']}")
            terminal = record["events"][-1] if record["events"] else None
            if terminal and (terminal.get("payload") or {}).get("output"):
                render_output(terminal["payload"]["output"], out)
        finally:
            await stop_worker(worker)
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
            await client.aclose()
    _say()
    _follow_up(ledger_path, job_id)
    _say()
    _say("That ran embedded, in one process, with no Redis server and no API key.")
    _say("To run it for real:")
    _say("  export PLANGATE_REDIS_URL=redis://HOST:6379/0        # Redis 7 or DragonflyDB")
    _say("  export OPENROUTER_API_KEY=...          # or PLANGATE_LLM_API_KEY and PLANGATE_LLM_BASE_URL")
    _say("  export PLANGATE_MODEL=openai/gpt-4o-mini")
    _say("  plangate worker                                       # as many as you like, on any machine")
    _say(f"  export PLANGATE_AGENT_KEY=$(plangate agents issue-key {SEED_AGENT_ID})  # agents need keys")
    _say('  plangate submit --description "..." --wait')
    return 0 if status.state is JobState.DONE else 1


def _follow_up(ledger_path: Path, job_id: str) -> None:
    """The commands that read the kept ledger file afterwards, ready to copy."""
    ledger = shlex.quote(str(ledger_path))
    public_key = shlex.quote(str(public_key_path(default_key_path(ledger_path))))
    _say("The ledger file stays. Read this job's record again, and check the file's hash chain, with:")
    _say(f"  plangate ledger show {job_id} --ledger {ledger}")
    _say(f"  plangate ledger verify --ledger {ledger} --public-key {public_key} --no-redis")
    _say(
        "(--no-redis: the anchors the demo published went with its in-process Redis; the file keeps its own.)"
    )
    _say("A next `plangate demo` here appends to this file; delete it (and its .key files) to start afresh.")


def _open_ledger(path: Path) -> None:
    """Create (or migrate) the demo's ledger file and its signing key now, so a path it cannot use fails at
    once in one line, not inside the worker's start, where the demo would wait for a job that never runs."""
    try:
        migrate_file(path)
        load_or_create_key(default_key_path(path))
    except (OSError, sqlite3.Error, LedgerError) as exc:
        raise BadRequest(
            f"cannot keep the demo's ledger at {path}: {exc} (name another with --ledger)"
        ) from exc


def _ledger_file(named: Path | None) -> tuple[Path, bool]:
    """The demo's ledger file as an absolute path (so the printed commands work from anywhere), and whether
    an earlier run left it."""
    path = Path(named or DEMO_LEDGER).absolute()
    return path, path.exists()


async def _ledger_record(path: Path, job_id: str) -> dict:
    """The job's ledger record, once the writer has committed its terminal event."""
    deadline = time.monotonic() + _LEDGER_DEADLINE_S
    while True:
        record = await show_job(path, job_id)
        kinds = {e["kind"] for e in record["events"]}
        if kinds & TERMINAL_EVENT_KINDS or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.05)
