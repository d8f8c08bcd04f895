"""Builds the events the queue side puts on the ledger stream (the wire format the ledger writer reads)."""

from __future__ import annotations

import os
import socket
from typing import Any

from governance.models import AgentOutput
from plangate_base.clock import now_iso
from worker.ids import new_id

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def ledger_event(
    kind: str,
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
        "kind": kind,
        "job_id": job_id,
        "agent_id": agent_id,
        "tenant_id": tenant_id,
        "created_at": now_iso(),
        "attempt": attempt,
        "worker": worker,
        "decision": decision,
        "reason": reason,
        "model": model,
        "payload": payload or {},
    }


def done_payload(output: AgentOutput, usage: dict[str, Any]) -> dict[str, Any]:
    """A done event's payload: the AgentOutput as JSON data, the LLM call's usage, the governance flags."""
    flags = output.metadata.get("flags") or []
    return {"output": output.model_dump(mode="json"), "usage": usage, "flags": flags}


def refused_payload(code: str, reason: str) -> dict[str, Any]:
    """A refused event's payload: the refusal's code and why."""
    return {"refusal": {"code": code, "reason": reason}}


def error_payload(error_type: str, message: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A failed or cancelled event's payload: the typed error, and the usage when the LLM call had begun."""
    detail = {"type": error_type, "message": message}
    return {"error": detail} if usage is None else {"error": detail, "usage": usage}
