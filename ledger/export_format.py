"""How exported events are written for auditors and SIEMs: the rows as JSON lines, or each as a CloudEvents
1.0 event in structured JSON mode (one per line), carrying its seq and row hash so that any line can be
proven against the signed checkpoint written beside the export."""

from __future__ import annotations

from typing import Any

JSONL, CLOUDEVENTS = "jsonl", "cloudevents"
FORMATS = (JSONL, CLOUDEVENTS)

CLOUDEVENTS_TYPE_PREFIX = "dev.plangate.ledger."


def cloud_event(event: dict[str, Any], source: str) -> dict[str, Any]:
    """One ledger row as a CloudEvent: id the event id, type by kind, subject the job (or agent), time the
    event's; the row itself is the data; `plangateseq` and `plangaterowhash` are extension attributes."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event["event_id"],
        "source": source,
        "type": CLOUDEVENTS_TYPE_PREFIX + str(event["kind"]),
        "datacontenttype": "application/json",
        "plangateseq": event["seq"],
        "plangaterowhash": event["row_hash"],
        "data": event,
    }
    subject = event.get("job_id") or event.get("agent_id")
    if subject:
        out["subject"] = subject
    if event.get("created_at"):
        out["time"] = event["created_at"]
    return out
