"""The agent template catalogue in the ledger's SQLite file: published versions (plain rows and JSON; what
a template means is governance's business), a full-text index ranked by bm25, ratings, trusted publisher
keys, and the figures of a version computed from the ledger's own job rows.

Synchronous functions on a `sqlite3` connection (the caller runs them off its event loop). A published
version is immutable: `publish` inserts, never replaces; only its yanked flag changes.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import migrations
from ledger.errors import LedgerError
from plangate_base import clock, codec
from plangate_base.vocabulary import Decision, EventKind, JobState

# The name column counts most: a template named for the query beats one that mentions it.
_BM25_WEIGHTS = (10.0, 4.0, 1.0, 3.0)  # name, summary, description, tags
_WORD = re.compile(r"\w+", re.UNICODE)
# The events that set an agent's record: from each one on, its jobs count for the template it names.
_RECORD_KINDS = (EventKind.AGENT_SAVED, EventKind.TEMPLATE_INSTALLED, EventKind.TEMPLATE_UPGRADED)


class CatalogueError(LedgerError):
    """A catalogue write the catalogue refuses (a version published already, an unknown version)."""


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One published version, as stored."""

    name: str
    version: str
    major: int
    hash: str
    content: dict[str, Any]
    summary: str
    tier: int
    side_effects: list[str]
    signer: str = ""
    signature: str = ""
    published_by: str = ""
    published_at: str = ""
    yanked: bool = False
    yanked_reason: str = ""

    def listed(self) -> dict[str, Any]:
        """The row without its content, as `templates list` shows it."""
        return {
            "name": self.name,
            "version": self.version,
            "hash": self.hash,
            "summary": self.summary,
            "tier": self.tier,
            "side_effects": self.side_effects,
            "signer": self.signer,
            "published_by": self.published_by,
            "published_at": self.published_at,
            "yanked": self.yanked,
        }


@dataclass(frozen=True, slots=True)
class SearchText:
    """The columns of a template's full-text row."""

    name: str
    summary: str
    description: str
    tags: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: a template's latest installable version and its bm25 score (lower is better)."""

    name: str
    version: str
    summary: str
    tier: int
    side_effects: list[str]
    score: float
    ratings: dict[str, Any] = field(default_factory=dict)


@contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """The ledger file, migrated, for catalogue calls (autocommit; each write is its own transaction)."""
    migrations.migrate_file(path)
    conn = sqlite3.connect(Path(path), isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


_COLUMNS = (
    "name, version, major, hash, content, summary, tier, side_effects, signer, signature, published_by, "
    "published_at, yanked, yanked_reason"
)


def _row(r: sqlite3.Row) -> VersionRow:
    return VersionRow(
        name=r["name"],
        version=r["version"],
        major=r["major"],
        hash=r["hash"],
        content=codec.loads(r["content"]),
        summary=r["summary"],
        tier=r["tier"],
        side_effects=codec.loads(r["side_effects"]),
        signer=r["signer"],
        signature=r["signature"],
        published_by=r["published_by"],
        published_at=r["published_at"],
        yanked=bool(r["yanked"]),
        yanked_reason=r["yanked_reason"],
    )


def versions(conn: sqlite3.Connection, name: str) -> list[VersionRow]:
    """Every published version of a template, in publication order."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM template_versions WHERE name = ? ORDER BY rowid", (name,)
    ).fetchall()
    return [_row(r) for r in rows]


def get(conn: sqlite3.Connection, name: str, version: str) -> VersionRow | None:
    """One published version, or None."""
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM template_versions WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    return None if r is None else _row(r)


def names(conn: sqlite3.Connection) -> list[str]:
    """Every template's name, sorted."""
    return [r[0] for r in conn.execute("SELECT name FROM templates ORDER BY name")]


def latest_rows(conn: sqlite3.Connection) -> list[VersionRow]:
    """Each template's latest installable version (a template with none installable is left out)."""
    rows = conn.execute(
        f"SELECT {', '.join('v.' + c.strip() for c in _COLUMNS.split(','))} FROM templates t "
        "JOIN template_versions v ON v.name = t.name AND v.version = t.latest ORDER BY t.name"
    ).fetchall()
    return [_row(r) for r in rows]


def publish(conn: sqlite3.Connection, row: VersionRow, text: SearchText, latest: str | None) -> bool:
    """Insert a version (False when this exact content is published already) and make `latest` (the
    caller's resolution of the template's newest installable version) the one search shows."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        existing = conn.execute(
            "SELECT hash FROM template_versions WHERE name = ? AND version = ?", (row.name, row.version)
        ).fetchone()
        if existing is not None:
            conn.execute("ROLLBACK")
            if existing[0] != row.hash:
                raise CatalogueError(f"{row.name}@{row.version} is published already with other content")
            return False
        conn.execute(
            f"INSERT INTO template_versions ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            (
                row.name, row.version, row.major, row.hash, codec.dumps(row.content), row.summary, row.tier,
                codec.dumps(row.side_effects), row.signer, row.signature, row.published_by,
                row.published_at or clock.now_iso(), 0, "",
            ),
        )  # fmt: skip
        _set_latest(conn, row.name, latest, text)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return True


def set_yanked(
    conn: sqlite3.Connection, name: str, version: str, yanked: bool, reason: str, latest: str | None,
    text: SearchText | None,
) -> None:  # fmt: skip
    """Yank (or restore) a version and point search at the template's newest installable one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = conn.execute(
            "UPDATE template_versions SET yanked = ?, yanked_reason = ? WHERE name = ? AND version = ?",
            (int(yanked), reason, name, version),
        ).rowcount
        if not changed:
            raise CatalogueError(f"no published version {name}@{version}")
        _set_latest(conn, name, latest, text)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _set_latest(conn: sqlite3.Connection, name: str, latest: str | None, text: SearchText | None) -> None:
    tier, effects = None, "[]"
    if latest is not None:
        found = conn.execute(
            "SELECT tier, side_effects FROM template_versions WHERE name = ? AND version = ?", (name, latest)
        ).fetchone()
        tier, effects = found[0], found[1]
    conn.execute(
        "INSERT INTO templates (name, latest, tier, side_effects) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET latest = excluded.latest, tier = excluded.tier, "
        "side_effects = excluded.side_effects",
        (name, latest, tier, effects),
    )
    template_id = conn.execute("SELECT template_id FROM templates WHERE name = ?", (name,)).fetchone()[0]
    conn.execute("DELETE FROM template_search WHERE rowid = ?", (template_id,))
    if latest is not None and text is not None:
        conn.execute(
            "INSERT INTO template_search (rowid, name, summary, description, tags) VALUES (?, ?, ?, ?, ?)",
            (template_id, text.name, text.summary, text.description, text.tags),
        )


def match_expression(query: str) -> str:
    """A user's words as an FTS5 query: every word must occur (stemmed), the last one as a prefix too
    (what is being typed); no operator syntax reaches FTS5."""
    words = _WORD.findall(query)
    if not words:
        raise CatalogueError(f"nothing to search for in {query!r}")
    *whole, last = words
    return " ".join([*(f'"{w}"' for w in whole), f'"{last}"*'])


def search(
    conn: sqlite3.Connection, query: str, *, tier: int | None = None, side_effect: str | None = None,
    limit: int = 20,
) -> list[Hit]:  # fmt: skip
    """Templates whose latest installable version matches the words; optionally of one tier, or allowing
    one side effect. A template named exactly the query comes first; then those whose name, summary or
    tags hold the words, best bm25 first (name counts most, then tags, summary); then those that only
    mention them in their description. Ranking that first group alone keeps a common word cheap: bm25
    scores every row that matches, and far fewer rows match a template's heading than its description."""
    words = match_expression(query)
    hits = _ranked(conn, f"{{{' '.join(_HEADING)}}} : ({words})", query, tier, side_effect, limit)
    if len(hits) < limit:
        seen = {h.name for h in hits}
        more = _ranked(conn, words, query, tier, side_effect, limit + len(hits))
        hits += [h for h in more if h.name not in seen][: limit - len(hits)]
    return hits


_HEADING = ("name", "summary", "tags")


def _ranked(
    conn: sqlite3.Connection, expression: str, query: str, tier: int | None, side_effect: str | None,
    limit: int,
) -> list[Hit]:  # fmt: skip
    terms, params = ["template_search MATCH ?"], [expression]
    if tier is not None:
        terms.append("t.tier = ?")
        params.append(tier)
    if side_effect is not None:
        terms.append("EXISTS (SELECT 1 FROM json_each(t.side_effects) WHERE value = ?)")
        params.append(side_effect)
    weights = ", ".join(map(str, _BM25_WEIGHTS))
    rows = conn.execute(
        "SELECT t.name, t.latest, t.tier, t.side_effects, v.summary,"
        f" bm25(template_search, {weights}) AS score"
        " FROM template_search JOIN templates t ON t.template_id = template_search.rowid"
        " JOIN template_versions v ON v.name = t.name AND v.version = t.latest"
        f" WHERE {' AND '.join(terms)} ORDER BY t.name = ? DESC, score LIMIT ?",
        (*params, query.strip().lower(), limit),
    ).fetchall()
    return [
        Hit(r["name"], r["latest"], r["summary"], r["tier"], codec.loads(r["side_effects"]), r["score"])
        for r in rows
    ]


# --- ratings ----------------------------------------------------------------------------


def rate(conn: sqlite3.Connection, name: str, version: str, rater: str, stars: int, comment: str) -> None:
    """Record (or replace) one rater's rating of a version: one per rater."""
    if get(conn, name, version) is None:
        raise CatalogueError(f"no published version {name}@{version}")
    if not 1 <= stars <= 5:
        raise CatalogueError(f"a rating is 1 to 5 stars, not {stars}")
    conn.execute(
        "INSERT INTO template_ratings (name, version, rater, stars, comment, rated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, version, rater) DO UPDATE SET"
        " stars = excluded.stars, comment = excluded.comment, rated_at = excluded.rated_at",
        (name, version, rater, stars, comment, clock.now_iso()),
    )


def ratings(conn: sqlite3.Connection, name: str, version: str | None = None) -> dict[str, Any]:
    """The count, mean and per-star counts of a version's ratings (every version's when None), and the
    latest comments."""
    where, params = ("name = ? AND version = ?", (name, version)) if version else ("name = ?", (name,))
    rows = conn.execute(
        f"SELECT stars, count(*) FROM template_ratings WHERE {where} GROUP BY stars", params
    ).fetchall()
    stars = {str(s): 0 for s in range(1, 6)} | {str(r[0]): r[1] for r in rows}
    count = sum(stars.values())
    mean = sum(int(s) * n for s, n in stars.items()) / count if count else None
    comments = [
        {"rater": r[0], "version": r[1], "stars": r[2], "comment": r[3], "at": r[4]}
        for r in conn.execute(
            f"SELECT rater, version, stars, comment, rated_at FROM template_ratings WHERE {where}"
            " AND comment != '' ORDER BY rated_at DESC LIMIT 5",
            params,
        )
    ]
    return {
        "count": count,
        "mean": None if mean is None else round(mean, 2),
        "stars": stars,
        "comments": comments,
    }


# --- trusted publisher keys -------------------------------------------------------------


def trust(conn: sqlite3.Connection, key_id: str, publisher: str, public_key: str, by: str) -> None:
    """Trust a publisher's public key (PEM) under its key id."""
    conn.execute(
        "INSERT INTO template_publishers (key_id, publisher, public_key, added_by, added_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET publisher = excluded.publisher,"
        " public_key = excluded.public_key, added_by = excluded.added_by, added_at = excluded.added_at",
        (key_id, publisher, public_key, by, clock.now_iso()),
    )


def distrust(conn: sqlite3.Connection, key_id: str) -> bool:
    """Stop trusting a key; False when it was not trusted."""
    return conn.execute("DELETE FROM template_publishers WHERE key_id = ?", (key_id,)).rowcount > 0


def trusted(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """Trusted keys: key id -> (publisher, public key PEM)."""
    rows = conn.execute("SELECT key_id, publisher, public_key FROM template_publishers").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


# --- figures from the ledger ------------------------------------------------------------

_RUNS = f"""
WITH marks AS (
    SELECT agent_id, created_at AS since,
           lead(created_at) OVER (PARTITION BY agent_id ORDER BY seq) AS until,
           json_extract(payload, '$.record.template.name') AS t_name,
           json_extract(payload, '$.record.template.version') AS t_version
    FROM events WHERE kind IN ({", ".join("?" * len(_RECORD_KINDS))}) AND agent_id IS NOT NULL
),
runs AS (
    SELECT j.job_id, j.state, j.decision, j.reason, j.output FROM jobs j JOIN marks m
      ON j.agent_id = m.agent_id AND j.submitted_at >= m.since
     AND (m.until IS NULL OR j.submitted_at < m.until)
    WHERE m.t_name = ? AND m.t_version = ?
)
"""


def figures(conn: sqlite3.Connection, name: str, version: str) -> dict[str, Any]:
    """What agents on this version did, from the ledger's job rows: jobs run, the decision mix, the
    escalation rate, the review approval and rejection rates, the failure rate by code, mean confidence.

    A job counts for the version its agent's record named when the job was submitted."""
    params = (*(str(k) for k in _RECORD_KINDS), name, version)
    by_state = dict(
        conn.execute(_RUNS + "SELECT state, count(*) FROM runs GROUP BY state", params).fetchall()
    )
    done = JobState.DONE.value
    decisions = dict(
        conn.execute(
            _RUNS + "SELECT decision, count(*) FROM runs WHERE state = ? GROUP BY decision", (*params, done)
        ).fetchall()
    )
    failures = dict(
        conn.execute(
            _RUNS + "SELECT coalesce(reason, ''), count(*) FROM runs WHERE state = ? GROUP BY reason",
            (*params, JobState.FAILED.value),
        ).fetchall()
    )
    confidence = conn.execute(
        _RUNS + "SELECT avg(json_extract(output, '$.output.confidence')) FROM runs WHERE state = ?",
        (*params, done),
    ).fetchone()[0]
    reviews = dict(
        conn.execute(
            _RUNS + "SELECT e.kind, count(DISTINCT e.job_id) FROM events e JOIN runs r ON r.job_id = e.job_id"
            " WHERE e.kind IN (?, ?) GROUP BY e.kind",
            (*params, EventKind.REVIEW_APPROVED.value, EventKind.REVIEW_REJECTED.value),
        ).fetchall()
    )
    jobs = sum(by_state.values())
    finished = jobs - by_state.get(JobState.QUEUED.value, 0) - by_state.get(JobState.RUNNING.value, 0)
    escalated = decisions.get(Decision.ESCALATE.value, 0)
    n_done = by_state.get(done, 0)

    def rate_of(n: int, of: int) -> float | None:
        return round(n / of, 4) if of else None

    return {
        "jobs": jobs,
        "finished": finished,
        "states": by_state,
        "decisions": decisions,
        "escalation_rate": rate_of(escalated, n_done),
        "review_approval_rate": rate_of(reviews.get(EventKind.REVIEW_APPROVED.value, 0), escalated),
        "review_rejection_rate": rate_of(reviews.get(EventKind.REVIEW_REJECTED.value, 0), escalated),
        "failures": failures,
        "failure_rate": {code: rate_of(n, finished) for code, n in failures.items()},
        "mean_confidence": None if confidence is None else round(float(confidence), 4),
    }
