"""POST /v1/jobs, the API's hot path, without FastAPI's per-request machinery.

FastAPI spends more on one submit (matching the path against every route, solving the route's
dependencies, validating the body through its own layers, re-validating the returned model) than the
submit itself costs. This middleware answers a submit FastAPI would accept by doing exactly what the
route does, with the route's own parts: the Authenticator, the route's `submit` function, the same
problem answers. Whatever it is not sure of (no JSON content type, a body that does not validate, an
Idempotency-Key out of bounds) it passes on untouched to the FastAPI route, which answers it as
documented; it decides that before anything is read from Redis, so no request is authenticated (or
rate-counted) twice. The route stays the definition: the OpenAPI document, the contract test and
every refusal come from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from governance.api_tokens import Principal
from worker.api.limits import replay
from worker.api.problems import problem_for
from worker.job_models import JobStatus

Submit = Callable[[Request, Principal, dict[str, Any], str | None], Awaitable[JobStatus]]

PATH = "/v1/jobs"
_IDEMPOTENCY_KEY_MAX = 200  # the route's Header(max_length=200)
_JSON = b"application/json"


class FastSubmit:
    """ASGI middleware: serves a well-formed POST to PATH itself; everything else goes to `app`."""

    def __init__(self, app: Any, *, model: type[BaseModel], submit: Submit, route: Any) -> None:
        self.app = app
        self._model = model
        self._submit = submit
        self._route = route  # the FastAPI route it stands for (metrics label it by its template)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        content_type = headers.get(b"content-type", b"")
        idempotency_key = headers.get(b"idempotency-key")
        if content_type.split(b";", 1)[0].strip().lower() != _JSON or (
            idempotency_key is not None and len(idempotency_key) > _IDEMPOTENCY_KEY_MAX
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            submission = self._model.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replay(body, receive), send)  # FastAPI answers its 422
            return
        scope["route"] = self._route
        request = Request(scope, receive)
        try:
            principal = await request.app.state.auth.principal(request, _credentials(headers))
            status = await self._submit(
                request,
                principal,
                submission.model_dump(exclude_unset=True),
                None if idempotency_key is None else idempotency_key.decode("latin-1"),
            )
        except Exception as exc:
            answer = problem_for(exc)
            if answer is None:
                raise  # as from the route: the server-error middleware answers 500
            await answer(scope, receive, send)
            return
        payload = status.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(payload)).encode()),
                    (b"location", f"{PATH}/{status.job_id}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by lower-case name, the first of each (as Starlette's `headers.get`)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        found.setdefault(name, value)
    return found


def _credentials(headers: dict[bytes, bytes]) -> HTTPAuthorizationCredentials | None:
    """The bearer token, as FastAPI's HTTPBearer(auto_error=False) reads it."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
