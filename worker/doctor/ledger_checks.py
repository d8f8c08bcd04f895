"""`plangate doctor`'s ledger checks: the file, its migrations, its chain, the signing key, the backlog."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from redis.asyncio import Redis

from ledger import migrations, signing
from ledger.verify import open_read_only
from plangate_base.checks import CheckResult, fail, ok, warn
from worker import ledger_verification as lv
from worker.keys import Keys
from worker.settings import Settings

MAX_BACKLOG = 100_000  # events waiting in the ledger stream (the same bound /readyz uses)


def ledger_file(settings: Settings) -> CheckResult:
    """The file exists (or its directory would take it), and this process may write there."""
    name = "ledger.file"
    path = settings.ledger_path
    if path.is_file():
        if not os.access(path, os.W_OK):
            return fail(name, f"{path} is not writable here", "give the writer's user write access to it")
        return ok(name, f"{path} ({path.stat().st_size} bytes)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return fail(
            name, f"{path} does not exist and {parent} is not a writable directory", "fix LEDGER_PATH"
        )
    return warn(
        name, f"{path} does not exist yet", "start a worker or `plangate ledger serve`: it creates it"
    )


def ledger_schema(settings: Settings) -> CheckResult:
    """Every migration this version knows is applied."""
    name = "ledger.migrations"
    if not settings.ledger_path.is_file():
        return warn(name, "no ledger file yet", "it is created, and migrated, when the writer starts")
    conn = open_read_only(settings.ledger_path)
    try:
        current = migrations.current_version(conn)
    finally:
        conn.close()
    latest = max((m.version for m in migrations.available()), default=0)
    if current < latest:
        return fail(
            name, f"at version {current}, this plangate expects {latest}", "`plangate ledger migrate`"
        )
    return ok(name, f"at version {current}")


async def chain(settings: Settings, redis: Redis | None, keys: Keys) -> CheckResult:
    """The hash chain, its anchors and checkpoints verify against the operator's trusted key (the same
    walk as `plangate ledger verify`: with what the writer published in Redis and the sink's note)."""
    name = "ledger.chain"
    if not settings.ledger_path.is_file():
        return warn(name, "no ledger file yet", "nothing to verify until the writer has written")
    key, key_name = (None, None)
    if settings.ledger_trusted_key is not None:
        key, key_name = await asyncio.to_thread(signing.load_trusted_key, settings.ledger_trusted_key)
    published = await lv.fetch_published(redis, keys) if redis is not None else None
    evidence = await lv.gather_evidence(settings, published)
    report = await lv.verify_live(
        settings.ledger_path, key, evidence, key_name=key_name, grace_s=lv.live_grace_s(settings)
    )
    if not report.ok:
        return fail(
            name,
            f"{report.problem} at row {report.bad_seq}: {report.detail}",
            f"`plangate ledger verify --ledger {settings.ledger_path}` for the full report",
        )
    if key is None:
        return warn(
            name,
            f"{report.rows} rows chain up, but no trusted key is configured to check their signatures",
            "set PLANGATE_LEDGER_TRUSTED_KEY to the operator's copy of the public key (docs/operations.md)",
        )
    return ok(name, f"{report.rows} rows, {report.anchors_checked} anchors verify against the trusted key")


def signing_key(settings: Settings) -> CheckResult:
    """A signing key exists, and not in the ledger file's own directory (whoever can rewrite the file
    could then re-sign it)."""
    name = "ledger.signing_key"
    key = settings.signing_key_path()
    fix = "keep the key elsewhere: PLANGATE_LEDGER_SIGNING_KEY=/path/on/another/volume (docs/operations.md)"
    if not key.is_file():
        return warn(name, f"no signing key at {key}", "it is created when the writer starts; " + fix)
    if key.resolve().parent == settings.ledger_path.resolve().parent:
        return warn(name, f"{key} sits beside the ledger file", fix)
    return ok(name, f"{key}, apart from the ledger file")


async def backlog(redis: Redis, keys: Keys) -> CheckResult:
    """Events waiting in Redis for the writer."""
    waiting = int(await redis.xlen(keys.ledger_stream()))
    why = f"{waiting} event(s) in the ledger stream"
    if waiting > MAX_BACKLOG:
        return fail("ledger.backlog", why, "is the writer running and keeping up? see `plangate stats`")
    return ok("ledger.backlog", why)
