"""Ledger events as the producers write them, for the ledger's unit tests."""

from __future__ import annotations

import uuid
from typing import Any


def make_event(kind: str, job_id: str | None = "job-1", **fields: Any) -> dict[str, Any]:
    """An event of `kind` for `job_id` (None: an agent event), `fields` replacing the defaults."""
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "kind": kind,
        "job_id": job_id,
        "agent_id": "agent-a",
        "tenant_id": "tenant-t",
        "created_at": "2026-11-25T13:36:00.123Z",
        "attempt": 1,
        "worker": "host:123",
        "decision": None,
        "reason": None,
        "model": None,
        "payload": {},
    }
    event.update(fields)
    return event
