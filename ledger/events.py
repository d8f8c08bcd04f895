"""What a ledger event is, and how one entry of the ledger stream becomes one (or a `malformed` record)."""

from __future__ import annotations

from typing import Any

from plangate_base.clock import from_ms, iso
from plangate_base.codec import dumps, loads
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, EventKind

REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "kind")
# job_id may be null: agent events (revoked, restored, budget reset) belong to no job.
TEXT_FIELDS: tuple[str, ...] = (
    "job_id",
    "agent_id",
    "tenant_id",
    "created_at",
    "worker",
    "decision",
    "reason",
    "model",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "kind",
    "job_id",
    "agent_id",
    "tenant_id",
    "created_at",
    "attempt",
    "worker",
    "decision",
    "reason",
    "model",
    "payload",
)
"""The columns of an event as stored, in table order (without seq and recorded_at)."""


def decode_entry(stream_id: str, fields: dict[str, str] | None) -> tuple[dict[str, Any], str | None]:
    """Turn one stream entry into an event; returns (event, None) or (malformed event, the problem)."""
    raw = (fields or {}).get(LEDGER_STREAM_FIELD)
    if raw is None:
        return malformed_event(
            stream_id, dumps(fields or {}), f"no {LEDGER_STREAM_FIELD!r} field"
        ), "missing_field"
    try:
        obj = loads(raw)
    except ValueError:
        return malformed_event(stream_id, raw, "invalid JSON"), "invalid_json"
    if not isinstance(obj, dict):
        return malformed_event(stream_id, raw, "not a JSON object"), "not_an_object"
    problem = _problem(obj)
    if problem is not None:
        return malformed_event(stream_id, raw, problem, job_id=obj.get("job_id")), "invalid_event"
    event = {name: obj.get(name) for name in EVENT_COLUMNS}
    event["payload"] = obj.get("payload") if obj.get("payload") is not None else {}
    return event, None


def _problem(obj: dict[str, Any]) -> str | None:
    """Why this object cannot be stored as it is (None when it can)."""
    for name in REQUIRED_FIELDS:
        if not isinstance(obj.get(name), str) or not obj[name]:
            return f"{name} missing or not a non-empty string"
    for name in TEXT_FIELDS:
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name} is not a string"
    attempt = obj.get("attempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
        return "attempt is not an integer"
    if obj["kind"] == EventKind.MALFORMED:
        return f"kind {EventKind.MALFORMED.value!r} is reserved for the ledger writer"
    return None


def malformed_event(stream_id: str, raw: str, error: str, job_id: Any = None) -> dict[str, Any]:
    """The record of an entry that could not be read; its id derives from the stream id, so replays dedupe."""
    return {
        "event_id": f"{EventKind.MALFORMED.value}:{stream_id}",
        "kind": EventKind.MALFORMED.value,
        "job_id": job_id if isinstance(job_id, str) else None,
        "agent_id": None,
        "tenant_id": None,
        "created_at": _stream_id_time(stream_id),
        "attempt": None,
        "worker": None,
        "decision": None,
        "reason": error,
        "model": None,
        "payload": {"stream_id": stream_id, "raw": raw, "error": error},
    }


def _stream_id_time(stream_id: str) -> str | None:
    """The time a stream id encodes (its milliseconds part), as ISO-8601 UTC text."""
    try:
        millis = int(stream_id.split("-", 1)[0])
    except ValueError:
        return None
    return iso(from_ms(millis))
