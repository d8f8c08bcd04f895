"""`plangate ledger checkpoint | prove | prove-consistency | verify-bundle`: signed tree heads and the proof
bundles an auditor checks with the public key alone (verify-bundle reads no ledger and no Redis)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plangate_base import codec
from worker.cli.ledger import EXIT_BAD_LEDGER, EXIT_OK, ledger_errors, ledger_path, signing_key_path
from worker.cli.render import echo
from worker.errors import BadRequest

if TYPE_CHECKING:
    from worker.settings import Settings


@ledger_errors
async def cmd_ledger_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger.proofs import latest_checkpoint
    from ledger.signed_note import verifier_key
    from ledger.verify import open_read_only

    path = ledger_path(args, settings)
    if args.verifier_key or args.sign:
        from ledger.anchors import default_origin
        from ledger.signing import load_private_key

        private = await asyncio.to_thread(load_private_key, signing_key_path(settings, path))
        origin = settings.ledger_origin or default_origin(private.public_key())
        if args.verifier_key:
            echo(verifier_key(origin, private.public_key()))
            return EXIT_OK
        await _sign_head(settings, path, private, origin)

    def read() -> str:
        conn = open_read_only(path)
        try:
            return latest_checkpoint(conn)
        finally:
            conn.close()

    note = await asyncio.to_thread(read)
    sys.stdout.write(note)
    return EXIT_OK


async def _sign_head(settings: Settings, path: Path, private: Any, origin: str) -> None:
    """`checkpoint --sign`: the operator attests the file's head (after `verify`), as the writer would."""
    from ledger.anchors import Anchorer, FileSink
    from ledger.sqlite_store import LedgerStore

    store = await LedgerStore.open(path)
    sink = settings.ledger_checkpoint_sink
    try:
        anchorer = Anchorer(store, private, origin=origin, sinks=[FileSink(sink)] if sink else [])
        await anchorer.maybe(force=True)
    finally:
        await store.close()
    if anchorer.sink_failures:
        sys.stderr.write(f"plangate: the checkpoint is signed and in the ledger, not in the sink {sink}\n")


@ledger_errors
async def cmd_ledger_prove(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger.anchors import read_sink
    from ledger.proofs import prove_job

    note = await asyncio.to_thread(read_sink, args.checkpoint) if args.checkpoint else None
    bundle = await asyncio.to_thread(prove_job, ledger_path(args, settings), args.job_id, note)
    await _write_bundle(bundle, args.output)
    if bundle["newer_rows"]:
        sys.stderr.write(
            f"plangate: {bundle['newer_rows']} rows of the job are newer than the checkpoint "
            "(not in the bundle)\n"
        )
    return EXIT_OK


@ledger_errors
async def cmd_ledger_prove_consistency(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledger.anchors import read_sink
    from ledger.proofs import prove_consistency

    old = await asyncio.to_thread(read_sink, args.old)
    new = await asyncio.to_thread(read_sink, args.new) if args.new else None
    if old is None or (args.new and new is None):
        raise BadRequest(f"no checkpoint at {args.old if old is None else args.new}")
    bundle = await asyncio.to_thread(prove_consistency, ledger_path(args, settings), old, new)
    await _write_bundle(bundle, args.output)
    return EXIT_OK


async def _write_bundle(bundle: dict[str, Any], output: str | None) -> None:
    import asyncio

    text = codec.dumps(bundle) + "\n"
    if output:
        await asyncio.to_thread(Path(output).write_text, text, encoding="utf-8")
        sys.stderr.write(f"plangate: wrote a {bundle['kind']} bundle to {output}\n")
    else:
        sys.stdout.write(text)


@ledger_errors
async def cmd_ledger_verify_bundle(args: argparse.Namespace, settings: Settings) -> int:
    """No ledger file, no Redis: the bundle and the trusted key only."""
    import asyncio

    from ledger.bundle_check import verify_bundle
    from ledger.signing import load_trusted_key

    key, key_name = await asyncio.to_thread(load_trusted_key, args.public_key)
    try:
        bundle = codec.loads(await asyncio.to_thread(Path(args.bundle).read_text, encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read the bundle {args.bundle}: {exc}") from exc
    report = verify_bundle(bundle, key, key_name)
    if args.json:
        echo(codec.dumps(report.__dict__))
    elif not report.ok:
        echo(f"BAD: {report.problem}")
    elif report.kind == "inclusion":
        echo(
            f"ok: {len(report.rows)} rows of job {report.job_id} are in the signed tree of "
            f"{report.tree_size} rows"
        )
        for row in report.rows:
            echo(f"  row {row['seq']:>7}  {row['created_at']}  {row['kind']:<15} {row.get('outcome') or ''}")
    else:
        echo(
            f"ok: the signed tree of {report.tree_size} rows extends the signed tree of "
            f"{report.old_size} rows"
        )
    return EXIT_OK if report.ok else EXIT_BAD_LEDGER


def add_proof_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register checkpoint, prove, prove-consistency and verify-bundle with `command` (the ledger's)."""
    p = command(
        "checkpoint", cmd_ledger_checkpoint, "print the latest signed checkpoint (a C2SP signed note)"
    )
    p.add_argument(
        "--sign", action="store_true", help="sign the file's head now with the signing key (after verify)"
    )
    p.add_argument(
        "--verifier-key",
        action="store_true",
        help="print the signing key's verifier key for auditors and exit",
    )

    p = command(
        "prove", cmd_ledger_prove, "write a job's rows with inclusion proofs against a signed checkpoint"
    )
    p.add_argument("job_id", help="the job's id")
    p.add_argument(
        "--checkpoint", metavar="FILE", help="prove against this checkpoint note (default the latest)"
    )
    p.add_argument("--output", "-o", help="write the bundle to this file (default stdout)")

    p = command(
        "prove-consistency",
        cmd_ledger_prove_consistency,
        "prove that a later checkpoint extends an earlier one",
    )
    p.add_argument("old", help="the earlier checkpoint note (a file)")
    p.add_argument("new", nargs="?", help="the later checkpoint note (default the latest in the ledger)")
    p.add_argument("--output", "-o", help="write the bundle to this file (default stdout)")

    p = command(
        "verify-bundle",
        cmd_ledger_verify_bundle,
        "check a proof bundle with the trusted public key alone (no ledger, no Redis); exit 1 if it fails",
    )
    p.add_argument("bundle", help="the bundle file (from prove or prove-consistency)")
    p.add_argument("--public-key", required=True, help="the trusted public key: PEM or verifier key")
    p.add_argument("--json", action="store_true", help="print the report as JSON, for scripts")
