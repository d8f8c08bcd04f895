"""Contract: schemathesis generates requests from the live API's /openapi.json (a bounded number per
operation) and checks every answer: never a 5xx, and status codes, content types, headers and bodies
as the document says."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.conftest import TEST_DB, free_port, store_keyless_seed_agent
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 12
_UP_DEADLINE_S = 20.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


class LiveApi:
    """`plangate serve` on its own key prefix, with an admin token, for the whole module."""

    def __init__(self, redis_base_url: str, workdir: Path) -> None:
        self.redis_url = f"{redis_base_url}/{TEST_DB}"
        self.prefix = f"pgtest-{uuid.uuid4().hex[:10]}:"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
        self.env.update(
            PLANGATE_REDIS_URL=self.redis_url,
            PLANGATE_KEY_PREFIX=self.prefix,
            PLANGATE_LEDGER_PATH=str(workdir / "ledger.db"),
            PLANGATE_API_RATE_LIMIT_PER_S="0",
        )
        self.log = (workdir / "serve.log").open("wb")
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(plangate_cmd(*args), env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def start(self) -> None:
        store_keyless_seed_agent(self.redis_url, self.prefix)
        self.cli("tenants", "add", "default")
        self.admin_token = self.cli("tokens", "issue", "--scope", "admin")
        cmd = plangate_cmd("serve", "--port", str(self.port))
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + _UP_DEADLINE_S
        while True:
            assert self.proc.poll() is None, "plangate serve exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "plangate serve did not answer /healthz"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()
        with sync_redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            queued = client.zrange(f"{self.prefix}queue", 0, -1)
            doomed = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            doomed += [
                f"arq:{kind}:{job_id}" for job_id in queued for kind in ("job", "in-progress", "retry")
            ]
            for start in range(0, len(doomed), 500):
                client.delete(*doomed[start : start + 500])


@pytest.fixture(scope="module")
def live_api(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    api = LiveApi(redis_base_url, tmp_path_factory.mktemp("api-contract"))
    try:
        api.start()
        yield api
    finally:
        api.stop()


def test_every_answer_conforms_to_the_document(live_api: LiveApi) -> None:
    """Each operation in turn (schemathesis's pytest plugin does not run on pytest 9, so the strategy
    of each operation drives hypothesis directly); every failure is collected, then reported at once."""
    api_schema = schemathesis.openapi.from_url(live_api.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.admin_token}"}
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/readyz":
            continue  # 503 by design without a worker (tests/e2e/test_api.py checks both answers)
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_api.url, headers=headers, checks=CHECKS, timeout=30)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # every failing operation, not only the first
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)


def test_the_document_is_openapi_3_1_with_problem_answers(live_api: LiveApi) -> None:
    with urllib.request.urlopen(live_api.url + "/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert spec["openapi"].startswith("3.1")
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert {"202", "401", "403", "409", "413", "422", "429", "503"} <= set(submit["responses"])
    assert "application/problem+json" in submit["responses"]["401"]["content"]
