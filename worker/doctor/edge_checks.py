"""`plangate doctor`'s checks of the edges: the API (when its URL is known), the metrics bind address, and
webhook deliveries that gave up."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis

from plangate_base.checks import CheckResult, fail, ok, warn
from worker.keys import Keys
from worker.settings import Settings
from worker.webhooks.store import WebhookStore

TIMEOUT_S = 5.0
_EVERYWHERE = ("0.0.0.0", "::", "")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


async def api_ready(api_url: str) -> CheckResult:
    """The API's /readyz answers 200 (Redis reachable, workers alive, ledger backlog bounded)."""
    name = "api.ready"
    url = api_url.rstrip("/") + "/readyz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http,
            http.get(url, allow_redirects=False) as answer,
        ):
            status, body = answer.status, await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return fail(name, f"{url}: {type(exc).__name__} {exc}".strip(), "is `plangate serve` running there?")
    if status != 200:
        detail = body.get("detail", "") if isinstance(body, dict) else ""
        return fail(name, f"{url} answered {status}: {detail}", "see what /readyz names and fix that")
    return ok(name, f"{url} is ready")


def api_tls(api_url: str) -> CheckResult:
    """Agents send their bearer tokens to the API: in clear text only over loopback."""
    name = "api.tls"
    parts = urlsplit(api_url)
    if parts.scheme == "https":
        return ok(name, f"{parts.netloc}: TLS")
    if parts.hostname in _LOOPBACK:
        return ok(name, f"{parts.netloc}: plain HTTP on loopback (tokens stay on this host)")
    return warn(
        name,
        f"{parts.netloc}: plain HTTP off this host, so bearer tokens cross the network in clear text",
        "put a TLS-terminating proxy in front of `plangate serve` (docs/operations.md) and use https://",
    )


def metrics_bind(settings: Settings) -> CheckResult:
    """Worker metrics on every interface carry no secrets but are open to anyone who can reach them."""
    name = "edges.metrics_bind"
    if settings.metrics_port == 0:
        return ok(name, "worker metrics are off")
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    if settings.metrics_host in _EVERYWHERE:
        return warn(
            name,
            f"worker /metrics on every interface ({where}), without authentication",
            "bind PLANGATE_METRICS_HOST to the scraper's network only, or firewall the port",
        )
    return ok(name, f"worker /metrics on {where}")


async def webhook_deliveries(redis: Redis, keys: Keys) -> CheckResult:
    """Deliveries that gave up (the dead letters `plangate webhooks failed` lists): a receiver to fix."""
    name = "webhooks.deliveries"
    dead = int(await redis.zcard(keys.webhook_dead()))
    if not dead:
        return ok(name, "no webhook delivery gave up")
    [latest] = await WebhookStore(redis, keys).dead(limit=1) or [None]
    last = f"; the latest to {latest.url} (last answer {latest.last_status or 'none'})" if latest else ""
    return warn(
        name,
        f"{dead} webhook deliveries gave up{last}",
        "`plangate webhooks failed` lists them; fix the receiver, then `plangate webhooks redeliver --all`",
    )
