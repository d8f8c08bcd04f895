"""Where a tenant's webhooks may go, and what to do after an attempt: pure decisions over plain data.

An admin sets each tenant's allow list (`WebhookPolicy`): the hosts its callbacks and endpoints may name
(exactly, or `*.example.com` for any subdomain), and whether private, loopback and link-local addresses
are allowed (off by default: the SSRF guard). `url_problem` checks a URL against it; the deliverer checks
every address a host resolves to with `address_problem` before it connects. Retry decisions follow the
Standard Webhooks advice: retry timeouts, connection errors, 5xx and 429 with exponential backoff and
jitter (honouring Retry-After), for a bounded time; never another 4xx, and never follow a redirect.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from plangate_base.vocabulary import (
    DEPLOYMENT_WEBHOOK_EVENTS,
    DEPLOYMENT_WEBHOOKS,
    AttemptOutcome,
    WebhookEvent,
)

MAX_URL_CHARS = 2_000
MAX_HOSTS = 100
_HOST = r"^(\*\.)?[a-z0-9.\-\[\]:]+$"  # a name, `*.` and a domain, or an address
HostPattern = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=253, pattern=_HOST)
]
WebhookUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=MAX_URL_CHARS)]
EndpointId = Annotated[str, StringConstraints(pattern=r"^ep_[A-Za-z0-9]{8,40}$")]


class WebhookPolicy(BaseModel):
    """A tenant's allow list of webhook hosts, set by an admin."""

    model_config = ConfigDict(extra="forbid")

    hosts: list[HostPattern] = Field(default_factory=list, max_length=MAX_HOSTS)
    allow_private: bool = False  # private, loopback and link-local addresses (off: the SSRF guard)


class EndpointRecord(BaseModel):
    """A tenant's registered endpoint: where to deliver which event types (its secret is kept apart)."""

    model_config = ConfigDict(extra="forbid")

    endpoint_id: EndpointId
    tenant_id: str
    url: WebhookUrl
    events: list[WebhookEvent] = Field(min_length=1)
    created_at: datetime
    by: str = ""


def host_allowed(host: str, hosts: list[str]) -> bool:
    """Whether `host` is on the allow list: named exactly, or under a `*.` pattern's domain."""
    host = host.lower().rstrip(".")
    for pattern in hosts:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """Why a delivery may not connect to this IP address (None when it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return f"address {ip} is not a unicast address"
    if ip.is_global:
        return None
    if allow_private:
        return None
    return f"address {ip} is private, loopback or link-local (an admin may allow those: --allow-private)"


def url_problem(url: str, policy: WebhookPolicy) -> str | None:
    """Why `url` may not receive webhooks under `policy` (None when it may)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"a webhook URL is http or https, not {parts.scheme or 'nothing'!r}"
    if not host:
        return "a webhook URL names a host"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL may not carry credentials"
    if not host_allowed(host, policy.hosts):
        return f"host {host!r} is not on the tenant's webhook allow list"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: its addresses are checked when the deliverer connects
    return address_problem(host, allow_private=policy.allow_private)


def subscription_problem(owner: str, events: list[WebhookEvent]) -> str | None:
    """Why endpoints of `owner` (a tenant id, or DEPLOYMENT_WEBHOOKS) may not take `events` (None when
    they may): a deployment-wide event (a ledger checkpoint covers every tenant's rows) goes only to the
    deployment's endpoints, which admins and auditors manage, and those take nothing else."""
    wide = sorted(e.value for e in events if e in DEPLOYMENT_WEBHOOK_EVENTS)
    if owner == DEPLOYMENT_WEBHOOKS:
        narrow = sorted(e.value for e in events if e not in DEPLOYMENT_WEBHOOK_EVENTS)
        if narrow:
            return (
                f"the deployment's endpoints ({DEPLOYMENT_WEBHOOKS!r}) take deployment-wide events only, "
                f"not {narrow}"
            )
        return None
    if wide:
        return (
            f"{wide} concern the whole deployment: only its endpoints ({DEPLOYMENT_WEBHOOKS!r}, managed by "
            "admin and auditor tokens) take them, never a tenant's"
        )
    return None


def attempt_outcome(status: int | None, *, gave_up_connecting: bool = False) -> AttemptOutcome:
    """What an answer means: 2xx delivered; no answer (timeout, connection error), 5xx or 429 retry;
    anything else (another 4xx, a redirect, which is never followed) dead. `gave_up_connecting`: the
    address was refused by the SSRF guard, which no retry changes."""
    if gave_up_connecting:
        return AttemptOutcome.DEAD
    if status is None or status >= 500 or status == 429:
        return AttemptOutcome.RETRY
    if 200 <= status < 300:
        return AttemptOutcome.DELIVERED
    return AttemptOutcome.DEAD


def retry_delay_s(
    attempt: int, *, base_s: float, cap_s: float, jitter: float, retry_after_s: float | None = None
) -> float:
    """How long to wait before try `attempt + 1`: base x 2^(attempt-1), at most `cap_s`, spread by
    `jitter` (a number in [0, 1): the delay is scaled into [0.5, 1.5)), or the receiver's Retry-After
    when it asks for longer."""
    backoff = min(cap_s, base_s * 2 ** max(0, attempt - 1)) * (0.5 + jitter)
    if retry_after_s is not None and retry_after_s > backoff:
        return min(retry_after_s, cap_s)
    return backoff


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())
