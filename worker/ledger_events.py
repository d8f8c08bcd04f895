"""Builds the events the queue side puts on the ledger stream (the wire format the ledger writer reads)."""

from __future__ import annotations

import os
import socket
from typing import Any

from plangate_base.clock import now_iso
from plangate_base.vocabulary import EventKind
from worker.ids import new_id

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def ledger_event(
    kind: EventKind,
    *,
    job_id: str | None,
    agent_id: str | None,
    tenant_id: str | None,
    attempt: int = 0,
    worker: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    model: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ledger event: who, what, when, where, and the outcome."""
    return {
        "event_id": new_id(),
        "kind": str(kind),
        "job_id": job_id,
        "agent_id": agent_id,
        "tenant_id": tenant_id,
        "created_at": now_iso(),
        "attempt": attempt,
        "worker": worker,
        "decision": decision,
        "reason": None if reason is None else str(reason),
        "model": model,
        "payload": payload or {},
    }
