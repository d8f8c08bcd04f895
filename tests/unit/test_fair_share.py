"""The fair queue's pure rules: order within a tenant (priorities with aging), start times, strides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from governance.fair_share import as_utc, deadline_ms, order_score, pause_field, start_ms, stride
from governance.models import PlanRequest, TenantRecord
from plangate_base.vocabulary import PauseScope, Priority

AGING_MS = 60_000


def test_one_priority_keeps_submit_order() -> None:
    scores = [order_score(t, None, AGING_MS) for t in (100, 101, 250)]
    assert scores == sorted(scores) and order_score(5, Priority.NORMAL, AGING_MS) == order_score(
        5, None, AGING_MS
    )


def test_a_higher_priority_overtakes_only_within_its_aging_bound() -> None:
    low = order_score(0, Priority.LOW, AGING_MS)
    assert order_score(2 * AGING_MS - 1, Priority.HIGH, AGING_MS) < low  # within two windows: overtakes
    assert order_score(2 * AGING_MS + 1, Priority.HIGH, AGING_MS) > low  # later: the low job goes first
    assert (
        order_score(AGING_MS - 1, Priority.NORMAL, AGING_MS) < low < order_score(AGING_MS + 1, None, AGING_MS)
    )
    assert [p.rank for p in Priority] == [0, 1, 2]


def test_start_times_and_deadlines() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    assert start_ms(ms, None, None) == ms
    assert start_ms(ms, None, 2.5) == ms + 2500
    assert start_ms(ms, at + timedelta(seconds=1), None) == ms + 1000
    assert start_ms(ms, at - timedelta(hours=1), None) == ms  # a past not_before: at once
    assert deadline_ms(at.replace(tzinfo=None)) == ms  # naive is UTC
    assert as_utc(at.astimezone(timezone(timedelta(hours=2)))).timestamp() == at.timestamp()
    assert deadline_ms(None) is None


def test_strides_and_pause_fields() -> None:
    assert stride(1) == 1.0 and stride(4) == 0.25
    assert pause_field(PauseScope.ALL) == "all"
    assert pause_field(PauseScope.TENANT, "acme") == "tenant:acme"
    assert pause_field(PauseScope.AGENT, "bot") == "agent:bot"


def test_a_request_names_one_start_time_and_a_tenant_a_positive_weight() -> None:
    with pytest.raises(ValidationError, match="not_before or delay_s"):
        PlanRequest(agent_id="a", description="d", delay_s=1, not_before=datetime.now(UTC))
    with pytest.raises(ValidationError):
        PlanRequest(agent_id="a", description="d", priority="urgent")
    with pytest.raises(ValidationError):
        TenantRecord(tenant_id="t", weight=0)
    assert TenantRecord(tenant_id="t").weight == 1.0
