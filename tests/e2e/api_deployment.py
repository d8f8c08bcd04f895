"""One deployment behind the HTTP API for a whole test module: the scripted LLM endpoint, workers and
`plangate serve` as real processes on a key prefix of their own. Tests share it and stay apart by using
agents and tenants of their own (`Deployment.agent`, `Deployment.tenant`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from governance.api_tokens import Scope
from governance.models import SEED_AGENT, AgentRecord, ReviewerRecord, TenantRecord
from tests.conftest import TEST_DB, delete_prefix, free_port, store_keyless_seed_agent
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync
from worker.admin import AgentAdmin
from worker.keys import Keys
from worker.llm_stub.server import BEHAVIOURS

T = TypeVar("T")

_UP_DEADLINE_S = 30.0


@dataclass
class Answer:
    """An HTTP answer, whatever its status (JSON bodies decoded)."""

    status: int
    headers: dict[str, str]
    body: Any


def call(
    url: str, method: str = "GET", *, token: str | None = None, body: Any = None, raw: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 60,
) -> Answer:  # fmt: skip
    """One HTTP request with the standard library."""
    sent = {**(headers or {})}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, got, text = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, text = exc.code, dict(exc.headers), exc.read()
    lowered = {k.lower(): v for k, v in got.items()}
    decoded: Any = text.decode()
    if "json" in lowered.get("content-type", ""):
        decoded = json.loads(text)
    return Answer(status, lowered, decoded)


def sse_events(url: str, token: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    """A Server-Sent Events stream read to its end: each event's id, kind and decoded data."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response:
            text = line.decode().rstrip("\n")
            if not text:
                if current:
                    events.append(current)
                current = {}
                continue
            name, _, value = text.partition(": ")
            current[name] = json.loads(value) if name == "data" else value
    return events


def wait_until_up(url: str, proc: subprocess.Popen, what: str) -> None:
    """Return once `url` answers 200; fail when `proc` exits or the deadline passes."""

    def answers() -> bool:
        assert proc.poll() is None, f"{what} exited"
        try:
            return call(url, timeout=1).status == 200
        except OSError:
            return False

    eventually_sync(answers, timeout_s=_UP_DEADLINE_S, interval_s=0.05, what=f"{what} to answer {url}")


class Deployment:
    """The processes and settings of one module's deployment."""

    def __init__(self, redis_base_url: str, workdir: Path) -> None:
        self.redis_url = f"{redis_base_url}/{TEST_DB}"
        self.prefix = f"pgtest-{uuid.uuid4().hex[:10]}:"
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
        self.env.update(
            PLANGATE_REDIS_URL=self.redis_url,
            PLANGATE_KEY_PREFIX=self.prefix,
            PLANGATE_LLM_API_KEY="e2e-key-not-secret",
            PLANGATE_MODEL="scripted",
            PLANGATE_ALLOWED_MODELS=",".join(BEHAVIOURS),
            PLANGATE_LEDGER_PATH=str(workdir / "ledger.db"),
            PLANGATE_LEDGER_SIGNING_KEY=str(workdir / "keys" / "ledger.key"),
            PLANGATE_LEDGER_TRUSTED_KEY=str(workdir / "keys" / "ledger.key.pub"),
            PLANGATE_HEARTBEAT_S="0.25",
            PLANGATE_LLM_BACKOFF_S="0.01",
            PLANGATE_CONCURRENCY="6",
            PLANGATE_METRICS_PORT="0",
            PLANGATE_API_RATE_LIMIT_PER_S="0",
        )
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.url = ""

    def start(self, *, workers: int = 1) -> Deployment:
        """The endpoint, `workers` workers and one API process, each once it answers."""
        store_keyless_seed_agent(self.redis_url, self.prefix)
        stub_port = free_port()
        stub = self._start("llm-stub", "llm-stub", "--port", str(stub_port))
        wait_until_up(f"http://127.0.0.1:{stub_port}/v1/models", stub, "the scripted LLM endpoint")
        self.env["PLANGATE_LLM_BASE_URL"] = f"http://127.0.0.1:{stub_port}/v1"
        for _ in range(workers):
            self._start("worker", "worker")
        self.url = self.start_api()
        return self

    def start_api(self, **settings: str) -> str:
        """One more `plangate serve` (extra PLANGATE_* settings as keyword arguments); its URL."""
        port = free_port()
        proc = self._start("serve", "serve", "--port", str(port), **settings)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/healthz", proc, "plangate serve")
        return url

    def start_process(self, name: str, *args: str, **settings: str) -> subprocess.Popen:
        """One more `plangate ARGS` process of the deployment (extra PLANGATE_* settings as keywords),
        stopped with the others."""
        return self._start(name, *args, **settings)

    def _start(self, name: str, *args: str, **settings: str) -> subprocess.Popen:
        env = {**self.env, **{f"PLANGATE_{k.upper()}": v for k, v in settings.items()}}
        path = self.workdir / f"{name}-{len(self.procs)}.log"
        self.logs.append(path)
        with path.open("wb") as log:
            self.procs.append(subprocess.Popen(plangate_cmd(*args), env=env, stdout=log, stderr=log))
        return self.procs[-1]

    def logged(self) -> str:
        """Everything every process of the deployment logged so far."""
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def cli(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        """`plangate ARGS` in this deployment's environment (extra PLANGATE_* settings as keywords)."""
        env = {**self.env, **{f"PLANGATE_{k.upper()}": v for k, v in settings.items()}}
        return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=60)

    def out(self, *args: str) -> str:
        """`plangate ARGS`, which must succeed; its last line."""
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def _admin(self, work: Callable[[AgentAdmin], Awaitable[T]]) -> T:
        """Run `work` with an AgentAdmin on this deployment (what the CLI's operator commands use)."""

        async def run() -> T:
            redis = Redis.from_url(self.redis_url, decode_responses=True)
            try:
                return await work(AgentAdmin(redis, Keys(self.prefix)))
            finally:
                await redis.aclose()

        return asyncio.run(run())

    def tenant(self) -> str:
        """A new tenant of the test's own."""
        tenant_id = f"t-{uuid.uuid4().hex[:8]}"
        self._admin(lambda admin: admin.tenants.put(TenantRecord(tenant_id=tenant_id)))
        return tenant_id

    def agent(self, tenant_id: str = "default") -> tuple[str, str]:
        """A new agent of the test's own in `tenant_id`, and its key (its API token)."""
        agent_id = f"planner-{uuid.uuid4().hex[:8]}"
        record = AgentRecord.model_validate(
            {**SEED_AGENT.model_dump(), "agent_id": agent_id, "tenant_id": tenant_id}
        )

        async def add(admin: AgentAdmin) -> str:
            await admin.save_agent(record, by="test")
            return await admin.issue_agent_key(agent_id, by="test")

        return agent_id, self._admin(add)

    def reviewer(self, tenant_id: str) -> str:
        """A new reviewer of `tenant_id`; its key (its API token)."""
        record = ReviewerRecord(reviewer_id=f"rev-{uuid.uuid4().hex[:8]}", tenant_id=tenant_id)
        return self._admin(lambda admin: admin.save_reviewer(record, by="test"))

    def token(self, scope: str, tenant_id: str | None = None) -> str:
        """A new tenant, auditor or admin token."""
        return self.issued(scope, tenant_id)[0]

    def issued(self, scope: str, tenant_id: str | None = None) -> tuple[str, str]:
        """A new tenant, auditor or admin token, and its token id."""

        async def issue(admin: AgentAdmin) -> tuple[str, str]:
            token, principal = await admin.issue_token(Scope(scope), tenant_id=tenant_id, name="", by="test")
            return token, principal.token_id

        return self._admin(issue)

    def stop(self) -> None:
        """Stop every process, then delete every key the deployment made."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        delete_prefix(self.redis_url, self.prefix)
