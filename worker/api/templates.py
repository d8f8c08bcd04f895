"""The template catalogue over HTTP: list, search and show for any token; rating for any token (one rating
per token); publishing for admins. The same checks as `plangate templates` (worker/template_catalogue.py).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from governance.api_tokens import Principal, Scope
from governance.templates import TemplateError, parse_template
from worker.api.auth import require
from worker.api.problems import Problem
from worker.errors import BadRequest
from worker.settings import Settings
from worker.template_catalogue import TemplateCatalogue
from worker.template_signing import Signature

_PREFIX = "/v1/templates"
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}, "description": what}
    for code, what in (
        (400, "bad request (no such template or version, a refused publish)"),
        (401, "no, unknown or revoked token"),
        (403, "the token lacks the scope"),
        (422, "invalid request"),
        (429, "rate limited (Retry-After)"),
        (503, "Redis unreachable (Retry-After)"),
    )
}


class SignatureBody(BaseModel):
    """A publisher's signature over a template's content hash (what `plangate templates sign` writes)."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(max_length=64)
    publisher: str = Field(max_length=200)
    hash: str = Field(max_length=100)
    signature: str = Field(max_length=200)


class Publication(BaseModel):
    """A template version to publish, with its signature (or allow_unsigned)."""

    model_config = ConfigDict(extra="forbid")

    template: dict[str, Any]
    signature: SignatureBody | None = None
    allow_unsigned: bool = False


class Rating(BaseModel):
    """One rating of a version: 1 to 5 stars and a comment."""

    model_config = ConfigDict(extra="forbid")

    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2_000)


def templates_router(settings: Settings, caller: Callable[..., Coroutine[Any, Any, Principal]]) -> APIRouter:
    """The catalogue's routes on the ledger file of `settings`; `caller` is the API's token dependency."""
    router = APIRouter(tags=["templates"])
    catalogue = TemplateCatalogue(settings.ledger_path)
    who = Depends(caller)  # (a local Annotated alias would be a string FastAPI cannot resolve)

    @router.get(_PREFIX, responses=_PROBLEMS, summary="Every template's latest installable version")
    async def list_templates(principal: Principal = who) -> list[dict[str, Any]]:
        """With its versions and its ratings."""
        return await catalogue.listing()

    @router.get(f"{_PREFIX}/search", responses=_PROBLEMS, summary="Full-text search (bm25) of the catalogue")
    async def search_templates(
        q: Annotated[str, Query(min_length=1, max_length=500)],
        tier: Annotated[int | None, Query(ge=0, le=4)] = None,
        side_effect: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        principal: Principal = who,
    ) -> list[dict[str, Any]]:
        """Over name, summary, description and tags; each hit with its ratings and figures."""
        return await catalogue.search(q, tier=tier, side_effect=side_effect, limit=limit)

    @router.get(f"{_PREFIX}/{{name}}", responses=_PROBLEMS, summary="One version, its ratings and figures")
    async def get_template(
        name: str,
        wanted: Annotated[str, Query(alias="range", max_length=200)] = "*",
        principal: Principal = who,
    ) -> dict[str, Any]:
        """The version `range` selects (npm syntax; an exact version finds a yanked one too)."""
        return await catalogue.show(f"{name}@{wanted}")

    @router.post(_PREFIX, responses=_PROBLEMS, summary="Publish a template version (admin)", status_code=201)
    async def publish_template(body: Publication, principal: Principal = who) -> dict[str, Any]:
        """Refused when the version exists with other content (immutable), is not greater than the latest
        of its major line, or its signature is tampered or untrusted (unless allow_unsigned)."""
        require(principal, Scope.ADMIN)
        try:
            template = parse_template(body.template, "the request")
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc
        signature = Signature(**body.signature.model_dump()) if body.signature else None
        row, new = await catalogue.publish(
            template, signature, by=f"api:{principal.token_id}", allow_unsigned=body.allow_unsigned
        )
        return {**row.listed(), "new": new}

    @router.put(
        f"{_PREFIX}/{{name}}/versions/{{version}}/rating",
        responses=_PROBLEMS,
        summary="Rate a version (one rating per token; again replaces it)",
    )
    async def rate_template(
        name: str, version: str, body: Rating, principal: Principal = who
    ) -> dict[str, Any]:
        """Returns the version's ratings."""
        return await catalogue.rate(
            f"{name}@{version}", rater=f"token:{principal.token_id}", stars=body.stars, comment=body.comment
        )

    return router
