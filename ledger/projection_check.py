"""Checking the read models against the record: the `jobs` table and the search index that `ledger search`
reads are recomputed from the chained events rows (the writer's own projection code, replayed into an
in-memory database) and compared row by row."""

from __future__ import annotations

import sqlite3
from collections.abc import Set
from dataclasses import dataclass, field

from ledger import migrations
from ledger.projections import SearchRows, project
from plangate_base import codec

_SEARCH_COLUMNS = ("description", "plan", "notes")

CHECKED_FROM_SCHEMA = 6
"""Jobs with an event written by an older schema are taken as they are: older writers projected differently
(the first cut left submitted_at empty, version 4 indexed no steps)."""


@dataclass
class ProjectionReport:
    """The first difference found (None: the read models are what the events imply)."""

    jobs_checked: int = 0
    unchecked: int = 0  # jobs taken as they are (older schema, or their submitted row archived)
    difference: str | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)


def check_projections(conn: sqlite3.Connection) -> ProjectionReport:
    """Recompute `jobs` and `job_search` from the events rows of `conn` (inside its read transaction)."""
    report = ProjectionReport()
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrations.migrate(memory)
        jobs_columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
        taken = _taken_as_they_are(conn)
        _seed(conn, memory, jobs_columns, taken)
        report.unchecked = len(taken)
        memory.execute("BEGIN")
        replay(conn, memory, skip=taken)
        memory.execute("COMMIT")
        _compare_jobs(conn, memory, jobs_columns, report)
        if report.difference is None:
            _compare_search(conn, memory, report)
    finally:
        memory.close()
    return report


def replay(source: sqlite3.Connection, target: sqlite3.Connection, skip: Set[str] = frozenset()) -> int:
    """Project every events row of `source` (seq order) into `target`'s read models, as the writer did;
    returns how many rows were replayed. Rows of the jobs in `skip` are left out."""
    search = SearchRows()
    count = 0
    cursor = source.execute("SELECT * FROM events ORDER BY seq")
    names = [d[0] for d in cursor.description]
    for values in cursor:
        event = dict(zip(names, values, strict=True))
        if event["job_id"] in skip:
            continue
        text = event["payload"]
        event["payload"] = codec.loads(text) if text else {}
        project(target, event, text, search)
        count += 1
    search.flush(target)
    return count


def _taken_as_they_are(conn: sqlite3.Connection) -> set[str]:
    """Jobs whose rows cannot be recomputed here: an event of an older schema, or (in a compacted file)
    the submitted event archived."""
    taken = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT job_id FROM events WHERE job_id IS NOT NULL"
            " AND (schema_version IS NULL OR schema_version < ?)",
            (CHECKED_FROM_SCHEMA,),
        )
    }
    if conn.execute("SELECT 1 FROM checkpoints LIMIT 1").fetchone() is not None:
        taken |= {
            r[0]
            for r in conn.execute(
                "SELECT job_id FROM jobs WHERE job_id NOT IN"
                " (SELECT job_id FROM events WHERE kind = 'submitted' AND job_id IS NOT NULL)"
            )
        }
    return taken


def _seed(conn: sqlite3.Connection, memory: sqlite3.Connection, columns: list[str], taken: set[str]) -> None:
    """Copy the jobs and search rows of the `taken` jobs as they are."""
    names, marks = ", ".join(columns), ", ".join("?" for _ in columns)
    for job_id in sorted(taken):
        row = conn.execute(f"SELECT {names} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            continue
        cur = memory.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(row))
        found = conn.execute(
            "SELECT description, plan, notes FROM job_search WHERE job_id = ?", (job_id,)
        ).fetchone()
        if found is not None:
            memory.execute(
                "INSERT INTO job_search (rowid, job_id, description, plan, notes) VALUES (?, ?, ?, ?, ?)",
                (cur.lastrowid, job_id, *found),
            )


def _compare_jobs(
    conn: sqlite3.Connection, memory: sqlite3.Connection, columns: list[str], report: ProjectionReport
) -> None:
    names = ", ".join(columns)
    stored = {r[0]: tuple(r) for r in conn.execute(f"SELECT {names} FROM jobs ORDER BY job_id")}
    derived = {r[0]: tuple(r) for r in memory.execute(f"SELECT {names} FROM jobs ORDER BY job_id")}
    report.jobs_checked = len(derived) - report.unchecked
    for job_id in sorted(stored.keys() | derived.keys()):
        have, want = stored.get(job_id), derived.get(job_id)
        if have == want:
            continue
        report.job_id = job_id
        if want is None:
            report.difference = f"jobs row {job_id!r} has no events behind it (inserted)"
        elif have is None:
            report.difference = f"the jobs row of {job_id!r} is missing (deleted)"
        else:
            column = next(c for c, a, b in zip(columns, have, want, strict=True) if a != b)
            report.difference = (
                f"jobs row {job_id!r}: {column} is {_short(have, columns, column)}, its events say "
            )
            report.difference += _short(want, columns, column)
        return


def _compare_search(conn: sqlite3.Connection, memory: sqlite3.Connection, report: ProjectionReport) -> None:
    sql = "SELECT job_id, description, plan, notes FROM job_search ORDER BY job_id"
    stored = {r[0]: tuple(r) for r in conn.execute(sql)}
    derived = {r[0]: tuple(r) for r in memory.execute(sql)}
    for job_id in sorted(stored.keys() | derived.keys()):
        have, want = stored.get(job_id), derived.get(job_id)
        if have != want:
            report.job_id = job_id
            if have is None or want is None:
                report.difference = (
                    f"the search row of {job_id!r} is {'missing' if have is None else 'extra'}"
                )
            else:
                column = next(
                    c for c, a, b in zip(_SEARCH_COLUMNS, have[1:], want[1:], strict=True) if a != b
                )
                report.difference = f"search row {job_id!r}: its {column} is not what the events say"
            return


def _short(row: tuple[object, ...], columns: list[str], column: str) -> str:
    text = repr(row[columns.index(column)])
    return text if len(text) <= 60 else text[:57] + "..."
