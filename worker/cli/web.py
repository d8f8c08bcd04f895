"""`plangate web`: the API app with the live view (worker/api/web.py), its address printed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from worker.cli.arg_types import add_listen_args

if TYPE_CHECKING:
    from worker.settings import Settings

DEFAULT_PORT = 8090


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    """The API app with its live view (the same as `plangate serve`), on loopback by default; the
    sign-in page's URL goes to stdout."""
    from worker.cli.serve import run_app

    return run_app(args, settings, "plangate web", "/web/")


def add_web_commands(sub: Any) -> None:
    """Register `plangate web`."""
    p = sub.add_parser(
        "web",
        help="the live view of queued, running and recent jobs in the browser (the API app, at /web/)",
        description="Serve the API app (as `plangate serve`) and print its live view's address: a page "
        "of queued, running and recent jobs (phase, heartbeat age, progress) and each job's events, plan "
        "and ledger record. Sign in with a token; each token sees only its jobs, reviewers can approve "
        "or reject escalated plans there.",
    )
    add_listen_args(p, DEFAULT_PORT)
    p.set_defaults(run=cmd_web, sync=True, logs="service")
