"""`plangate serve` (the HTTP API) and `plangate tokens` (its bearer tokens)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from worker.cli.arg_types import add_listen_args
from worker.cli.render import render_fields

if TYPE_CHECKING:
    from worker.settings import Settings

DEFAULT_PORT = 8080


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API until Ctrl-C or SIGTERM (exit 0); its URL goes to stdout once it listens."""
    return run_app(args, settings, "plangate serve", "")


def run_app(args: argparse.Namespace, settings: Settings, name: str, path: str) -> int:
    """Serve the API app on args.host:args.port; once it listens, `name: URL` (with `path`) on stdout.
    A port that is taken or not ours is one line and exit 2."""
    import asyncio
    import contextlib
    import signal
    from collections.abc import Iterator

    import uvicorn

    from plangate_base.logs import get_logger
    from worker.api.app import create_app

    log = get_logger("plangate.api")
    if getattr(args, "no_auth", False):
        warning = (
            "plangate serve: --no-auth: EVERY CALLER IS AN ADMIN, NO TOKEN IS CHECKED. "
            "Never expose this to a network.\n"
        )
        sys.stderr.write(warning)
        log.warning("api.open_access", host=args.host, port=args.port)
    config = uvicorn.Config(
        create_app(settings, open_access=getattr(args, "no_auth", False)),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """SIGINT and SIGTERM stop it gracefully, and then it exits 0: uvicorn's own handler
            re-raises the signal afterwards, so a service stopped on purpose would look killed."""

            def stop(signum: int, frame: Any) -> None:
                log.info("api.stopping", signal=signal.Signals(signum).name)
                self.handle_exit(signum, frame)

            previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # listening: say where (port 0 picked one)
                port = self.servers[0].sockets[0].getsockname()[1]
                host = f"[{args.host}]" if ":" in args.host else args.host
                sys.stdout.write(f"{name}: http://{host}:{port}{path}\n")
                sys.stdout.flush()
                log.info("api.listening", host=args.host, port=port)

    import socket

    from worker.redis_conn import wait_for_redis

    # Redis must answer before the API takes requests: a wrong setting is one line and exit 3 at once,
    # a Redis still starting is waited for PLANGATE_REDIS_START_WAIT_S (then exit 3), as for a worker.
    asyncio.run(wait_for_redis(settings.redis_url, asyncio.Event(), settings.redis_start_wait_s))

    try:  # a taken port is a setting to change, said in one line (uvicorn would log and exit 1)
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as exc:
        sys.stderr.write(
            f"plangate: {name} cannot listen on {args.host} port {args.port}: {exc.strerror or exc}\n"
        )
        return 2
    server = Server(config)
    server.run()  # on uvloop (the loop uvicorn picks when it is installed, as it is with plangate)
    return 0 if server.started else 1


async def cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    from governance.api_tokens import Scope
    from worker.admin import AgentAdmin
    from worker.keys import Keys
    from worker.redis_conn import text_client

    redis = text_client(settings.redis_url)
    try:
        admin = AgentAdmin(redis, Keys(settings.key_prefix))
        if args.tokens_command == "issue":
            token, principal = await admin.issue_token(
                Scope(args.scope), tenant_id=args.tenant, name=args.name, by=args.by
            )
            sys.stdout.write(f"{token}\n")
            sys.stderr.write(
                f"plangate: token id {principal.token_id} (for `plangate tokens revoke`); the token is "
                "shown once and stored only as a digest: send it as `Authorization: Bearer TOKEN`\n"
            )
            return 0
        if args.tokens_command == "revoke":
            if not await admin.revoke_token(args.token_id, by=args.by, reason=args.reason):
                sys.stderr.write(
                    f"plangate: no token with id {args.token_id!r} (see `plangate tokens list`)\n"
                )
                return 2
            sys.stdout.write(f"revoked {args.token_id}\n")
            return 0
        principals = await admin.tokens.all()
        if args.json:
            from plangate_base import codec

            sys.stdout.write(codec.dumps([p.public() for p in principals]) + "\n")
        else:
            for principal in principals:
                render_fields({k: v for k, v in principal.public().items() if v}, sys.stdout)
                sys.stdout.write("\n")
        return 0
    finally:
        await redis.aclose()


def add_serve_commands(sub: Any) -> None:
    """Register `plangate serve` and `plangate tokens`."""
    p = sub.add_parser(
        "serve",
        help="the HTTP API: agents submit and follow jobs with a URL and a token, never the Redis URL",
        description="Serve the authenticated HTTP API (/v1/jobs, /v1/reviews, admin routes, /healthz, "
        "/readyz, /metrics, /openapi.json, /docs). Stateless: run as many as you like against one Redis. "
        "Callers send `Authorization: Bearer TOKEN`: an agent's key, a reviewer's key, or a token from "
        "`plangate tokens issue`.",
    )
    add_listen_args(p, DEFAULT_PORT)
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="DANGEROUS, for a local demo only: every caller is an admin and no token is checked",
    )
    p.set_defaults(run=cmd_serve, sync=True, logs="service")

    t = sub.add_parser(
        "tokens",
        help="issue, list and revoke the API's tenant, auditor and admin tokens",
        description="Bearer tokens for `plangate serve`. An agent's token is its key (`plangate agents "
        "issue-key`), a reviewer's its reviewer key; tenant, auditor and admin tokens are issued here.",
    )
    ts = t.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    issue = ts.add_parser("issue", help="issue a token (printed once to stdout)")
    issue.add_argument(
        "--scope",
        required=True,
        choices=["tenant", "auditor", "admin"],
        help="tenant: submit and read for every agent of --tenant; auditor: read any job; admin: everything",
    )
    issue.add_argument("--tenant", default=None, help="the tenant of a tenant token")
    issue.add_argument("--name", default="", help="a label shown by `tokens list` (e.g. who holds it)")
    issue.add_argument("--by", default=None, help="who issues it (default: the current user)")
    lst = ts.add_parser("list", help="list live tokens (ids, scopes, tenants; never the tokens)")
    lst.add_argument("--json", action="store_true", help="print a JSON array of the tokens' principals")
    rev = ts.add_parser("revoke", help="revoke a token at once, by its id")
    rev.add_argument("token_id", help="the id `tokens list` shows (agent:ID / reviewer:ID for keys)")
    rev.add_argument("--reason", default="", help="why (recorded in the ledger)")
    rev.add_argument("--by", default=None, help="who revokes it (default: the current user)")
    t.set_defaults(run=cmd_tokens)
