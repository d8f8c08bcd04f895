"""How plangate connects to Redis/Dragonfly: one place that sets timeouts and bounded retries.

Every new connection must finish its handshake (AUTH, SELECT, a PING) within HANDSHAKE_TIMEOUT_S. Until
a client has completed one, a failed handshake means the setting is wrong (nothing Redis on that port,
login or database refused) and raises RedisSetupError at once; retrying would only delay the message.
After that, the same failures are an outage and are retried like a refused connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, InvalidResponse, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import str_if_bytes

from plangate_base.logs import get_logger
from worker.errors import QueueUnavailable

log = get_logger(__name__)

if TYPE_CHECKING:
    from arq.connections import RedisSettings

_RETRY_ON = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]

# A client gives up after about 3 s so its caller gets QueueUnavailable instead of a hang; a
# worker rides out a restart of a few tens of seconds before its supervisor starts it over.
CLIENT_RETRIES = 4
WORKER_RETRIES = 20

_WAIT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

CONNECT_TIMEOUT_S = 2.0
HANDSHAKE_TIMEOUT_S = 2.0
# Longer than any BLOCK plangate issues (1 s: XREAD in watch/wait, XREADGROUP in the ledger writer), so a
# blocking read never times out while a server that stops answering is noticed.
READ_TIMEOUT_S = 10.0


class RedisSetupError(QueueUnavailable, RedisError):
    """The Redis setting is wrong, not the server briefly away: not a Redis URL, not Redis on that port,
    login or database refused. Never retried; a RedisError too, so redis-py drops the connection."""


UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a Redis call raises when the server cannot be reached or stopped answering."""


def redacted(url: str) -> str:
    """The URL without its password: how every message and log line names a Redis."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def unreachable(url: str, exc: BaseException) -> QueueUnavailable:
    """The error for a call to the Redis at `url` that failed with one of UNREACHABLE."""
    return QueueUnavailable(f"cannot reach Redis at {redacted(url)}: {exc}")


_SCHEMES = frozenset({"redis", "rediss", "unix"})


def check_url(url: str) -> None:
    """Raise RedisSetupError unless `url` is a Redis URL redis-py and arq can both use."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:  # what arq's RedisSettings.from_dsn accepts, as it checks
            raise ValueError("the scheme must be redis, rediss or unix")
        database = parts.path.lstrip("/")
        if parts.scheme != "unix" and database and not database.isdigit():
            raise ValueError(f"the database must be a number, not {database!r}")
        parse_url(url)
    except ValueError as exc:
        raise RedisSetupError(
            f"{redacted(url)!r} is not a usable Redis URL ({exc}): "
            "write it as redis://[:PASSWORD@]HOST:PORT/DB, rediss://... for TLS, or unix:///PATH"
        ) from exc


class _Handshake:
    """redis-py's connect hook: the server answers the handshake and a PING within HANDSHAKE_TIMEOUT_S.

    `strict` until one handshake succeeded: then a failure is the setting's (RedisSetupError, not
    retried); afterwards, or for a service's client, it is an outage (retried)."""

    def __init__(self, url: str, *, strict: bool) -> None:
        self._where = redacted(url)
        self._strict = strict
        self._tls_hint = "" if url.startswith("rediss:") else " (a TLS port needs rediss://)"

    async def run(self, conn: Connection) -> None:
        """Initialise a new connection (redis-py calls it in place of `on_connect`)."""
        retry_as: type[RedisError] = RedisConnectionError
        # No health-check PING before AUTH (it would meet NOAUTH and redis-py's retries): the PING below,
        # after the handshake, is the check.
        conn.next_health_check = asyncio.get_running_loop().time() + conn.health_check_interval
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await conn.on_connect()
                await conn.send_command("PING", check_health=False)
                reply = str_if_bytes(await conn.read_response())
        except BusyLoadingError:
            raise  # Redis is loading its data set: wait for it like for a restart
        except (TimeoutError, RedisTimeoutError):
            waited = f"{HANDSHAKE_TIMEOUT_S:g}s"
            problem = f"no Redis reply within {waited}: is a Redis server there?{self._tls_hint}"
            retry_as = RedisTimeoutError
        except InvalidResponse as exc:
            problem = f"not a Redis server there ({_short(exc)})"
        except AuthenticationError as exc:
            problem = f"login refused ({_short(exc)})"
        except ResponseError as exc:
            problem = f"connection setup refused ({_short(exc)})"
        except (RedisConnectionError, OSError) as exc:
            problem = f"the connection broke during the handshake ({_short(exc)}){self._tls_hint}"
        else:
            if reply == "PONG":
                self._strict = False
                return
            problem = f"not a Redis server there (it answered PING with {reply[:40]!r})"
        if self._strict:
            raise RedisSetupError(f"cannot use Redis at {self._where}: {problem}")
        raise retry_as(f"Redis at {self._where}: {problem}")


def _short(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."


# redis-py puts a pipeline's whole failing command (arguments and all) in front of the server's reason.
_PIPELINE_ERROR = re.compile(
    r"^Command # \d+ \((?P<command>\S+).*\) of pipeline caused error: \((?P<q>['\"])(?P<reason>.*)(?P=q),\)$",
    re.S,
)


def refusal(exc: RedisError) -> str:
    """What a Redis that answers refused, and why, in one short line (e.g. a write to a read-only replica)."""
    text = str(exc)
    found = _PIPELINE_ERROR.match(text)
    if found:
        text = f"{found['command']}: {found['reason']}"
    return f"{type(exc).__name__}: {_short(text)}"


def _retry(retries: int) -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)


def text_client(url: str, *, service: bool = False) -> Redis:
    """A decoded (str) client with connect, handshake and read timeouts and bounded retries.

    A one-shot client (the CLI, a producer) fails fast on a wrong setting; a `service` client (a worker,
    the ledger writer) retries longer and treats every failure as an outage (its process checked the
    setting at start with `wait_for_redis`)."""
    check_url(url)
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=READ_TIMEOUT_S,
        redis_connect_func=_Handshake(url, strict=not service).run,  # a coroutine function, as redis-py wants
        retry=_retry(WORKER_RETRIES if service else CLIENT_RETRIES),
        retry_on_error=_RETRY_ON,
        health_check_interval=15,
    )


async def check_redis(url: str) -> None:
    """Connect once and PING: QueueUnavailable (RedisSetupError for a wrong setting) within seconds when
    Redis cannot be used."""
    async with text_client(url) as redis:
        try:
            await redis.ping()
        except UNREACHABLE as exc:
            raise unreachable(url, exc) from exc


async def wait_for_redis(url: str, stop: asyncio.Event, wait_s: float) -> bool:
    """A service's start: wait up to `wait_s` (with backoff, logging each try) while Redis cannot be
    reached, as when it is still starting; then raise QueueUnavailable. Raise RedisSetupError at once for
    a wrong setting. False when `stop` is set first."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    failures = 0
    while True:
        try:
            await check_redis(url)
            return True
        except RedisSetupError:
            raise
        except QueueUnavailable as exc:
            left = give_up - loop.time()
            if left <= 0:
                raise QueueUnavailable(
                    f"{exc} (waited {wait_s:g}s at start; PLANGATE_REDIS_START_WAIT_S waits longer)"
                ) from None
            delay = min(_WAIT_BACKOFF_S[min(failures, len(_WAIT_BACKOFF_S) - 1)], left)
            failures += 1
            log.warning("waiting for Redis", error=str(exc), retry_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return False


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for a worker: the same retries on dropped connections."""
    from arq.connections import RedisSettings  # arq's import is its whole worker: workers only

    check_url(url)
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = int(CONNECT_TIMEOUT_S)
    settings.conn_retries = 10
    settings.retry = _retry(WORKER_RETRIES)
    settings.retry_on_error = list(_RETRY_ON)
    return settings
