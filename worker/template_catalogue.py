"""The template catalogue as the CLI and the API use it: governance decides (parse, hash, publish rule,
resolve), the ledger stores (ledger/catalogue.py), signatures are checked against trusted publisher keys.

Each call opens the ledger file in a thread (SQLite is synchronous), so the event loop keeps running.
The built-in templates are published on first use, signed by `builtin`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from governance.semver import parse_version
from governance.templates import (
    BUILTIN_SIGNER,
    BUILTIN_TEMPLATES,
    Template,
    TemplateError,
    builtin_template,
    publish_problem,
    resolve,
)
from ledger import catalogue
from ledger.catalogue import CatalogueError, SearchText, VersionRow
from plangate_base import clock
from worker.errors import BadRequest
from worker.template_signing import (
    Signature,
    SignatureRefused,
    UntrustedSignature,
    key_id,
    load_public,
    verify,
)

_T = TypeVar("_T")


def split_spec(spec: str) -> tuple[str, str]:
    """`NAME[@RANGE]` as (name, range); the range is `*` (the latest installable) when absent."""
    name, _, wanted = spec.strip().partition("@")
    if not name:
        raise BadRequest(f"not a template spec: {spec!r} (NAME or NAME@RANGE, e.g. llm-planner@^1)")
    return name, wanted.strip() or "*"


def _search_text(t: Template) -> SearchText:
    cols = t.search_text()
    return SearchText(cols["name"], cols["summary"], cols["description"], cols["tags"])


def _latest(rows: list[VersionRow]) -> str | None:
    """The newest installable version: the highest release not yanked, else the highest pre-release."""
    live = {r.version: r.yanked for r in rows}
    best = resolve(live, "*")
    if best is None:
        candidates = [parse_version(r.version) for r in rows if not r.yanked]
        best = str(max(candidates, key=lambda v: v.key)) if candidates else None
    return best


def version_row(template: Template, *, signer: str, signature: str, by: str) -> VersionRow:
    """The catalogue row of a template version about to be published."""
    return VersionRow(
        name=template.name,
        version=template.version,
        major=template.semver.major,
        hash=template.content_hash(),
        content=template.model_dump(mode="json"),
        summary=template.summary,
        tier=template.governance.tier,
        side_effects=list(template.governance.allowed_side_effects),
        signer=signer,
        signature=signature,
        published_by=by,
        published_at=clock.now_iso(),
    )


def publish_sync(
    conn: sqlite3.Connection, template: Template, *, signer: str, signature: str, by: str
) -> bool:
    """Publish one version on an open catalogue (the publish rule checked first); False: already there."""
    rows = catalogue.versions(conn, template.name)
    problem = publish_problem({r.version: r.hash for r in rows}, template)
    if problem:
        raise BadRequest(problem)
    row = version_row(template, signer=signer, signature=signature, by=by)
    latest = _latest([*rows, row])
    try:
        return catalogue.publish(conn, row, _search_text(template), latest)
    except CatalogueError as exc:
        raise BadRequest(str(exc)) from exc


def _ensure_builtins(conn: sqlite3.Connection) -> None:
    for name in BUILTIN_TEMPLATES:
        template = builtin_template(name)
        if catalogue.get(conn, name, template.version) is None:
            publish_sync(conn, template, signer=BUILTIN_SIGNER, signature="", by=BUILTIN_SIGNER)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A version a spec selected: its row and the template it holds."""

    row: VersionRow
    template: Template


class TemplateCatalogue:
    """Publish, list, show, search, yank, rate and trust, over the ledger file at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            with catalogue.opened(self.path) as conn:
                _ensure_builtins(conn)
                return work(conn)

        try:
            return await asyncio.to_thread(call)
        except (CatalogueError, TemplateError) as exc:
            raise BadRequest(str(exc)) from exc

    async def publish(
        self, template: Template, signature: Signature | None, *, by: str, allow_unsigned: bool = False
    ) -> tuple[VersionRow, bool]:
        """Publish a version; refused when its signature is tampered or untrusted, or when it is unsigned
        and `allow_unsigned` is not given. Returns the stored row and whether it is new."""

        def work(conn: sqlite3.Connection) -> tuple[VersionRow, bool]:
            signer = ""
            if signature is not None:
                try:
                    signer = verify(template.content_hash(), signature, catalogue.trusted(conn))
                except UntrustedSignature:
                    if not allow_unsigned:
                        raise
            elif not allow_unsigned:
                raise UntrustedSignature(
                    f"{template.name}@{template.version} is unsigned (sign it with "
                    "`plangate templates sign`, or publish with --allow-unsigned)"
                )
            new = publish_sync(
                conn, template, signer=signer, signature=signature.to_json() if signature else "", by=by
            )
            row = catalogue.get(conn, template.name, template.version)
            assert row is not None  # just written or there already
            return row, new

        return await self._run(work)

    async def listing(self) -> list[dict[str, Any]]:
        """Each template's latest installable version, with its versions and ratings."""

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for name in catalogue.names(conn):
                rows = catalogue.versions(conn, name)
                latest = _latest(rows)
                row = next((r for r in rows if r.version == latest), rows[-1])
                out.append(
                    {
                        **row.listed(),
                        "versions": [r.version + (" (yanked)" if r.yanked else "") for r in rows],
                        "ratings": _short(catalogue.ratings(conn, name)),
                    }
                )
            return out

        return await self._run(work)

    async def resolve(self, spec: str, *, for_install: bool = True) -> Resolved:
        """The version a spec selects (BadRequest when none); an install refuses a yanked version."""

        def work(conn: sqlite3.Connection) -> Resolved:
            return resolve_sync(conn, spec, for_install=for_install)

        return await self._run(work)

    async def show(self, spec: str) -> dict[str, Any]:
        """A version's content, row, ratings and figures from the ledger, and the template's versions."""

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            found = resolve_sync(conn, spec, for_install=False)
            row = found.row
            return {
                **row.listed(),
                "yanked_reason": row.yanked_reason,
                "template": row.content,
                "versions": [
                    {"version": r.version, "yanked": r.yanked, "hash": r.hash}
                    for r in catalogue.versions(conn, row.name)
                ],
                "ratings": catalogue.ratings(conn, row.name, row.version),
                "figures": catalogue.figures(conn, row.name, row.version),
            }

        return await self._run(work)

    async def search(
        self, query: str, *, tier: int | None = None, side_effect: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Full-text search (bm25) over each template's latest installable version, with its ratings and
        figures."""

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            hits = catalogue.search(conn, query, tier=tier, side_effect=side_effect, limit=limit)
            return [
                {
                    "name": h.name,
                    "version": h.version,
                    "summary": h.summary,
                    "tier": h.tier,
                    "side_effects": h.side_effects,
                    "score": h.score,
                    "ratings": _short(catalogue.ratings(conn, h.name, h.version)),
                    "figures": _short_figures(catalogue.figures(conn, h.name, h.version)),
                }
                for h in hits
            ]

        return await self._run(work)

    async def yank(self, name: str, version: str, *, reason: str, undo: bool = False) -> None:
        """Hide a version from new installs (agents on it keep resolving it), or restore it."""

        def work(conn: sqlite3.Connection) -> None:
            rows = catalogue.versions(conn, name)
            if not any(r.version == version for r in rows):
                raise BadRequest(f"no published version {name}@{version}")
            after = [r if r.version != version else _with_yanked(r, not undo) for r in rows]
            latest = _latest(after)
            text = None
            if latest is not None:
                text = _search_text(
                    Template.model_validate(next(r for r in after if r.version == latest).content)
                )
            catalogue.set_yanked(conn, name, version, not undo, reason, latest, text)

        await self._run(work)

    async def rate(self, spec: str, *, rater: str, stars: int, comment: str) -> dict[str, Any]:
        """Rate a version 1-5 (one rating per rater; again replaces it); returns its ratings."""

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            row = resolve_sync(conn, spec, for_install=False).row
            catalogue.rate(conn, row.name, row.version, rater, stars, comment)
            return {
                "name": row.name,
                "version": row.version,
                **catalogue.ratings(conn, row.name, row.version),
            }

        return await self._run(work)

    async def trust(self, publisher: str, public_pem: str, *, by: str) -> str:
        """Trust a publisher's Ed25519 public key; returns its key id."""
        ident = key_id(load_public(public_pem))
        await self._run(lambda conn: catalogue.trust(conn, ident, publisher, public_pem, by))
        return ident

    async def distrust(self, ident: str) -> bool:
        """Stop trusting a key."""
        return await self._run(lambda conn: catalogue.distrust(conn, ident))

    async def trusted(self) -> dict[str, tuple[str, str]]:
        """The trusted keys: key id -> (publisher, PEM)."""
        return await self._run(catalogue.trusted)

    async def check_installable(self, found: Resolved, *, allow_unsigned: bool) -> str:
        """The signer of a version about to be installed; SignatureRefused when its stored content no
        longer has its hash, or it is unsigned or signed by a key no admin trusts (unless allowed)."""

        def work(conn: sqlite3.Connection) -> str:
            return installable_signer(conn, found, allow_unsigned=allow_unsigned)

        return await self._run(work)


def installable_signer(conn: sqlite3.Connection, found: Resolved, *, allow_unsigned: bool) -> str:
    """See TemplateCatalogue.check_installable."""
    row, digest = found.row, found.template.content_hash()
    if digest != row.hash:
        raise SignatureRefused(f"tampered: {row.name}@{row.version}'s stored content is not {row.hash}")
    if row.signer == BUILTIN_SIGNER and builtin_template(row.name).content_hash() == digest:
        return BUILTIN_SIGNER
    if row.signature:
        try:
            return verify(digest, Signature.from_json(row.signature), catalogue.trusted(conn))
        except UntrustedSignature:
            if not allow_unsigned:
                raise
            return ""
    if not allow_unsigned:
        raise UntrustedSignature(f"{row.name}@{row.version} is unsigned (install with --allow-unsigned)")
    return ""


def resolve_sync(conn: sqlite3.Connection, spec: str, *, for_install: bool) -> Resolved:
    """The version `NAME[@RANGE]` selects on an open catalogue; BadRequest when none does."""
    name, wanted = split_spec(spec)
    rows = catalogue.versions(conn, name)
    if not rows:
        raise BadRequest(f"no template named {name!r} (`plangate templates list`)")
    picked = resolve({r.version: r.yanked for r in rows}, wanted)
    row = next((r for r in rows if r.version == picked), None)
    if row is None:
        raise BadRequest(f"no installable version of {name} matches {wanted!r}")
    if for_install and row.yanked:
        raise BadRequest(
            f"{name}@{row.version} is yanked ({row.yanked_reason or 'no reason given'}); pick another"
        )
    return Resolved(row, Template.model_validate(row.content))


def _with_yanked(row: VersionRow, yanked: bool) -> VersionRow:
    return replace(row, yanked=yanked)


def _short(ratings: dict[str, Any]) -> dict[str, Any]:
    return {"count": ratings["count"], "mean": ratings["mean"]}


def _short_figures(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("jobs", "escalation_rate", "mean_confidence")
    return {k: figures[k] for k in keys}
