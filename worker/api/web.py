"""The live view on the API app, under /web: sign in with a token, see what that token may see.

Sign-in: a form posts the token to /web/login (or a one-time link from POST /v1/web/login-links is
opened); the answer sets an HttpOnly, SameSite=Strict session cookie whose session, kept in Redis with
a TTL, holds the token's digest, never the token. Every /web route resolves the session to the token's
principal again on each request, so a revoked token signs its sessions out at once. Writes (review
decisions) need the session and an `X-Plangate-Web` header, which no cross-site form can send.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, Header, Query, Request, Response
from fastapi.responses import RedirectResponse

from governance.api_tokens import Principal, Scope, token_digest
from plangate_base import codec
from plangate_base.vocabulary import Decision, EventKind, JobState, StreamKind
from worker.admin import api_tokens
from worker.api.models import ReviewNote
from worker.api.problems import ApiProblem
from worker.cli.stats import DEFAULT_MINUTES
from worker.keys import Keys
from worker.web.assets import APP_CSS, APP_JS, INDEX_HTML, LOGIN_HTML, Asset
from worker.web.live_view import SECURITY_HEADERS, LiveView

WEB = "/web"
SESSION_COOKIE = "plangate_session"
SESSION_TTL_S = 8 * 3600
LOGIN_LINK_TTL_S = 60
WRITE_HEADER = "X-Plangate-Web"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# (module level: FastAPI resolves the routes' string annotations in this module's globals)
Session = Annotated[str | None, Cookie(alias=SESSION_COOKIE)]


def _asset(asset: Asset) -> Response:
    return Response(asset.body, media_type=asset.content_type, headers=SECURITY_HEADERS)


def web_router(keys: Keys) -> APIRouter:
    """The /web routes (pages, their JSON, sign-in and out, review decisions)."""
    router = APIRouter(prefix=WEB, include_in_schema=False)

    async def viewer(request: Request, session: str | None) -> Principal:
        """The signed-in principal; 401 without a live session (the page then goes to the sign-in)."""
        if session and not _session_id_ok(session):
            session = None
        digest = await request.app.state.redis.get(keys.web_session(session)) if session else None
        principal = await api_tokens(request.app.state.redis, keys).lookup_digest(digest) if digest else None
        if principal is None:
            raise ApiProblem(401, "unauthenticated", "sign in at /web/login")
        return principal

    def view(request: Request) -> LiveView:
        live: LiveView = request.app.state.live_view
        return live

    @router.get("/login")
    async def login_page() -> Response:
        return _asset(LOGIN_HTML)

    @router.post("/login")
    async def login(request: Request, token: Annotated[str, Form(max_length=500)]) -> Response:
        principal = await api_tokens(request.app.state.redis, keys).lookup(token)
        if principal is None:
            page = _asset(LOGIN_HTML)
            page.status_code = 401
            return page
        return await _signed_in(request, token_digest(token), WEB + "/")

    @router.get("/login/{nonce}")
    async def login_link(
        request: Request, nonce: str, next_page: Annotated[str, Query(alias="next", max_length=200)] = "/web/"
    ) -> Response:
        """A one-time link (POST /v1/web/login-links) signs the browser in and goes to `next`."""
        if not _session_id_ok(nonce):
            raise ApiProblem(404, "not_found", "no such sign-in link")
        digest = await request.app.state.redis.getdel(keys.web_login(nonce))
        if digest is None:
            raise ApiProblem(404, "not_found", "this sign-in link was used or has expired")
        if not next_page.startswith(WEB + "/") or "//" in next_page or "\\" in next_page:
            next_page = WEB + "/"
        return await _signed_in(request, digest, next_page)

    async def _signed_in(request: Request, digest: str, to: str) -> Response:
        session = new_session_id()
        await request.app.state.redis.set(keys.web_session(session), digest, ex=SESSION_TTL_S)
        response = RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_TTL_S,
            path=WEB,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request, session: Session = None) -> Response:
        if session and _session_id_ok(session):
            await request.app.state.redis.delete(keys.web_session(session))
        response = RedirectResponse(WEB + "/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path=WEB)
        return response

    @router.get("/")
    async def index(request: Request, session: Session = None) -> Response:
        try:
            await viewer(request, session)
        except ApiProblem:
            return RedirectResponse(WEB + "/login", status_code=303, headers=SECURITY_HEADERS)
        return _asset(INDEX_HTML)

    @router.get("/job/{job_id}")
    async def job_page(request: Request, job_id: str, session: Session = None) -> Response:
        if not _job_id_ok(job_id):
            raise ApiProblem(404, "not_found", "no such page")
        return await index(request, session)

    @router.get("/static/app.js")
    async def app_js() -> Response:
        return _asset(APP_JS)

    @router.get("/static/words.js")
    async def words_js() -> Response:
        return Response(WORDS_JS, media_type="text/javascript; charset=utf-8", headers=SECURITY_HEADERS)

    @router.get("/static/app.css")
    async def app_css() -> Response:
        return _asset(APP_CSS)

    @router.get("/api/me")
    async def me(request: Request, session: Session = None) -> dict[str, Any]:
        return (await viewer(request, session)).public()

    @router.get("/api/jobs")
    async def jobs(request: Request, session: Session = None) -> Response:
        principal = await viewer(request, session)
        return _json(await view(request).jobs(principal.sees))

    @router.get("/api/jobs/{job_id}")
    async def job(request: Request, job_id: str, session: Session = None) -> Response:
        principal = await viewer(request, session)
        if not _job_id_ok(job_id):
            raise ApiProblem(404, "not_found", "no such job")
        return _json(await view(request).job(job_id, principal.sees))

    @router.get("/api/stats")
    async def stats(
        request: Request,
        session: Session = None,
        minutes: Annotated[int, Query(ge=1, le=1440)] = DEFAULT_MINUTES,
    ) -> Response:
        principal = await viewer(request, session)
        if principal.scope not in (Scope.ADMIN, Scope.AUDITOR):
            raise ApiProblem(403, "forbidden", "the queue's numbers are for admin and auditor tokens")
        return _json(await view(request).stats(minutes))

    @router.post("/api/reviews/{job_id}/{verdict}")
    async def decide(
        request: Request,
        job_id: str,
        verdict: str,
        body: ReviewNote,
        session: Session = None,
        csrf: Annotated[str | None, Header(alias=WRITE_HEADER)] = None,
    ) -> Response:
        principal = await viewer(request, session)
        if csrf != "1":
            raise ApiProblem(403, "forbidden", f"a review from the page sends the {WRITE_HEADER} header")
        if verdict not in ("approve", "reject") or not _job_id_ok(job_id):
            raise ApiProblem(404, "not_found", "no such review action")
        if principal.scope is not Scope.REVIEWER or principal.reviewer_id is None:
            raise ApiProblem(403, "forbidden", "reviews need a reviewer's sign-in")
        client = request.app.state.client.scoped(tenant_id=principal.tenant_id)
        desk = await client.authenticated_review_desk(principal.reviewer_id)
        status = await desk.decide(job_id, approve=verdict == "approve", note=body.note)
        return _json(status.model_dump(mode="json"))

    return router


def _words_js() -> str:
    """The words the page compares against (states, kinds, decisions, scopes), from the enums: the page
    spells none of them itself."""

    words = {
        "state": {s.name: s.value for s in JobState},
        "event": {k.name: k.value for k in EventKind},
        "stream": {k.name: k.value for k in StreamKind},
        "decision": {d.name: d.value for d in Decision},
        "scope": {s.name: s.value for s in Scope},
    }
    return f"'use strict';\nconst WORDS = Object.freeze({codec.dumps(words)});\n"


WORDS_JS = _words_js()


def new_session_id() -> str:
    """A random session id or sign-in link nonce (256 bits, letters and digits only)."""
    return secrets.token_hex(32)


def _json(data: Any) -> Response:
    return Response(codec.dumps(data), media_type="application/json", headers=SECURITY_HEADERS)


def _session_id_ok(value: str) -> bool:
    return 20 <= len(value) <= 100 and value.isascii() and value.isalnum()


def _job_id_ok(value: str) -> bool:
    return _JOB_ID.fullmatch(value) is not None
