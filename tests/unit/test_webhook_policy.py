"""The webhook decisions: which URLs and addresses a tenant's deliveries may reach, and what an answer
means for the next try. Pure functions: no Redis, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governance.webhook_policy import (
    WebhookPolicy,
    address_problem,
    attempt_outcome,
    host_allowed,
    parse_retry_after,
    retry_delay_s,
    url_problem,
)
from plangate_base.vocabulary import AttemptOutcome


def test_hosts_match_exactly_or_under_a_wildcard_domain() -> None:
    hosts = ["hooks.example.com", "*.corp.example"]

    assert host_allowed("hooks.example.com", hosts) and host_allowed("HOOKS.example.com.", hosts)
    assert host_allowed("a.corp.example", hosts) and host_allowed("b.a.corp.example", hosts)
    assert not host_allowed("corp.example", hosts)  # the wildcard means a subdomain
    assert not host_allowed("evilcorp.example", hosts) and not host_allowed("example.com", hosts)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "fc00::1",
        "::ffff:127.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused_unless_allowed(address: str) -> None:
    assert address_problem(address, allow_private=False) is not None
    assert address_problem(address, allow_private=True) is None


def test_public_addresses_pass_and_unspecified_or_multicast_never_do() -> None:
    assert address_problem("93.184.216.34", allow_private=False) is None
    assert address_problem("0.0.0.0", allow_private=True) is not None
    assert address_problem("224.0.0.1", allow_private=True) is not None


def test_a_url_must_be_http_on_the_list_without_credentials() -> None:
    policy = WebhookPolicy(hosts=["hooks.example.com", "127.0.0.1"])

    assert url_problem("https://hooks.example.com/x", policy) is None
    assert "allow list" in (url_problem("https://other.example.com/x", policy) or "")
    assert "http or https" in (url_problem("ftp://hooks.example.com/x", policy) or "")
    assert "credentials" in (url_problem("https://u:p@hooks.example.com/x", policy) or "")
    assert "private" in (url_problem("http://127.0.0.1:8080/x", policy) or "")
    assert url_problem("http://127.0.0.1:8080/x", policy.model_copy(update={"allow_private": True})) is None
    assert url_problem("http://hooks.example.com:99999/x", policy) is not None


def test_answers_map_to_delivered_retry_or_dead() -> None:
    assert (
        attempt_outcome(200) is AttemptOutcome.DELIVERED and attempt_outcome(204) is AttemptOutcome.DELIVERED
    )
    for status in (None, 500, 502, 503, 429):
        assert attempt_outcome(status) is AttemptOutcome.RETRY
    for status in (400, 401, 404, 410, 301, 302):
        assert attempt_outcome(status) is AttemptOutcome.DEAD
    assert attempt_outcome(None, gave_up_connecting=True) is AttemptOutcome.DEAD


def test_the_delay_doubles_with_jitter_up_to_its_cap_and_honours_a_longer_retry_after() -> None:
    delays = [retry_delay_s(n, base_s=1, cap_s=60, jitter=0.5) for n in range(1, 9)]

    assert delays[:4] == [1, 2, 4, 8] and delays[-1] == 60
    assert retry_delay_s(3, base_s=1, cap_s=60, jitter=0.0) == 2.0  # jitter spreads it over [0.5, 1.5)
    assert retry_delay_s(3, base_s=1, cap_s=60, jitter=0.999) < 6.0
    assert retry_delay_s(1, base_s=1, cap_s=60, jitter=0.5, retry_after_s=30) == 30
    assert retry_delay_s(1, base_s=1, cap_s=60, jitter=0.5, retry_after_s=3600) == 60
    assert retry_delay_s(4, base_s=1, cap_s=60, jitter=0.5, retry_after_s=1) == 8


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(later, now) == 90.0
    assert parse_retry_after(None, now) is None and parse_retry_after("soon", now) is None
