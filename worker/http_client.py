"""A producer over the HTTP API instead of Redis: what agents outside the cluster use.

`ApiTransport` is the standard library only (urllib), so `plangate status --api URL --json` starts
without redis-py or pydantic. `HttpPlanClient` (what `PlanClient.http(base_url, token)` returns) has
PlanClient's methods and answers, with the API's problems mapped back to the same typed errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from worker.errors import (
    BadRequest,
    Forbidden,
    JobNotFound,
    NotCancellable,
    NotReviewable,
    PlangateError,
    QueueUnavailable,
    Unauthenticated,
    WaitTimeout,
)

if TYPE_CHECKING:
    from governance.models import PlanRequest
    from worker.job_models import JobEvent, JobStatus

DEFAULT_TIMEOUT_S = 30.0
_LONG_POLL_S = 55.0  # one GET ?wait= (the API answers by 60 s)


class ApiTransport:
    """JSON over HTTP to one API with one bearer token; problems raised as typed errors."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadRequest(f"{base_url!r} is not an API URL: write it as http(s)://HOST[:PORT]")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> Any:
        sent = {"Accept": "application/json", **(headers or {})}
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        return urllib.request.Request(self.base_url + path, data=data, method=method, headers=sent)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The decoded JSON answer of a 2xx; the typed error of a problem."""
        request = self._request(method, path, body, headers)
        with self._open(request, path, timeout_s or self._timeout_s) as response:
            return json.loads(response.read())

    def _open(self, request: urllib.request.Request, path: str, timeout_s: float) -> Any:
        """The open response of a 2xx; the typed error of a problem or an unreachable API."""
        try:
            return urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            raise _problem_error(exc.code, _problem(exc), path) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise QueueUnavailable(f"cannot reach the API at {self.base_url}: {reason}") from None

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A Server-Sent Events stream as (event kind, decoded data) until the server ends it."""
        request = self._request("GET", path, None, {"Accept": "text/event-stream"})
        with self._open(request, path, max(self._timeout_s, 60.0)) as response:
            kind, data = "message", ""
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield kind, json.loads(data)
                    kind, data = "message", ""
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()


def _problem(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def _problem_error(status: int, problem: dict[str, Any], path: str) -> PlangateError:
    detail = str(problem.get("detail") or f"HTTP {status} from {path}")
    if status == 401:
        return Unauthenticated(f"the API refused the token: {detail}")
    if status == 403:
        return Forbidden(detail)
    if status == 404 and path.startswith(("/v1/jobs/", "/v1/reviews/")):
        return JobNotFound(urllib.parse.unquote(path.split("/")[3].split("?")[0]))
    if status == 409 and path.endswith("/cancel"):
        return NotCancellable(detail)
    if status == 409 and path.startswith("/v1/reviews/"):
        return NotReviewable(detail)
    if status in (429, 503) or status >= 500:
        return QueueUnavailable(f"the API answered {status}: {detail}")
    return BadRequest(detail)


class HttpPlanClient:
    """PlanClient's submit, status, wait, watch and cancel over the HTTP API (the token is the
    identity: agent and tenant come from it)."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.transport = ApiTransport(base_url, token, timeout_s=timeout_s)

    async def __aenter__(self) -> HttpPlanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to close: every call is its own connection."""

    async def submit(self, request: PlanRequest | dict[str, Any]) -> str:
        """Submit a job; returns its id (the request's idempotency_key travels as Idempotency-Key)."""
        body = request if isinstance(request, dict) else request.model_dump(mode="json", exclude_none=True)
        body = {k: v for k, v in body.items() if v is not None and k != "agent_key"}
        answer = await asyncio.to_thread(self.transport.call, "POST", "/v1/jobs", body)
        return str(answer["job_id"])

    async def status(self, job_id: str) -> JobStatus:
        """The job's status object; JobNotFound for a job that does not exist or is not the token's."""
        from worker.job_models import JobStatus

        answer = await asyncio.to_thread(self.transport.call, "GET", _job_path(job_id))
        return JobStatus.model_validate(answer)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Wait until the job is terminal (long polls); WaitTimeout after `timeout` seconds."""
        from worker.job_models import JobStatus

        if timeout is not None and timeout < 0:
            raise BadRequest(f"timeout must be 0 or more seconds, not {timeout:g}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = _LONG_POLL_S if deadline is None else max(0.0, min(_LONG_POLL_S, deadline - loop.time()))
            path = f"{_job_path(job_id)}?wait={left:.3f}"
            answer = await asyncio.to_thread(self.transport.call, "GET", path, timeout_s=left + 30)
            status = JobStatus.model_validate(answer)
            if status.terminal:
                return status
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(job_id, timeout or 0.0)

    async def watch(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's events as they happen; ends after the terminal event."""
        from worker.job_models import JobEvent

        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        end = object()
        stopped = threading.Event()

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop closed meanwhile: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for _, data in self.transport.events(f"{_job_path(job_id)}/events"):
                    if stopped.is_set():
                        return  # (closes the stream)
                    put(data)
            except PlangateError as exc:
                put(exc)
            finally:
                put(end)

        # A thread of its own, not the loop's executor: a caller that stops early (a bounded wait) leaves
        # it blocked until the stream's next event, and parked readers must not starve asyncio.to_thread.
        threading.Thread(target=pump, name="plangate-sse", daemon=True).start()
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, PlangateError):
                    raise item
                item.pop("status", None)
                yield JobEvent.model_validate(item)
        finally:
            stopped.set()

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel the job (at once when queued, at the next heartbeat when running)."""
        from worker.job_models import JobStatus

        answer = await asyncio.to_thread(self.transport.call, "POST", f"{_job_path(job_id)}/cancel")
        return JobStatus.model_validate(answer)


def _job_path(job_id: str) -> str:
    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}"
