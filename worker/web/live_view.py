"""`plangate web`: a read-only live view of the queue, served on loopback with the stdlib.

JSON endpoints (`/api/jobs`, `/api/jobs/<id>`, `/api/stats`) read Redis and the ledger file; the
page (`/`, `/job/<id>`, `/#<id>`) polls them every second and builds its DOM with textContent.
Nothing here writes: there is no POST route, and every other path is a 404.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import signal
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from redis.asyncio import Redis

from governance.registry import TenantRegistry
from ledger.errors import LedgerError
from ledger.queries import EventFilter, read_only, show_job, tail
from plangate_base import clock, codec
from plangate_base.clock import utcnow
from plangate_base.logs import get_logger
from plangate_base.vocabulary import JobState
from worker.cli.stats import DEFAULT_MINUTES, collect_stats
from worker.cli.web import DEFAULT_PORT
from worker.client import PlanClient
from worker.errors import BadRequest, JobNotFound, QueueUnavailable
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.queue_backend import job_queue
from worker.redis_conn import UNREACHABLE, text_client, unreachable
from worker.settings import Settings
from worker.web.assets import APP_CSS, APP_JS, INDEX_HTML

log = get_logger(__name__)

LIST_LIMIT = 50  # queued and running rows shown
RECENT_LIMIT = 25  # finished rows shown
_LEDGER_TAIL = 200  # ledger events scanned for recent job ids
_REMEMBERED = 500  # job ids this process saw queued or running, kept to list them once finished
_CANDIDATES = 150  # job ids read per poll when looking for recently finished ones
_MAX_HEAD = 16 * 1024
_HEAD_TIMEOUT_S = 10.0
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JOB_PAGE = re.compile(r"/job/([^/]+)")
_JOB_API = re.compile(r"/api/jobs/([^/]+)")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    503: "Service Unavailable",
}
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
_STATIC = {
    "/": (INDEX_HTML, "text/html; charset=utf-8"),
    "/static/app.js": (APP_JS, "text/javascript; charset=utf-8"),
    "/static/app.css": (APP_CSS, "text/css; charset=utf-8"),
}


class HttpError(Exception):
    """An answer other than 200: its status code and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (the view has no authentication)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _age_s(at: str | None, now: datetime) -> float | None:
    if not at:
        return None
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(max(0.0, (now - then).total_seconds()), 1)


def job_row(status: JobStatus, now: datetime) -> dict[str, Any]:
    """One job as a row of the list: state, phase, heartbeat age, tokens and outcome."""
    reason = status.refusal.code if status.refusal else status.error.type if status.error else None
    return {
        "job_id": status.job_id,
        "state": status.state.value,
        "phase": status.phase.value if status.phase else None,
        "attempt": status.attempt,
        "agent_id": status.agent_id,
        "tenant_id": status.tenant_id,
        "submitted_at": status.submitted_at,
        "started_at": status.started_at,
        "finished_at": status.finished_at,
        "heartbeat_at": status.heartbeat_at,
        "heartbeat_age_s": None if status.terminal else _age_s(status.heartbeat_at, now),
        "tokens": int(status.progress.get("tokens", 0) or 0),
        "decision": status.output.decision.value if status.output else None,
        "reason": reason,
    }


class LiveView:
    """Reads what the page shows: job lists, one job in detail, the stats. Read-only."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._client = PlanClient(redis, settings)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _remember(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._seen[job_id] = None
            self._seen.move_to_end(job_id)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)

    async def _statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Status objects of the jobs still known, from one pipeline of HGETALLs."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self._keys.job(job_id))
            raws = await pipe.execute()
        found = {}
        for job_id, raw in zip(job_ids, raws, strict=True):
            if not raw:
                continue  # expired, or removed between the two reads
            try:
                found[job_id] = JobStatus.from_hash(job_id, raw)
            except ValidationError as exc:
                log.warning("unreadable status hash", job_id=job_id, error=str(exc))
        return found

    async def _ledger_job_ids(self) -> list[str]:
        """Job ids of the ledger's last events, newest first (none when there is no ledger file here)."""
        if not await asyncio.to_thread(Path(self._settings.ledger_path).is_file):
            return []
        try:
            async with read_only(self._settings.ledger_path) as conn:
                events = await tail(conn, EventFilter(), _LEDGER_TAIL)
        except (LedgerError, sqlite3.Error) as exc:
            log.warning("ledger unreadable", error=str(exc))
            return []
        return [e["job_id"] for e in reversed(events) if e.get("job_id")]

    async def _waiting(self, running_count: int) -> list[str]:
        """Jobs waiting for a worker, oldest first: due in the queue and not running.

        The queue holds a job until it finishes and a deferred retry due in the future, so
        read the due entries only, enough of them to fill the list after the running ones are
        left out (each running job is a due entry).
        """
        now_ms = clock.now_ms()
        due = await job_queue(self._settings.queue_name).due(self._redis, now_ms, LIST_LIMIT + running_count)
        if not due:
            return []
        running = await self._redis.zmscore(self._keys.running(), due)
        return [job_id for job_id, beat in zip(due, running, strict=True) if beat is None][:LIST_LIMIT]

    async def jobs(self) -> dict[str, Any]:
        """Queued (waiting for a worker, oldest first), running (oldest heartbeat first) and recently
        finished jobs."""
        tenants = [t.tenant_id for t in await TenantRegistry(self._redis, self._keys).list()]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys.running())
            pipe.zrange(self._keys.running(), 0, LIST_LIMIT - 1)
            pipe.zrevrange(self._keys.failed(), 0, RECENT_LIMIT - 1)
            for tenant_id in tenants:
                pipe.zrevrange(self._keys.review_pending(tenant_id), 0, RECENT_LIMIT - 1)
            running_count, running, failed, *reviews = await pipe.execute()
        review = [job_id for pending in reviews for job_id in pending]
        queued = await self._waiting(running_count)
        self._remember([*queued, *running])
        remembered = list(reversed(self._seen))[:_CANDIDATES]
        found = [*failed, *review, *remembered, *await self._ledger_job_ids()]
        candidates = list(dict.fromkeys(found))[:_CANDIDATES]
        wanted = list(dict.fromkeys([*queued, *running, *candidates]))
        statuses = await self._statuses(wanted)
        now = utcnow()
        finished = [statuses[j] for j in candidates if j in statuses and statuses[j].terminal]
        finished.sort(key=lambda s: s.finished_at or "", reverse=True)
        return {
            "at": clock.iso(now),
            "queue": self._settings.queue_name,
            "queued": [
                job_row(statuses[j], now)
                for j in queued
                if j in statuses and statuses[j].state is JobState.QUEUED
            ],
            "running": [job_row(statuses[j], now) for j in running if j in statuses],
            "recent": [job_row(s, now) for s in finished[:RECENT_LIMIT]],
        }

    async def job(self, job_id: str) -> dict[str, Any]:
        """One job: its status object, its event stream and its ledger record (when the file is here)."""
        status = await self._client.status(job_id)
        entries = await self._redis.xrange(self._keys.job_events(job_id), "-", "+")
        ledger: dict[str, Any] | None = None
        ledger_note = None
        try:
            ledger = await show_job(self._settings.ledger_path, job_id)
        except (LedgerError, sqlite3.Error) as exc:
            ledger_note = str(exc)
        return {
            "status": status.model_dump(mode="json"),
            "row": job_row(status, utcnow()),
            "events": [{"id": entry_id, **fields} for entry_id, fields in entries],
            "ledger": ledger,
            "ledger_note": ledger_note,
        }

    async def stats(self, minutes: int) -> dict[str, Any]:
        """`plangate stats --json`, as is."""
        return await collect_stats(self._redis, self._settings, minutes)


class WebServer:
    """The HTTP side: one request per connection, GET/HEAD only, loopback Host headers only."""

    def __init__(self, view: LiveView, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.view = view
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Bind and accept connections (port 0 picks a free port)."""
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port, limit=_MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting and drop the connections still open."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            await self._answer(head.decode("latin-1"), writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()  # stop() cancels what is still open
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _answer(self, head: str, writer: asyncio.StreamWriter) -> None:
        request_line, *header_lines = head.split("\r\n")
        method, target, _ = [*request_line.split(" "), "", ""][:3]
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        try:
            if method not in ("GET", "HEAD"):
                raise HttpError(405, "read-only: GET and HEAD only")
            if not is_loopback(_host_name(headers.get("host", ""))):
                raise HttpError(421, "this view answers loopback Host names only")
            body, content_type = await self._route(path, parse_qs(query))
            status = 200
        except HttpError as exc:
            status, content_type = exc.status, "application/json"
            body = codec.dumps({"error": str(exc)}).encode()
        head_lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}"]
        head_lines += [f"Content-Length: {len(body)}", "Connection: close"]
        head_lines += [f"{name}: {value}" for name, value in _SECURITY_HEADERS.items()]
        if status == 405:
            head_lines.append("Allow: GET, HEAD")
        writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        await writer.drain()

    async def _route(self, path: str, query: dict[str, list[str]]) -> tuple[bytes, str]:
        if path in _STATIC:
            text, content_type = _STATIC[path]
            return text.encode(), content_type
        page = _JOB_PAGE.fullmatch(path)
        if page and _JOB_ID.fullmatch(page.group(1)):
            return INDEX_HTML.encode(), _STATIC["/"][1]
        data: Callable[[], Awaitable[dict[str, Any]]]
        api = _JOB_API.fullmatch(path)
        if path == "/api/jobs":
            data = self.view.jobs
        elif api and _JOB_ID.fullmatch(api.group(1)):
            job_id = api.group(1)

            async def data() -> dict[str, Any]:
                return await self.view.job(job_id)

        elif path == "/api/stats":
            minutes = _int_param(query, "minutes", DEFAULT_MINUTES)

            async def data() -> dict[str, Any]:
                return await self.view.stats(minutes)

        else:
            raise HttpError(404, "no such page")
        try:
            return codec.dumps(await data()).encode(), "application/json"
        except JobNotFound as exc:
            raise HttpError(404, str(exc)) from exc
        except BadRequest as exc:
            raise HttpError(400, str(exc)) from exc
        except (QueueUnavailable, *UNREACHABLE) as exc:
            raise HttpError(503, f"cannot reach Redis: {exc}") from exc


def _host_name(header: str) -> str:
    """The name part of a Host header: `[::1]:8090` -> `[::1]`, `localhost:8090` -> `localhost`."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise HttpError(400, f"{name} must be a whole number") from None


async def serve(settings: Settings, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` gets the page's URL once it listens."""
    if not is_loopback(host):
        raise BadRequest(f"plangate web serves loopback only (it has no login), not {host!r}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with text_client(settings.redis_url) as redis:
        try:
            await redis.ping()
        except UNREACHABLE as exc:
            raise unreachable(settings.redis_url, exc) from exc
        server = WebServer(LiveView(redis, settings), host, port)
        try:
            await server.start()
        except OSError as exc:  # the port is taken, or not ours to bind: a setting to change
            raise BadRequest(
                f"plangate web cannot listen on {host} port {port}: {exc.strerror or exc}"
            ) from exc
        try:
            on_ready(server.url)
            await stop.wait()
        finally:
            await server.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
