"""How plangate connects to Redis/Dragonfly: one place that sets timeouts and bounded retries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from arq.connections import RedisSettings

_RETRY_ON = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]

# A client gives up after about 3 s so its caller gets QueueUnavailable instead of a hang; a
# worker rides out a restart of a few tens of seconds before its supervisor starts it over.
CLIENT_RETRIES = 4
WORKER_RETRIES = 20


def _retry(retries: int) -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)


def text_client(url: str, *, retries: int = CLIENT_RETRIES) -> Redis:
    """A decoded (str) client with connect timeouts and bounded retries on connection errors."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        retry=_retry(retries),
        retry_on_error=_RETRY_ON,
        health_check_interval=15,
    )


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for a worker: the same retries on dropped connections."""
    from arq.connections import RedisSettings  # arq's import is its whole worker: workers only

    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 10
    settings.retry = _retry(WORKER_RETRIES)
    settings.retry_on_error = list(_RETRY_ON)
    return settings
