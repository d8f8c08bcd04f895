"""End-to-end fixtures: the scripted LLM endpoint and `plangate worker` as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from governance.models import AgentRecord
from tests.conftest import free_port
from tests.eventually import eventually_sync
from worker.llm_stub.server import BEHAVIOURS

_READY_DEADLINE_S = 20.0


def plangate_cmd(*args: str) -> list[str]:
    """The `plangate` command as this interpreter runs it."""
    return [sys.executable, "-m", "worker.cli", *args]


def _wait_listening(port: int, proc: subprocess.Popen) -> None:
    def listening() -> bool:
        assert proc.poll() is None, "the scripted LLM endpoint exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    eventually_sync(
        listening, timeout_s=_READY_DEADLINE_S, interval_s=0.05, what=f"a listener on port {port}"
    )


@pytest.fixture
def llm_stub_url(tmp_path: Path) -> Iterator[str]:
    """`plangate llm-stub` as its own process on a free loopback port."""
    port = free_port()
    log = (tmp_path / "llm-stub.log").open("wb")
    proc = subprocess.Popen(plangate_cmd("llm-stub", "--port", str(port)), stdout=log, stderr=log)
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def e2e_env(
    redis_url: str, key_prefix: str, tmp_path: Path, llm_stub_url: str, keyless_seed_agent: AgentRecord
) -> dict[str, str]:
    """The environment a deployment would set: Redis, prefix, LLM endpoint, ledger file (and the seed
    agent keyless)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=redis_url,
        PLANGATE_KEY_PREFIX=key_prefix,
        PLANGATE_LLM_BASE_URL=llm_stub_url,
        PLANGATE_LLM_API_KEY="e2e-key-not-secret",
        PLANGATE_MODEL="scripted",
        PLANGATE_ALLOWED_MODELS=",".join(BEHAVIOURS),
        PLANGATE_LEDGER_PATH=str(tmp_path / "ledger.db"),
        # the signing key apart from the ledger, the operator's copy of its public key, the sink off it
        PLANGATE_LEDGER_SIGNING_KEY=str(tmp_path / "keys" / "ledger.key"),
        PLANGATE_LEDGER_TRUSTED_KEY=str(tmp_path / "keys" / "ledger.key.pub"),
        PLANGATE_LEDGER_CHECKPOINT_SINK=str(tmp_path / "published" / "checkpoint"),
        PLANGATE_HEARTBEAT_S="0.25",
        PLANGATE_LLM_BACKOFF_S="0.01",
        PLANGATE_CONCURRENCY="6",
        PLANGATE_LOG_LEVEL="INFO",
        PLANGATE_METRICS_PORT="0",
    )
    return env


@pytest.fixture
def start_plangate(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `plangate ARGS...` as a process named `name` (extra PLANGATE_* settings as keyword
    arguments), its output in `<tmp_path>/<name>-<n>.log`. Whatever still runs afterwards is stopped
    with SIGTERM, then killed."""
    procs: list[subprocess.Popen] = []
    started: dict[str, int] = {}

    def start(name: str, *args: str, **settings: str) -> subprocess.Popen:
        env = {**e2e_env, **{f"PLANGATE_{key.upper()}": value for key, value in settings.items()}}
        number = started[name] = started.get(name, -1) + 1
        log = (tmp_path / f"{name}-{number}.log").open("wb")
        procs.append(subprocess.Popen(plangate_cmd(*args), env=env, stdout=log, stderr=log))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def start_workers(start_plangate: Callable[..., subprocess.Popen]) -> Callable[..., list[subprocess.Popen]]:
    """Start N `plangate worker` processes (extra PLANGATE_* settings as keyword arguments); returns the
    new ones (logs in worker-<n>.log; stopped afterwards like every start_plangate process)."""

    def start(count: int, *args: str, **settings: str) -> list[subprocess.Popen]:
        return [start_plangate("worker", "worker", *args, **settings) for _ in range(count)]

    return start
