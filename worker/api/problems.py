"""Errors as RFC 9457 problem details (`application/problem+json`) with plangate's codes."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.errors import (
    BadRequest,
    JobNotFound,
    NotCancellable,
    NotReviewable,
    PlangateError,
    QueueUnavailable,
    Unauthenticated,
)

PROBLEM_TYPE = "application/problem+json"
_TYPE_BASE = "https://plangate.dev/problems/"  # documented in docs/api.md; not fetched by anyone
RETRY_AFTER_UNAVAILABLE_S = 2


class Problem(BaseModel):
    """An RFC 9457 problem: `code` is plangate's word for it (e.g. `unknown_agent`, `quota_exceeded`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


class ApiProblem(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    503: "Service unavailable",
}


def problem_body(
    status: int, code: str, detail: str, *, errors: list[dict[str, Any]] | None = None
) -> Problem:
    """The problem object itself (a batch item carries one)."""
    return Problem(
        type=_TYPE_BASE + code,
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        errors=errors,
    )


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body = problem_body(status, code, detail, errors=errors)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_TYPE
    )


def _of_error(exc: PlangateError) -> tuple[int, str, dict[str, str]]:
    if isinstance(exc, JobNotFound):
        return 404, "not_found", {}
    if isinstance(exc, NotCancellable | NotReviewable):
        return 409, "conflict", {}
    if isinstance(exc, BadRequest):
        return 400, "bad_request", {}
    if isinstance(exc, Unauthenticated):
        return 401, "unauthenticated", {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, QueueUnavailable):
        return 503, "unavailable", {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}
    return 400, "bad_request", {}


def install(app: Any) -> None:
    """Answer every error the app raises as a problem."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers)

    @app.exception_handler(PlangateError)
    async def _plangate(request: Request, exc: PlangateError) -> JSONResponse:
        status, code, headers = _of_error(exc)
        return problem(status, code, str(exc), headers=headers)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}
        return problem(503, "unavailable", "the queue's Redis server cannot be reached", headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid"
        return problem(422, "bad_request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return problem(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))
