"""How the CLI shows a job to a person (scripts use --json, which prints the status object as is)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from plangate_base.vocabulary import Decision, StreamKind

if TYPE_CHECKING:  # the status model is pydantic, which `plangate --help` and `ledger show` do without
    from worker.job_models import JobEvent, JobStatus


def echo(text: str) -> None:
    """Write one line to stdout and flush it (a follower of `ledger tail` sees each line as it comes)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def status_json(status: JobStatus) -> str:
    """The status object as JSON: exactly what `--json` prints."""
    return status.model_dump_json()


def render_fields(record: dict[str, Any], out: TextIO) -> None:
    """A record as `name: value` lines a person reads: a nested object as `name.key: value`, a list
    joined by commas, nothing as `(none)`; never a Python repr."""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "(none)"
        return "(none)" if value is None or value == "" else str(value)

    for name, value in record.items():
        if isinstance(value, dict):
            for key, item in value.items():
                out.write(f"{name}.{key}: {shown(item)}\n")
        else:
            out.write(f"{name}: {shown(value)}\n")


def render_status(status: JobStatus, out: TextIO) -> None:
    """A short human summary of a job and, when done, its plan."""
    line = f"job {status.job_id}: {status.state.value}"
    if status.phase and not status.terminal:
        tokens = status.progress.get("tokens", 0)
        line += f" (phase {status.phase.value}, attempt {status.attempt}, tokens {tokens})"
    out.write(line + "\n")
    out.write(f"  agent {status.agent_id} · tenant {status.tenant_id} · submitted {status.submitted_at}\n")
    if status.refusal:
        out.write(f"  refused: {status.refusal.code} — {status.refusal.reason}\n")
    if status.error:
        out.write(f"  {status.state.value}: {status.error.type} — {status.error.message}\n")
    if status.output:
        render_output(status.output.model_dump(mode="json"), out)
    if status.review:
        r = status.review
        note = f": {r.note}" if r.note else ""
        out.write(f"  review: {r.decision.value} by {r.by} at {r.at}{note}\n")
    elif status.output and status.output.decision is Decision.ESCALATE:
        out.write("  review: pending (`plangate review approve|reject JOB_ID --by REVIEWER`)\n")
    if status.cancel_requested and not status.terminal:
        out.write("  cancel requested: it stops at its next heartbeat\n")
    for hook in status.webhooks[-5:]:  # the latest attempts (`--json` has them all)
        answer = hook.status if hook.status is not None else hook.error or "no answer"
        out.write(
            f"  webhook {hook.event.value} to {hook.endpoint_id}: try {hook.attempt}, {answer}, "
            f"{hook.outcome.value} ({hook.latency_ms} ms)\n"
        )


def render_output(output: dict[str, Any], out: TextIO) -> None:
    """The plan: decision, confidence, ordered steps, and the notes for humans."""
    meta = output.get("metadata", {})
    out.write(
        f"  decision {output['decision']} · confidence {output['confidence']:.2f} · "
        f"model {meta.get('model', '?')}\n"
    )
    out.write(f"  action: {output['action']}\n")
    for step in output.get("plan", []):
        actions = f"  [needs: {', '.join(step['actions'])}]" if step.get("actions") else ""
        out.write(f"   {step['step']}. {step['title']}{actions}\n")
    if output.get("notes_for_humans"):
        out.write("  notes for humans:\n")
        for note in str(output["notes_for_humans"]).splitlines():
            out.write(f"    {note}\n")


def render_event(event: JobEvent, out: TextIO, *, live: bool) -> None:
    """One watch event; on a terminal, progress overwrites its line."""
    if event.kind is StreamKind.PROGRESS and live:
        out.write(f"\r  {event.phase} … {event.tokens} tokens")
        out.flush()
        return
    prefix = "\n" if live and event.kind is not StreamKind.PROGRESS else ""
    if event.kind is StreamKind.TERMINAL:
        out.write(f"{prefix}  {event.state.value} (attempt {event.attempt}) at {event.at}\n")
    else:
        out.write(f"{prefix}  {event.phase} (attempt {event.attempt}, {event.tokens} tokens) at {event.at}\n")
    out.flush()
