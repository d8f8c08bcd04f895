"""`plangate web`: its arguments, and the command that starts the live view (worker/web/) when run."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from worker.cli.arg_types import port_number

if TYPE_CHECKING:
    from worker.settings import Settings

DEFAULT_PORT = 8090


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    """Run the live view until Ctrl-C or SIGTERM (exit 0); its URL goes to stdout."""
    import asyncio

    from worker.web.live_view import serve

    def ready(url: str) -> None:
        sys.stdout.write(f"plangate web: {url}\n")
        sys.stdout.flush()

    asyncio.run(serve(settings, args.host, args.port, ready))
    return 0


def add_web_commands(sub: Any) -> None:
    """Register `plangate web`."""
    p = sub.add_parser(
        "web",
        help="a read-only live view of queued, running and recent jobs in the browser",
        description="Serve a read-only page of queued, running and recent jobs (phase, heartbeat age, "
        "progress) and each job's events, plan and ledger record. Loopback only: it has no login.",
    )
    p.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.set_defaults(run=cmd_web, sync=True)
