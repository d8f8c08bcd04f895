"""A redis-server a test starts, stops and starts again itself (never the shared one: it may stop it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis as sync_redis

from tests.conftest import _redis_binary, free_port
from tests.eventually import eventually_sync

_START_DEADLINE_S = 10.0


class OwnRedis:
    """A redis-server on a free loopback port and a data dir of its own; `args` are extra server flags
    (e.g. ``["--requirepass", "s3cret"]``). `url` is how a client with the right credentials reaches it."""

    def __init__(self, workdir: Path, *args: str, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = list(args) + (["--requirepass", password] if password else [])
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        proc = self.proc

        def answers() -> bool:
            assert proc.poll() is None, "redis-server exited at start"
            try:
                return bool(sync_redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping())
            except (sync_redis.RedisError, OSError):
                return False

        eventually_sync(answers, timeout_s=_START_DEADLINE_S, interval_s=0.05, what="redis-server to start")

    def stop(self) -> None:
        """SIGTERM (an append-only file is flushed first) and wait for the exit."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server if it still runs (fixture teardown)."""
        if self.proc and self.proc.poll() is None:
            self.stop()
