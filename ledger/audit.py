"""`python -m ledger.audit BUNDLE --public-key KEY`: an auditor's check of a proof bundle, importing only the
ledger package (no settings, no Redis client, no database): the same check as `plangate ledger
verify-bundle`, for a machine that has the bundle and the trusted key and nothing else.

Exit 0 when the bundle holds, 1 when it does not, 2 when it cannot be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger.bundle_check import verify_bundle
from ledger.errors import LedgerError
from ledger.signing import load_trusted_key
from plangate_base import codec


def main(argv: list[str] | None = None) -> int:
    """Check one bundle; print what it proved, or why it does not hold."""
    parser = argparse.ArgumentParser(prog="python -m ledger.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="the bundle file (from plangate ledger prove or prove-consistency)")
    parser.add_argument("--public-key", required=True, help="the trusted public key: PEM or verifier key")
    args = parser.parse_args(argv)
    try:
        key, name = load_trusted_key(args.public_key)
        bundle = codec.loads(Path(args.bundle).read_text(encoding="utf-8"))
    except (LedgerError, OSError, ValueError) as exc:
        sys.stderr.write(f"ledger.audit: {exc}\n")
        return 2
    report = verify_bundle(bundle, key, name)
    if not report.ok:
        sys.stdout.write(f"BAD: {report.problem}\n")
        return 1
    if report.kind == "inclusion":
        sys.stdout.write(
            f"ok: {len(report.rows)} rows of job {report.job_id} in the signed tree of {report.tree_size}\n"
        )
    else:
        sys.stdout.write(
            f"ok: the signed tree of {report.tree_size} rows extends that of {report.old_size}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
