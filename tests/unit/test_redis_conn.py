"""The one place that connects to Redis: which URLs it takes, how it words what Redis refused, and the
timeouts that keep blocking reads working."""

from __future__ import annotations

import inspect

import fakeredis
import pytest
from redis.exceptions import ReadOnlyError

from ledger.ledger_writer import LedgerWriter
from worker import client
from worker.errors import QueueUnavailable
from worker.redis_conn import READ_TIMEOUT_S, RedisSetupError, arq_settings, check_url, redacted, refusal


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:6379",
        "localhost:6379",
        "http://127.0.0.1:6379/0",
        "redis://127.0.0.1:port/0",
        "redis://h/db",
    ],
)
def test_a_url_that_is_not_a_redis_url_is_a_setup_error(url: str) -> None:
    with pytest.raises(RedisSetupError, match="not a usable Redis URL") as raised:
        check_url(url)
    assert isinstance(raised.value, QueueUnavailable)  # the CLI's exit code 3
    with pytest.raises(RedisSetupError):
        arq_settings(url)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/2", "unix:///tmp/r.sock"])
def test_redis_urls_are_taken(url: str) -> None:
    check_url(url)


def test_a_password_never_shows() -> None:
    assert redacted("redis://user:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
    with pytest.raises(RedisSetupError) as raised:
        check_url("redis://user:s3cret@host:port/0")
    assert "s3cret" not in str(raised.value)


def test_a_refused_pipeline_command_is_named_without_its_arguments() -> None:
    exc = ReadOnlyError("You can't write against a read only replica.")
    fakeredis.FakeAsyncRedis().pipeline().annotate_exception(exc, 1, ("HSET", "job:1", "request", '{"a": 1}'))
    assert str(exc).startswith("Command # 1 (HSET job:1")  # how redis-py words a pipeline's error
    assert refusal(exc) == "ReadOnlyError: HSET: You can't write against a read only replica."
    assert refusal(ReadOnlyError("plain")) == "ReadOnlyError: plain"


def test_the_blocking_reads_stay_well_below_the_read_timeout() -> None:
    # A socket timeout shorter than a BLOCK would break watch/wait and the ledger writer.
    blocks_ms = [client._WATCH_BLOCK_MS, inspect.signature(LedgerWriter).parameters["block_ms"].default]
    assert max(blocks_ms) / 1000 * 2 <= READ_TIMEOUT_S
