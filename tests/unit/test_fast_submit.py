"""Which submits the fast path serves itself and which it hands to the FastAPI route, body intact.
(That both answer alike is tests/e2e/test_api.py's test_the_submit_fast_path_answers_as_the_route_does.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from governance.api_tokens import Principal, Scope
from worker.api.fast_submit import PATH, FastSubmit
from worker.api.models import JobSubmission
from worker.job_models import JobStatus
from worker.status_store import StatusStore

PRINCIPAL = Principal(token_id="t1", scope=Scope.AGENT, tenant_id="default", agent_id="a1", name="a1")


class Auth:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def principal(self, request: Any, credentials: Any) -> Principal:
        self.seen.append(credentials)
        request.state.token = credentials.credentials if credentials else None
        return PRINCIPAL


def _run(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[list[Any], list[Any], Auth]:
    routed: list[Any] = []
    submitted: list[Any] = []
    auth = Auth()

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        routed.append((await receive())["body"])

    async def submit(request: Any, principal: Principal, data: dict[str, Any], key: str | None) -> JobStatus:
        submitted.append((principal, data, key))
        fields = StatusStore.queued_fields("a1", "default", "2026-12-02T00:00:00+00:00")
        return JobStatus.from_hash("job-1", {k: str(v) for k, v in fields.items()})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "app": SimpleNamespace(state=SimpleNamespace(auth=auth)),
    }
    middleware = FastSubmit(route, model=JobSubmission, submit=submit, route="the route")
    asyncio.run(middleware(scope, receive, send))
    if submitted:
        assert sent[0]["status"] == 202 and (b"location", b"/v1/jobs/job-1") in sent[0]["headers"]
        assert scope["route"] == "the route"
    return routed, submitted, auth


_JSON = {"Content-Type": "application/json", "Authorization": "Bearer pgk_x"}


def test_a_valid_json_submit_is_served_without_the_route() -> None:
    routed, submitted, auth = _run(
        "POST", PATH, b'{"description": "Plan x"}', {**_JSON, "Idempotency-Key": "k1"}
    )
    assert routed == []
    assert submitted == [(PRINCIPAL, {"description": "Plan x"}, "k1")]
    assert auth.seen[0].credentials == "pgk_x"


def test_anything_it_is_not_sure_of_goes_to_the_route_untouched_and_unauthenticated() -> None:
    body = b'{"description": "Plan x"}'
    for method, path, sent, headers in [
        ("GET", PATH, b"", _JSON),
        ("POST", PATH + "/batch", body, _JSON),
        ("POST", PATH, body, {**_JSON, "Content-Type": "text/plain"}),
        ("POST", PATH, body, {"Authorization": "Bearer pgk_x"}),  # no content type
        ("POST", PATH, body, {**_JSON, "Idempotency-Key": "k" * 201}),
        ("POST", PATH, b'{"description": "Plan x", "colour": "red"}', _JSON),
        ("POST", PATH, b"{not json", _JSON),
    ]:
        routed, submitted, auth = _run(method, path, sent, headers)
        assert routed == [sent] and submitted == [] and auth.seen == [], (method, path, headers)
