"""Read models kept beside the chain, updated in the writer's transaction: jobs, tenants, projects, agent
snapshots and the full-text search index. They are derived data; only the events table is the record."""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from plangate_base.codec import dumps, loads
from plangate_base.vocabulary import AGENT_EVENT_KINDS, TERMINAL_EVENT_KINDS, EventKind, JobState

# Upserts, so the projection comes out the same whichever of submitted/terminal is recorded first.
_PROJECT_SUBMITTED = f"""
INSERT INTO jobs (job_id, agent_id, tenant_id, task_type, description, state, submitted_at)
VALUES (?, ?, ?, ?, ?, '{JobState.QUEUED.value}', ?)
ON CONFLICT (job_id) DO UPDATE SET
    agent_id = coalesce(jobs.agent_id, excluded.agent_id),
    tenant_id = coalesce(jobs.tenant_id, excluded.tenant_id),
    task_type = excluded.task_type,
    description = excluded.description,
    submitted_at = excluded.submitted_at
"""

_PROJECT_TERMINAL = """
INSERT INTO jobs (job_id, agent_id, tenant_id, state, decision, reason, model, finished_at, output)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO UPDATE SET
    agent_id = coalesce(jobs.agent_id, excluded.agent_id),
    tenant_id = coalesce(jobs.tenant_id, excluded.tenant_id),
    state = excluded.state,
    decision = excluded.decision,
    reason = excluded.reason,
    model = excluded.model,
    finished_at = excluded.finished_at,
    output = excluded.output
"""

# A lost job ends as `lost` unless an end was recorded (a terminal event after it still wins).
_PROJECT_LOST = f"""
UPDATE jobs SET state = '{EventKind.LOST.value}', finished_at = ?
WHERE job_id = ? AND state NOT IN ({", ".join(f"'{k.value}'" for k in sorted(TERMINAL_EVENT_KINDS))})
"""

_TENANT = """
INSERT INTO tenants (tenant_id, first_seen_at, last_seen_at, jobs) VALUES (?, ?, ?, 1)
ON CONFLICT (tenant_id) DO UPDATE SET
    first_seen_at = min(coalesce(tenants.first_seen_at, excluded.first_seen_at), excluded.first_seen_at),
    last_seen_at = max(coalesce(tenants.last_seen_at, excluded.last_seen_at), excluded.last_seen_at),
    jobs = tenants.jobs + 1
"""

_PROJECT = """
INSERT INTO projects (project_id, tenant_id, first_seen_at, last_seen_at, jobs) VALUES (?, ?, ?, ?, 1)
ON CONFLICT (tenant_id, project_id) DO UPDATE SET
    last_seen_at = max(coalesce(projects.last_seen_at, excluded.last_seen_at), excluded.last_seen_at),
    jobs = projects.jobs + 1
"""

_AGENT_SNAPSHOT = f"""
INSERT OR IGNORE INTO agents (agent_id, event_id, kind, revoked, suspended, changed_by, reason, changed_at)
SELECT ?, ?, ?,
    CASE ? WHEN '{EventKind.REVOKED.value}' THEN 1 WHEN '{EventKind.RESTORED.value}' THEN 0
        ELSE coalesce((SELECT revoked FROM agents WHERE agent_id = ?
            ORDER BY snapshot_id DESC LIMIT 1), 0) END,
    CASE ? WHEN '{EventKind.SUSPENDED.value}' THEN 1 WHEN '{EventKind.BUDGET_RESET.value}' THEN 0
        ELSE coalesce((SELECT suspended FROM agents WHERE agent_id = ?
            ORDER BY snapshot_id DESC LIMIT 1), 0) END,
    ?, ?, ?
"""


class Executes(Protocol):
    """What the projection writes through: a sqlite3 connection, or a StatementBatch that holds the
    statements for one executemany per run."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Any: ...


class StatementBatch:
    """The projection statements of a batch, kept in order; `flush` runs each run of consecutive uses of one
    statement as one executemany. Order is kept, so the result is that of executing them one by one."""

    __slots__ = ("_statements",)

    def __init__(self) -> None:
        self._statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, parameters: Sequence[Any], /) -> None:
        self._statements.append((sql, parameters))

    def flush(self, conn: sqlite3.Connection) -> None:
        """Run the held statements (inside the batch's transaction)."""
        statements, self._statements = self._statements, []
        for sql, run in itertools.groupby(statements, key=operator.itemgetter(0)):
            conn.executemany(sql, [parameters for _sql, parameters in run])


class SearchRows:
    """The search-index changes of one batch, applied once per job at its end (`flush`).

    A job's search row holds its description (from `submitted`) and its plan and notes (from the
    terminal event). FTS5 deletes a row by re-reading and re-tokenising it, the costliest statement
    of a batch; when both events of a job are in one batch (a backlog), the row is written once."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, str]] = {}

    def set(self, job_id: str, **columns: str) -> None:
        self._rows.setdefault(job_id, {}).update(columns)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write every changed search row (inside the batch's transaction).

        The search row shares its jobs row's rowid (FTS5 cannot index job_id); both lookups are made
        for the whole batch at once."""
        rows, self._rows = self._rows, {}
        rowids = dict(select_in(conn, "SELECT job_id, rowid FROM jobs WHERE job_id IN ({})", list(rows)))
        current_rows = {
            row[0]: row
            for row in select_in(
                conn,
                "SELECT rowid, job_id, description, plan, notes FROM job_search WHERE rowid IN ({})",
                list(rowids.values()),
            )
        }
        inserts = []
        for job_id, columns in rows.items():
            rowid = rowids.get(job_id)
            if rowid is None:
                continue
            current = {"description": "", "plan": "", "notes": ""}
            row = current_rows.get(rowid)
            if row is not None:
                if row[1] == job_id:  # (a VACUUM may renumber the jobs rows; then the stale row is replaced)
                    current = {"description": row[2], "plan": row[3], "notes": row[4]}
                conn.execute("DELETE FROM job_search WHERE rowid = ?", (rowid,))
            current.update(columns)
            inserts.append((rowid, job_id, current["description"], current["plan"], current["notes"]))
        conn.executemany(
            "INSERT INTO job_search (rowid, job_id, description, plan, notes) VALUES (?, ?, ?, ?, ?)", inserts
        )


_IN_CHUNK = 500  # bound parameters per IN list (old SQLite builds allow 999)


def select_in(conn: sqlite3.Connection, sql: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql` (one `IN ({})` placeholder) for all `values`, queried in chunks."""
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        found += conn.execute(sql.format(", ".join("?" * len(chunk))), chunk).fetchall()
    return found


def project(
    conn: Executes,
    event: dict[str, Any],
    payload_text: str | None,
    search: SearchRows,
    *,
    counts: bool = True,
) -> None:
    """Update the read models for one newly recorded event (inside the caller's transaction).

    `payload_text`, when given, is `dumps(event["payload"])` already computed by the caller (the events
    row holds the same text), so a terminal event's output is not serialised twice. The search row
    changes wait in `search` for the batch's `search.flush(conn)`.

    Synchronous, on the writer's plain sqlite3 connection, or into a StatementBatch (the store's batches:
    one executemany per run of one statement).

    `counts=False` (re-projecting a job after a redaction) leaves the per-event tables alone: tenant and
    project counts, agent snapshots."""
    kind = event["kind"]
    payload = event.get("payload")
    fields = payload if isinstance(payload, dict) else {}
    if counts and kind in AGENT_EVENT_KINDS and event.get("agent_id"):
        _agent_snapshot(conn, event, fields)
    if not event.get("job_id"):
        return
    if kind == EventKind.SUBMITTED:
        conn.execute(
            _PROJECT_SUBMITTED,
            (
                event["job_id"],
                event.get("agent_id"),
                event.get("tenant_id"),
                _text(fields.get("task_type")),
                _text(fields.get("description")),
                event.get("created_at"),
            ),
        )
        if counts:
            _tenant_and_project(conn, event, fields)
        search.set(event["job_id"], description=_text(fields.get("description")) or "")
    elif kind in TERMINAL_EVENT_KINDS:
        conn.execute(
            _PROJECT_TERMINAL,
            (
                event["job_id"],
                event.get("agent_id"),
                event.get("tenant_id"),
                kind,
                event.get("decision"),
                event.get("reason") or _outcome_code(fields),
                event.get("model"),
                event.get("created_at"),
                None if payload is None else payload_text if payload_text is not None else dumps(payload),
            ),
        )
        columns = outcome_search_columns(fields)
        if columns is not None:
            search.set(event["job_id"], **columns)
    elif kind == EventKind.LOST:
        conn.execute(_PROJECT_LOST, (event.get("created_at"), event["job_id"]))


def outcome_search_columns(payload: Any) -> dict[str, str] | None:
    """The plan and notes columns of a job's search row from its terminal event's payload (None: no plan).

    A done event's payload carries the AgentOutput under "output"; its steps are the "plan" list."""
    output = payload.get("output") if isinstance(payload, dict) else None
    if not isinstance(output, dict):
        return None
    return {"plan": search_text(output.get("plan")), "notes": search_text(output.get("notes_for_humans"))}


def search_text(value: Any) -> str:
    """The words of a value for the search index: its text, one piece a line (keys and numbers left out).

    A step's title, description, actions and risks are indexed, not the JSON punctuation and field names
    around them (which would make "title" match every plan)."""
    if isinstance(value, str):
        return value
    parts: list[str] = []
    _collect_text(value, parts)
    return "\n".join(parts)


def _collect_text(value: Any, parts: list[str]) -> None:
    # The writer's hot path: a plan is a list of flat dicts of text and lists of text, so a list of text
    # is joined at once and only other shapes cost a call per level.
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        if isinstance(item, str):
            if item:
                parts.append(item)
        elif isinstance(item, list):
            try:
                joined = "\n".join(item)
            except TypeError:  # not only text
                _collect_text(item, parts)
            else:
                if joined:
                    parts.append(joined)
        elif isinstance(item, dict):
            _collect_text(item, parts)


_REBUILD_CHUNK = 1000


def rebuild_search(conn: sqlite3.Connection) -> int:
    """Refill the search index from the jobs projection (a migration step); returns how many rows it wrote.

    `job_search` must be empty (the migration recreates it). The jobs rows hold each job's description and
    its terminal event's payload as recorded (also for jobs whose events were compacted into an archive),
    so the index comes out as the writer now builds it."""
    written, last = 0, 0
    while True:
        rows = conn.execute(
            "SELECT rowid, job_id, description, output FROM jobs WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, _REBUILD_CHUNK),
        ).fetchall()
        if not rows:
            return written
        inserts = []
        for rowid, job_id, description, output in rows:
            columns = outcome_search_columns(_payload(output)) or {"plan": "", "notes": ""}
            inserts.append((rowid, job_id, description or "", columns["plan"], columns["notes"]))
        conn.executemany(
            "INSERT INTO job_search (rowid, job_id, description, plan, notes) VALUES (?, ?, ?, ?, ?)", inserts
        )
        written += len(inserts)
        last = rows[-1][0]


def _payload(text: str | None) -> Any:
    """A recorded payload's data (None for no text, or text that is not JSON: such a row gets no plan)."""
    if not text:
        return None
    try:
        return loads(text)
    except ValueError:
        return None


def _tenant_and_project(conn: Executes, event: dict[str, Any], fields: dict) -> None:
    tenant = event.get("tenant_id")
    if not tenant:
        return
    at = event.get("created_at")
    conn.execute(_TENANT, (tenant, at, at))
    context = fields.get("context")
    project_id = fields.get("project_id") or (context.get("project") if isinstance(context, dict) else None)
    if isinstance(project_id, str) and project_id:
        conn.execute(_PROJECT, (project_id, tenant, at, at))


def _agent_snapshot(conn: Executes, event: dict[str, Any], fields: dict) -> None:
    agent, kind = event["agent_id"], event["kind"]
    by = fields.get("by")
    conn.execute(
        _AGENT_SNAPSHOT,
        (
            agent,
            event["event_id"],
            kind,
            kind,
            agent,
            kind,
            agent,
            by if isinstance(by, str) else None,
            event.get("reason") or _text(fields.get("reason")),
            event.get("created_at"),
        ),
    )


def _outcome_code(fields: dict) -> str | None:
    """The code a terminal payload names (its refusal's code, its error's type), for an event without one."""
    for name, code in (("refusal", "code"), ("error", "type")):
        detail = fields.get(name)
        if isinstance(detail, dict) and isinstance(detail.get(code), str):
            return detail[code]
    return None


def _text(value: Any) -> str | None:
    """A projection column value: text as is, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return dumps(value)
