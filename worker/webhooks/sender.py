"""One delivery attempt over HTTP behind the SSRF guard: the addresses a host resolves to are checked as
the connection is made (no gap for a second DNS answer to slip in), redirects are never followed, and
the attempt has one time limit. The answer's body is read to free the connection, never kept."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from governance.webhook_policy import address_problem, parse_retry_after

_MAX_ANSWER_BYTES = 64 * 1024


class AddressRefused(OSError):
    """The SSRF guard refused every address of the host."""


class GuardedResolver(AbstractResolver):
    """Resolves like the system does, then keeps only the addresses the tenant may reach."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        problems = [address_problem(r["host"], allow_private=self._allow_private) for r in found]
        allowed = [r for r, problem in zip(found, problems, strict=True) if problem is None]
        if not allowed:
            raise AddressRefused(next((p for p in problems if p), f"{host} has no address"))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: the status (None: no answer), its latency, Retry-After, and why it failed."""

    status: int | None
    latency_ms: int
    retry_after_s: float | None = None
    error: str = ""  # timeout, connect, refused_address, redirect_not_followed (never a body)
    refused: bool = False


class Sender:
    """Two connection pools (with and without private addresses allowed), kept alive between attempts."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(allow_private=allow_private), limit=0, ttl_dns_cache=10
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False)
            self._sessions[allow_private] = session
        return session

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, allow_private: bool) -> Answer:
        """POST `body` once; every failure is an Answer, never an exception."""
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            async with self._session(allow_private).post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.content.read(_MAX_ANSWER_BYTES)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        except TimeoutError:
            return Answer(None, took(), error="timeout")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return Answer(None, took(), error="refused_address", refused=True)
            return Answer(None, took(), error="connect")
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(None, took(), error=type(exc).__name__)
        error = "redirect_not_followed" if 300 <= status < 400 else ""
        return Answer(status, took(), retry_after_s=retry_after, error=error)

    async def aclose(self) -> None:
        """Close both pools."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
