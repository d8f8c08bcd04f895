"""`plangate webhooks ...`: a tenant's allow list and endpoints, the dead letters, and the deliverer."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from plangate_base import codec
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, WebhookEvent
from worker.cli.render import echo
from worker.errors import BadRequest
from worker.keys import Keys

if TYPE_CHECKING:  # `plangate --help` registers these commands without redis-py or pydantic
    from worker.settings import Settings

_SECRET_NOTE = "(shown once: receivers verify signatures with it; `rotate-secret` replaces it)"


async def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from governance.webhook_policy import WebhookPolicy
    from worker.redis_conn import text_client
    from worker.webhooks.store import WebhookStore

    if args.webhooks_cmd == "run":
        return await _run(settings)
    async with text_client(settings.redis_url) as redis:
        store = WebhookStore(redis, Keys(settings.key_prefix))
        cmd = args.webhooks_cmd
        if cmd == "allow":
            try:
                policy = WebhookPolicy(hosts=args.host, allow_private=args.allow_private)
            except ValidationError as exc:
                raise BadRequest(f"bad host: {exc.errors()[0]['msg']}") from exc
            await store.set_policy(args.tenant_id, policy)
            echo(policy.model_dump_json() if args.json else f"tenant {args.tenant_id}: {_policy(policy)}")
        elif cmd == "policy":
            policy = await store.policy(args.tenant_id)
            echo(policy.model_dump_json() if args.json else f"tenant {args.tenant_id}: {_policy(policy)}")
        elif cmd == "callback-secret":
            secret = await store.issue_callback_secret(args.tenant_id)
            echo(codec.dumps({"secret": secret}) if args.json else f"callback secret {secret} {_SECRET_NOTE}")
        elif cmd == "add":
            record, secret = await store.add_endpoint(
                args.tenant_id, args.url, [WebhookEvent(e) for e in args.event], by=args.by
            )
            if args.json:
                echo(codec.dumps({**record.model_dump(mode="json"), "secret": secret}))
            else:
                echo(f"endpoint {record.endpoint_id} -> {record.url} for {', '.join(record.events)}")
                echo(f"secret {secret} {_SECRET_NOTE}")
        elif cmd == "list":
            records = await store.endpoints(args.tenant_id)
            if args.json:
                echo(codec.dumps([r.model_dump(mode="json") for r in records]))
            for r in [] if args.json else records:
                echo(f"{r.endpoint_id}\t{r.url}\t{','.join(r.events)}\t{r.created_at.isoformat()}")
        elif cmd == "remove":
            if not await store.remove_endpoint(args.tenant_id, args.endpoint_id):
                raise BadRequest(f"tenant {args.tenant_id!r} has no webhook endpoint {args.endpoint_id!r}")
            echo(f"endpoint {args.endpoint_id} removed")
        elif cmd == "rotate-secret":
            secret = await store.rotate_secret(args.tenant_id, args.endpoint_id)
            echo(codec.dumps({"secret": secret}) if args.json else f"secret {secret} {_SECRET_NOTE}")
        elif cmd == "failed":
            dead = await store.dead(tenant_id=args.tenant, limit=args.limit)
            if args.json:
                echo(codec.dumps([d.model_dump(mode="json") for d in dead]))
            elif not dead:
                echo("no dead webhook deliveries")
            for d in [] if args.json else dead:
                last = d.last_status or "no answer"
                echo(f"{d.delivery_id}\t{d.type}\t{d.job_id or '-'}\t{d.url}\t{d.attempts} tries, {last}")
        else:  # redeliver
            if bool(args.delivery_id) == args.all:
                raise BadRequest("name delivery ids (see `plangate webhooks failed`), or --all")
            dead = [] if args.delivery_id else await store.dead(tenant_id=args.tenant, limit=10**6)
            ids = args.delivery_id or [d.delivery_id for d in dead]
            done = [i for i in ids if await store.redeliver(i)]
            for delivery_id in sorted(set(ids) - set(done)):
                echo(f"{delivery_id}: not a dead delivery")
            echo(f"{len(done)} deliver{'y' if len(done) == 1 else 'ies'} due again")
            return 0 if len(done) == len(ids) else 1
    return 0


def _policy(policy: Any) -> str:
    hosts = ", ".join(policy.hosts) or "no hosts (no webhooks)"
    return hosts + ("; private and loopback addresses allowed" if policy.allow_private else "")


async def _run(settings: Settings) -> int:
    """The deliverer as its own process, until SIGTERM or SIGINT."""
    import asyncio
    import signal

    from worker.ledger_events import WORKER_NAME
    from worker.metrics import serve_metrics
    from worker.redis_conn import text_client, wait_for_redis
    from worker.webhooks.deliverer_thread import start_deliverer, stop_deliverer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await wait_for_redis(settings.redis_url, stop, settings.redis_start_wait_s):
        return 0
    metrics = serve_metrics(settings)
    redis = text_client(settings.redis_url, service=True)
    try:
        deliverer, task = start_deliverer(redis, settings, WORKER_NAME)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await stop_deliverer(deliverer, task)
    finally:
        await redis.aclose()
        if metrics is not None:
            metrics.close()
    return 0


def add_webhook_commands(sub: Any) -> None:
    """Register `plangate webhooks ...`."""
    events = [e.value for e in WebhookEvent]
    hooks = sub.add_parser("webhooks", help="signed webhooks: allow lists, endpoints, dead letters")
    wsub = hooks.add_subparsers(dest="webhooks_cmd", required=True)

    def cmd(name: str, text: str, *, tenant: bool = True, json: bool = True) -> Any:
        p = wsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if tenant:
            deployment = f"'{DEPLOYMENT_WEBHOOKS}': the deployment's own, for ledger.checkpoint"
            p.add_argument("tenant_id", help=f"the tenant's id ({deployment})")
        if json:
            p.add_argument("--json", action="store_true", help="print JSON, for scripts")
        p.set_defaults(run=cmd_webhooks)
        return p

    p = cmd("allow", "set (replace) the hosts a tenant's webhooks may go to (admins)")
    p.add_argument("--host", action="append", default=[], help="a host, or *.domain (repeatable)")
    p.add_argument(
        "--allow-private",
        action="store_true",
        help="also private, loopback and link-local addresses (off by default: the SSRF guard)",
    )
    cmd("policy", "show a tenant's webhook allow list")
    cmd("callback-secret", "issue (or replace) the secret that signs a tenant's per-job callbacks")
    p = cmd("add", "register an endpoint for event types; prints its secret once")
    p.add_argument("url", help="where to POST (its host must be on the tenant's allow list)")
    p.add_argument("--event", action="append", required=True, choices=events, help="event type (repeatable)")
    p.add_argument("--by", default=None, help="who registers it (default: the current user)")
    cmd("list", "list a tenant's endpoints (never their secrets)")
    p = cmd("remove", "remove an endpoint (its pending deliveries go dead)", json=False)
    p.add_argument("endpoint_id", help="the endpoint's id (ep_...)")
    p = cmd("rotate-secret", "replace an endpoint's secret; prints the new one once")
    p.add_argument("endpoint_id", help="the endpoint's id (ep_...)")
    p = cmd("failed", "dead deliveries (gave up after their last try), newest first", tenant=False)
    p.add_argument("--tenant", help="only this tenant's")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p = cmd("redeliver", "make dead deliveries due again (same webhook-id)", tenant=False, json=False)
    p.add_argument("delivery_id", nargs="*", help="delivery ids (from `webhooks failed`)")
    p.add_argument("--all", action="store_true", help="every dead delivery (of --tenant)")
    p.add_argument("--tenant", help="with --all: only this tenant's")
    p = cmd("run", "run a deliverer process (PLANGATE_WEBHOOKS_IN_WORKER=false)", tenant=False, json=False)
    p.set_defaults(logs="service")
