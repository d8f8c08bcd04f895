"""`plangate ledger ...`: the audit ledger's commands (show, tail, search, export, verify, anchors,
checkpoint, prove, prove-consistency, verify-bundle, migrate, compact, serve). Ledger errors become
one-line messages with exit code 2; a failed verify (or bundle) exits 1."""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import LedgerError
from plangate_base import codec
from plangate_base.vocabulary import EventKind
from worker.cli.render import echo, render_output
from worker.errors import BadRequest, JobNotFound
from worker.keys import Keys

if TYPE_CHECKING:  # `plangate --help` registers these commands without the ledger's or Redis's code
    from ledger import queries
    from worker.ledger_verification import Published
    from worker.settings import Settings

EXIT_OK, EXIT_BAD_LEDGER = 0, 1
_FOLLOW_POLL_S = 0.5

_KIND_HELP = "only this kind of event: " + ", ".join(EventKind)


def ledger_path(args: argparse.Namespace, settings: Settings) -> Path:
    """The ledger file: --ledger, else PLANGATE_LEDGER_PATH."""
    return Path(args.ledger or settings.ledger_path)


def signing_key_path(settings: Settings, ledger: Path) -> Path:
    """The signing key: PLANGATE_LEDGER_SIGNING_KEY, else this ledger's key in PLANGATE_LEDGER_KEY_DIR."""
    return settings.model_copy(update={"ledger_path": ledger}).signing_key_path()


def _trusted_key(args: argparse.Namespace, settings: Settings) -> tuple[Any, str | None]:
    """The public key verify trusts (and its name, for a verifier key): --public-key, else
    PLANGATE_LEDGER_TRUSTED_KEY, else, only with --trust-local-key (warned), the .pub beside the signing
    key on this machine. None of them: a one-line error."""
    from ledger.signing import load_public_key, load_trusted_key, public_key_path

    chosen = getattr(args, "public_key", None) or settings.ledger_trusted_key
    if chosen:
        return load_trusted_key(chosen)
    if getattr(args, "trust_local_key", False):
        local = public_key_path(signing_key_path(settings, ledger_path(args, settings)))
        sys.stderr.write(
            f"plangate: WARNING: trusting the public key found on this machine ({local}): whoever could "
            "change the ledger may have changed it too; an auditor passes their own copy (--public-key)\n"
        )
        return load_public_key(local), None
    raise BadRequest(
        "no trusted public key: pass --public-key KEY (PEM or verifier key), or set "
        "PLANGATE_LEDGER_TRUSTED_KEY; --trust-local-key trusts the one on this machine"
    )


def ledger_errors(run: Callable[..., Awaitable[int]]) -> Callable[..., Awaitable[int]]:
    """Turn the ledger's typed errors into the CLI's bad-input error (one line, exit code 2)."""

    @functools.wraps(run)
    async def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return await run(args, settings)
        except LedgerError as exc:
            raise BadRequest(str(exc)) from exc

    return wrapped


def _filter(args: argparse.Namespace) -> queries.EventFilter:
    from ledger import queries

    return queries.EventFilter(
        agent_id=args.agent,
        tenant_id=args.tenant,
        decision=args.decision,
        kind=getattr(args, "kind", None),
        since=args.since,
        until=args.until,
    )


def _line(event: dict[str, Any]) -> str:
    what = event.get("decision") or event.get("reason") or ""
    who = event.get("reviewer") or event.get("agent_id") or ""
    return (
        f"{event['seq']:>7}  {event['created_at']}  {event['kind']:<15} {event.get('job_id') or '-':<32} "
        f"{who:<20} {what}"
    )


@ledger_errors
async def cmd_ledger_show(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger import queries

    path = ledger_path(args, settings)
    if not await asyncio.to_thread(path.exists):
        raise BadRequest(f"no ledger at {path} (set PLANGATE_LEDGER_PATH or --ledger)")
    record = await queries.show_job(path, args.job_id)
    if not record["events"]:
        raise JobNotFound(args.job_id)
    if args.json:
        echo(codec.dumps(record))
    else:
        # (from the chained events rows, which verify checks; search reads the jobs table and its index)
        echo(f"job {args.job_id}: {len(record['events'])} ledger events (the chained events rows)")
        for event in record["events"]:
            what = event.get("decision") or event.get("reason") or ""
            echo(f"  {event['created_at']}  {event['kind']:<10} {what}  attempt {event.get('attempt', 0)}")
            output = (event.get("payload") or {}).get("output")
            if output:
                render_output(output, sys.stdout)
    return EXIT_OK


@ledger_errors
async def cmd_ledger_tail(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger import queries

    path, flt = ledger_path(args, settings), _filter(args)
    async with queries.read_only(path) as conn:
        events = await queries.tail(conn, flt, args.n)
        last = events[-1]["seq"] if events else 0
        for event in events:
            echo(codec.dumps(event) if args.json else _line(event))
        while args.follow:
            await asyncio.sleep(_FOLLOW_POLL_S)  # a new commit is only visible by reading again
            for event in await queries.fetch_events(conn, flt, after_seq=last):
                echo(codec.dumps(event) if args.json else _line(event))
                last = event["seq"]
    return EXIT_OK


@ledger_errors
async def cmd_ledger_search(args: argparse.Namespace, settings: Settings) -> int:
    from ledger import queries

    text = " ".join(args.text)
    found = await queries.search(ledger_path(args, settings), text, _filter(args), args.limit)
    for job in found:
        if args.json:
            echo(codec.dumps(job))
        else:
            echo(f"{job['job_id']}  {job['state']:<9} {job['decision'] or '':<10} {job['snippet']}")
    if not found and not args.json:  # (--json prints no line: an empty JSON-lines list)
        sys.stderr.write(f"plangate: no jobs match {text!r}\n")
    return EXIT_OK


@ledger_errors
async def cmd_ledger_export(args: argparse.Namespace, settings: Settings) -> int:
    """The events as JSON lines or CloudEvents, up to the latest signed checkpoint, which is written beside
    the export (OUTPUT.checkpoint, or --checkpoint-out) so that every exported row can be proven."""
    import asyncio

    from ledger import export_format, queries
    from ledger.proofs import covered_by_latest

    path = ledger_path(args, settings)
    note, through_seq = await asyncio.to_thread(covered_by_latest, path)
    checkpoint_out = args.checkpoint_out or (f"{args.output}.checkpoint" if args.output else None)
    source = f"plangate/{path.name}"
    out = await asyncio.to_thread(open, args.output, "w", encoding="utf-8") if args.output else sys.stdout
    count = 0
    # aclosing: when writing fails (a closed pipe) the reader's connection closes here, in this loop.
    events = contextlib.aclosing(queries.export_events(path, _filter(args), through_seq=through_seq))
    try:
        async with events as rows:
            async for event in rows:
                line = export_format.cloud_event(event, source) if args.format == "cloudevents" else event
                out.write(codec.dumps(line) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if note is not None and checkpoint_out:
        await asyncio.to_thread(Path(checkpoint_out).write_text, note, encoding="utf-8")
    if args.output:
        covered = (
            f"; every row is under the signed checkpoint in {checkpoint_out}"
            if note is not None and checkpoint_out
            else "; no signed checkpoint covers it yet"
            if note is None
            else ""
        )
        sys.stderr.write(f"plangate: exported {count} events to {args.output}{covered}\n")
    return EXIT_OK


async def _redis_published(settings: Settings) -> Published | None:
    """What the writer published to Redis; None when Redis does not answer."""
    from redis.exceptions import RedisError

    from worker.ledger_verification import fetch_published
    from worker.redis_conn import text_client

    try:
        async with text_client(settings.redis_url) as redis:
            return await fetch_published(redis, Keys(settings.key_prefix))
    except (RedisError, OSError) as exc:  # a wrong URL too (RedisSetupError)
        sys.stderr.write(f"plangate: nothing from Redis ({exc}); checking the file and the sink\n")
        return None


@ledger_errors
async def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger import anchors as ledger_anchors
    from worker.ledger_verification import gather_evidence, live_grace_s, verify_live

    path = Path(args.file) if args.file else ledger_path(args, settings)
    key, key_name = await asyncio.to_thread(_trusted_key, args, settings)
    extra = await asyncio.to_thread(ledger_anchors.load_anchors, args.anchors) if args.anchors else []
    live = not args.file  # a copy of the file (--file) is checked on its own evidence only
    published = await _redis_published(settings) if live and not args.no_redis else None
    evidence = await gather_evidence(
        settings, published, anchors=extra, note_files=args.checkpoint or [], with_sink=live
    )
    report = await verify_live(
        path, key, evidence, key_name=key_name, grace_s=live_grace_s(settings) if live else None
    )
    if args.json:
        echo(codec.dumps(report.__dict__))
    else:
        anchor = report.latest_anchor
        if anchor:
            echo(
                f"anchor: row {anchor['head_seq']} ({anchor['row_count']} rows) {anchor['head_hash']} "
                f"at {anchor['created_at']} key {anchor['key_id']}"
            )
        if report.signed_size:
            echo(
                f"checkpoint: {report.signed_size} rows signed; "
                f"tree of {report.tree_size} rows {report.tree_root}"
            )
        for warning in report.warnings:
            echo(f"warning: {warning}")
        if report.ok:
            echo(f"ok: {report.rows} rows, head row {report.head_seq} {report.head_hash}")
        else:
            where = f" at row {report.bad_seq}" if report.bad_seq is not None else ""
            echo(f"BAD: {report.problem}{where}: {report.detail}")
    return EXIT_OK if report.ok else EXIT_BAD_LEDGER


@ledger_errors
async def cmd_ledger_anchors(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger import anchors as ledger_anchors
    from ledger import queries

    kept = await queries.list_anchors(ledger_path(args, settings))
    if args.export:
        count = await asyncio.to_thread(ledger_anchors.export_anchors, kept, args.export)
        echo(f"exported {count} anchors to {args.export}")
        return EXIT_OK
    for anchor in kept:
        if args.json:
            echo(codec.dumps(anchor))
        else:
            seq, head, key = anchor["head_seq"], anchor["head_hash"], anchor["key_id"]
            echo(f"{anchor['created_at']}  row {seq:>7}  {head}  {key}")
    return EXIT_OK


@ledger_errors
async def cmd_ledger_migrate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger.migrations import LATEST, migrate_file

    done = await asyncio.to_thread(migrate_file, ledger_path(args, settings), args.to)
    applied = ", ".join(map(str, done)) or "none (up to date)"
    echo(f"migrations applied: {applied}; schema version {args.to or LATEST}")
    return EXIT_OK


@ledger_errors
async def cmd_ledger_compact(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger.compaction import compact
    from ledger.signing import load_private_key

    path = ledger_path(args, settings)
    archive = Path(args.archive) if args.archive else path.with_name(f"{path.stem}-archive-{args.before}.db")
    key = await asyncio.to_thread(load_private_key, signing_key_path(settings, path))
    result = await asyncio.to_thread(compact, path, args.before, archive, key)
    echo(
        f"archived {result.archived_rows} rows (through row {result.through_seq}) to {result.archive} "
        f"sha256 {result.archive_sha256}"
    )
    return EXIT_OK


@ledger_errors
async def cmd_ledger_serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from worker.heap import freeze_startup_objects
    from worker.redis_conn import text_client, wait_for_redis
    from worker.worker_app import start_ledger_writer, stop_ledger_writer

    freeze_startup_objects()
    if args.ledger:
        settings = settings.model_copy(update={"ledger_path": Path(args.ledger)})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A wrong setting: one line and exit code 3, not endless retries; a Redis not up yet is waited for
    # up to REDIS_START_WAIT_S, then the same.
    if not await wait_for_redis(settings.redis_url, stop, settings.redis_start_wait_s):
        return EXIT_OK
    redis = text_client(settings.redis_url, service=True)
    try:
        writer, task = await start_ledger_writer(redis, settings, lock_ttl_s=args.lock_ttl)
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, writer.stop)
            if stop.is_set():  # a signal while the ledger file was opened
                writer.stop()
            await asyncio.wait({task})  # ends after SIGTERM/SIGINT (writer.stop)
        finally:
            await stop_ledger_writer(writer, task)  # closes the ledger file whatever happened
    finally:
        await redis.aclose()
    return EXIT_OK


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", help="only this agent's events")
    p.add_argument("--tenant", help="only this tenant's events")
    p.add_argument("--decision", help="only this decision (EXECUTE, ESCALATE, ...)")
    p.add_argument("--since", help="from this UTC time on (ISO-8601)")
    p.add_argument("--until", help="before this UTC time (ISO-8601)")


def add_ledger_commands(sub: Any) -> None:
    """Register `plangate ledger ...` on the top-level subparsers."""
    from worker.cli.ledger_proofs import add_proof_commands
    from worker.cli.ledger_upkeep import add_upkeep_commands

    ledger = sub.add_parser("ledger", help="the audit ledger").add_subparsers(
        dest="ledger_cmd", required=True
    )

    def command(name: str, run: Callable[..., Any], text: str) -> argparse.ArgumentParser:
        p = ledger.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--ledger", help="ledger file (default PLANGATE_LEDGER_PATH)")
        p.set_defaults(run=run)
        return p

    p = command("show", cmd_ledger_show, "a job's ledger events")
    p.add_argument("job_id", help="the job's id")
    p.add_argument("--json", action="store_true", help='print {"job_id": ..., "events": [...]} as JSON')

    p = command("tail", cmd_ledger_tail, "the latest events (and, with --follow, new ones as they commit)")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--kind", help=_KIND_HELP)
    p.add_argument("--json", action="store_true", help="print each event as one JSON object per line")
    _add_filters(p)

    p = command("search", cmd_ledger_search, "find jobs by words of their description, plan or notes")
    p.add_argument("text", nargs="+", help="words to find (SQLite FTS5 syntax)")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs, best first (default 50)")
    p.add_argument("--json", action="store_true", help="print each matching job as one JSON object per line")
    _add_filters(p)

    p = command("export", cmd_ledger_export, "export events (up to the latest signed checkpoint)")
    p.add_argument("--kind", help=_KIND_HELP)
    p.add_argument("--output", "-o", help="write to this file (default stdout)")
    p.add_argument(
        "--format",
        choices=("jsonl", "cloudevents"),
        default="jsonl",
        help="rows, or CloudEvents 1.0 (JSON lines)",
    )
    p.add_argument(
        "--checkpoint-out",
        metavar="FILE",
        help="write the covering checkpoint here (default OUTPUT.checkpoint)",
    )
    _add_filters(p)

    p = command(
        "verify",
        cmd_ledger_verify,
        "check the hash chain, the Merkle tree and the signed heads; exit 1 if broken",
    )
    p.add_argument("file", nargs="?", help="a ledger or archive file (default the ledger)")
    p.add_argument(
        "--public-key",
        help="the trusted Ed25519 public key: PEM or verifier key (default LEDGER_TRUSTED_KEY)",
    )
    p.add_argument(
        "--trust-local-key",
        action="store_true",
        help="trust the .pub beside the signing key on this machine (warned: swappable with the file)",
    )
    p.add_argument("--anchors", help="anchors exported earlier (JSON lines) to check against")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a checkpoint note kept elsewhere (repeatable; LEDGER_CHECKPOINT_SINK is read too)",
    )
    p.add_argument("--no-redis", action="store_true", help="do not fetch what the writer published to Redis")
    p.add_argument("--json", action="store_true", help="print the verification report as JSON, for scripts")

    add_proof_commands(command)
    add_upkeep_commands(command)

    p = command("anchors", cmd_ledger_anchors, "list the signed anchors of the chain head")
    p.add_argument("--export", metavar="FILE", help="write them as JSON lines to FILE (keep it elsewhere)")
    p.add_argument("--json", action="store_true", help="print the anchors as a JSON list, for scripts")

    p = command("migrate", cmd_ledger_migrate, "apply the schema migrations (the writer does it at start)")
    p.add_argument("--to", type=int, help="stop at this version (default the latest)")

    p = command("compact", cmd_ledger_compact, "move old rows into a sealed archive behind a checkpoint")
    p.add_argument("--before", required=True, help="archive rows recorded before this UTC time")
    p.add_argument("--archive", help="the archive file to create")

    p = command("serve", cmd_ledger_serve, "run the ledger writer as its own process (standby if one runs)")
    p.set_defaults(logs="service")  # logs at LOG_LEVEL (configured once, in main)
    p.add_argument("--lock-ttl", type=float, default=5.0, help="seconds a dead writer blocks a standby")
