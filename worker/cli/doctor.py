"""`plangate doctor`: check a deployment before its first job (and whenever something seems off)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from worker.cli.render import echo

if TYPE_CHECKING:
    from worker.settings import Settings


async def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Run every check; exit 0 when none fails (warnings alone pass), 1 when one does."""
    from plangate_base import codec
    from worker.doctor import run_checks
    from worker.doctor.report import as_json, exit_code, lines

    api_url = args.api_url or os.environ.get("PLANGATE_API_URL") or None
    results = await run_checks(settings, api_url=api_url, probe_llm=args.probe_llm)
    if args.json:
        sys.stdout.write(codec.dumps(as_json(results)) + "\n")
    else:
        for line in lines(results, hints_only=args.fix_hints):
            echo(line)
    return exit_code(results)


def add_doctor_commands(sub: Any) -> None:
    """Register `plangate doctor`."""
    p = sub.add_parser(
        "doctor",
        help="check this deployment: Redis, workers, LLM endpoint, governance, ledger, edges",
        description="Run named checks of the deployment these settings describe and print, for each, "
        "ok / warn / fail with one line of why and, for warn and fail, what to do. Checks: Redis or "
        "Dragonfly (reachable, version, persistence, every Lua script, clock skew), workers (live, "
        "versions, ledger writer), the LLM endpoint (/models with the key; a real completion only with "
        "--probe-llm), governance (forbidden lists, keys, tenants, quotas), the ledger (file, "
        "migrations, chain, signing key, backlog) and the edges (the API's /readyz, the metrics bind "
        "address, webhook deliveries that gave up). Exit 0 when nothing fails (warnings alone exit 0), "
        "1 when something does. Run it before the first job.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON, for scripts")
    p.add_argument(
        "--fix-hints",
        action="store_true",
        help="print only the checks that warn or fail, each with what to do (a to-do list)",
    )
    p.add_argument(
        "--probe-llm",
        action="store_true",
        help="also stream one tiny plan from the endpoint (billed): time to first token, the "
        "structured-output mode it accepts, whether it reports usage",
    )
    p.add_argument(
        "--api-url",
        metavar="URL",
        default=None,
        help="also check that `plangate serve` at URL is ready (default PLANGATE_API_URL)",
    )
    p.set_defaults(run=cmd_doctor)
