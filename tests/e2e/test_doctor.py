"""`plangate doctor` against real deployments: a healthy one (its own Redis with AOF, a worker, the
scripted endpoint, keyed agents, the signing key apart from the ledger) passes every check; then each
check is made to fail for real and says so, with the documented exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from governance.models import SEED_AGENT, AgentRecord, TenantRecord
from governance.registry import AgentRegistry
from ledger import migrations
from tests.conftest import TEST_DB, delete_prefix, free_port
from tests.e2e.api_deployment import Deployment, call, wait_until_up
from tests.eventually import eventually_sync
from tests.redis_server import OwnRedis
from tests.resp_proxy import RespProxy, Rewrite, array, bulk, bulk_text, error
from worker import __version__
from worker.admin import AgentAdmin
from worker.keys import Keys
from worker.ledger_events import WORKER_NAME
from worker.settings import Settings
from worker.status_store import StatusStore
from worker.watchdog import Watchdog

pytestmark = pytest.mark.e2e

_HEALTHY_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("doctor")
    server = OwnRedis(work, "--appendonly", "yes")
    server.start()
    deployment = Deployment(f"redis://127.0.0.1:{server.port}", work)
    (work / "keys").mkdir(exist_ok=True)
    deployment.env["PLANGATE_LEDGER_SIGNING_KEY"] = str(work / "keys" / "ledger.key")
    deployment.env["PLANGATE_LEDGER_TRUSTED_KEY"] = str(work / "keys" / "ledger.key.pub")
    try:
        deployment.start(workers=1)

        async def keyed(admin: AgentAdmin) -> str:  # the seed agent as a real deployment has it
            await admin.save_agent(SEED_AGENT, by="test")
            return await admin.issue_agent_key(SEED_AGENT.agent_id, by="test")

        deployment._admin(keyed)
        yield deployment
    finally:
        deployment.stop()
        server.close()


@pytest.fixture
def up(dep: Deployment) -> Deployment:
    """The deployment once its worker beats and its ledger writer holds the lock (what the checks that
    must pass on it need), read from Redis, not through the doctor."""
    keys = Keys(dep.prefix)
    client = sync_redis.Redis.from_url(dep.redis_url, decode_responses=True)
    try:
        eventually_sync(
            lambda: client.zcard(keys.workers_accepting()) and client.get(keys.ledger_writer_lock()),
            timeout_s=_HEALTHY_DEADLINE_S,
            interval_s=0.1,
            what="the worker's beat and its ledger writer's lock",
        )
    finally:
        client.close()
    return dep


def failed(checks: dict[str, dict[str, Any]]) -> list[str]:
    """The names of the checks that failed."""
    return [name for name, check in checks.items() if check["status"] == "fail"]


def proxied(dep: Deployment, rewrites: dict[str, Rewrite]) -> RespProxy:
    """A RESP server in front of the deployment's Redis that rewrites the replies of `rewrites`."""
    where = urlsplit(dep.redis_url)
    return RespProxy((where.hostname or "127.0.0.1", where.port or 6379), rewrites, db=TEST_DB)


def doctor(dep: Deployment, *args: str, **settings: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """`plangate doctor --json ARGS` in the deployment's environment: exit code, checks by name."""
    done = dep.cli("doctor", "--json", *args, **settings)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    return done.returncode, {c["name"]: c for c in report["checks"]}


def test_a_healthy_deployment_passes_every_check(dep: Deployment) -> None:
    last: dict[str, dict[str, Any]] = {}

    def all_ok() -> dict[str, dict[str, Any]] | None:  # the worker beats and its writer starts
        code, checks = doctor(dep, "--probe-llm", "--api-url", dep.url)
        last.update(checks)
        return checks if code == 0 and all(c["status"] == "ok" for c in checks.values()) else None

    checks = eventually_sync(
        all_ok,
        timeout_s=_HEALTHY_DEADLINE_S,
        interval_s=0.5,
        what=lambda: f"every check ok; not ok: {[c for c in last.values() if c['status'] != 'ok']}",
    )
    expected = {
        "redis.reachable", "redis.server", "redis.persistence", "redis.lua_scripts", "redis.clock_skew",
        "workers.live", "ledger.writer", "governance.agent_records", "governance.forbidden_actions",
        "governance.agent_keys", "governance.agent_tenants", "governance.tenant_quotas", "llm.endpoint",
        "llm.probe", "ledger.file", "ledger.migrations", "ledger.chain", "ledger.signing_key",
        "ledger.backlog", "webhooks.deliveries", "api.ready", "api.tls", "edges.metrics_bind",
    }  # fmt: skip
    assert set(checks) == expected
    assert "AOF on" in checks["redis.persistence"]["why"]
    assert "json_schema" in checks["llm.probe"]["why"]
    # the text form: a line per check and the tally
    text = dep.cli("doctor").stdout.splitlines()
    assert text[-1] == f"{len(expected) - 3} ok, 0 warn, 0 fail"  # without the probe and the API's two


def test_a_server_that_is_not_redis_fails_the_first_check(dep: Deployment) -> None:
    stub = dep.env["PLANGATE_LLM_BASE_URL"].removesuffix("/v1").replace("http://", "redis://")
    code, checks = doctor(dep, redis_url=f"{stub}/0")
    assert code == 1
    assert checks["redis.reachable"]["status"] == "fail"
    assert "not a Redis server" in checks["redis.reachable"]["why"]
    assert "workers.live" not in checks  # the checks that need Redis did not run, and it says so
    assert "did not run" in checks["redis.reachable"]["why"]


def test_a_redis_without_persistence_is_a_warning(dep: Deployment, tmp_path: Path) -> None:
    bare = OwnRedis(tmp_path)  # `--save ""`, no AOF
    bare.start()
    try:
        code, checks = doctor(dep, redis_url=bare.url)
    finally:
        bare.close()
    assert checks["redis.persistence"]["status"] == "warn"
    assert "restart loses" in checks["redis.persistence"]["why"]
    assert "appendonly yes" in checks["redis.persistence"]["fix"]
    assert code == 1  # (this empty server has no workers either: a fail of its own)
    assert checks["workers.live"]["status"] == "fail"


def test_the_signing_key_missing_or_beside_the_ledger(dep: Deployment, tmp_path: Path) -> None:
    _, checks = doctor(dep, ledger_signing_key=str(tmp_path / "absent.key"))
    assert checks["ledger.signing_key"]["status"] == "warn"
    assert "no signing key" in checks["ledger.signing_key"]["why"]
    ledger = Path(dep.env["PLANGATE_LEDGER_PATH"])
    beside = ledger.with_name("beside.key")
    shutil.copy(dep.env["PLANGATE_LEDGER_SIGNING_KEY"], beside)
    _, checks = doctor(dep, ledger_signing_key=str(beside))
    assert checks["ledger.signing_key"]["status"] == "warn"
    assert "beside the ledger" in checks["ledger.signing_key"]["why"]


def test_a_tampered_ledger_fails_the_chain_check(dep: Deployment, tmp_path: Path) -> None:
    eventually_sync(lambda: doctor(dep)[1]["ledger.chain"]["status"] == "ok", timeout_s=30, interval_s=0.2)
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(dep.env["PLANGATE_LEDGER_PATH"])
    with sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    with sqlite3.connect(copy) as conn:
        triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for trigger in triggers:
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("UPDATE events SET payload = '{\"forged\": true}' WHERE seq = 1")
    code, checks = doctor(dep, ledger_path=str(copy))
    assert code == 1 and checks["ledger.chain"]["status"] == "fail"


def test_governance_checks_name_the_agents_and_tenants_at_fault(dep: Deployment) -> None:
    prefix = "pgtest-doctor-gov:"
    keys = Keys(prefix)

    async def arrange() -> None:
        redis = Redis.from_url(dep.redis_url, decode_responses=True)
        admin = AgentAdmin(redis, keys)
        try:
            await admin.tenants.put(TenantRecord(tenant_id="starved", tokens_per_day=100))
            await admin.save_agent(AgentRecord(agent_id="hungry", tenant_id="starved"), by="test")
            # as left behind when its tenant's record went (the admin path refuses an unknown tenant)
            await AgentRegistry(redis, keys).put(AgentRecord(agent_id="orphan", tenant_id="gone"))
            # an agent record as an older plangate stored it, without the seed's forbidden actions
            old = {**AgentRecord(agent_id="old-record").model_dump(mode="json"), "forbidden_actions": []}
            await redis.set(keys.agent("old-record"), json.dumps(old))
            await redis.sadd(keys.agents(), "old-record")
            # a tenant with agents and a zero quota, stored by hand (the admin path refuses a zero)
            await admin.tenants.put(TenantRecord(tenant_id="zeroed"))
            await admin.save_agent(AgentRecord(agent_id="zeroed-agent", tenant_id="zeroed"), by="test")
            zeroed = {**TenantRecord(tenant_id="zeroed").model_dump(mode="json"), "tokens_per_day": 0}
            await redis.set(keys.tenant("zeroed"), json.dumps(zeroed))
            # an id that collides with the key layout (":" separates key parts), stored by hand
            bad = {**AgentRecord(agent_id="x").model_dump(mode="json"), "agent_id": "team:planner"}
            await redis.set(f"{prefix}agent:team:planner", json.dumps(bad))
            await redis.sadd(keys.agents(), "team:planner")
        finally:
            await redis.aclose()

    asyncio.run(arrange())
    try:
        code, checks = doctor(dep, key_prefix=prefix)
    finally:
        delete_prefix(dep.redis_url, prefix)
    assert code == 1
    assert checks["governance.agent_records"]["status"] == "fail"
    assert "'team:planner': its id does not fit the key layout" in checks["governance.agent_records"]["why"]
    assert checks["governance.forbidden_actions"]["status"] == "fail"
    assert "old-record" in checks["governance.forbidden_actions"]["why"]
    assert checks["governance.agent_keys"]["status"] == "fail"
    assert "hungry" in checks["governance.agent_keys"]["why"]
    assert checks["governance.agent_tenants"]["status"] == "fail"
    assert "orphan (gone)" in checks["governance.agent_tenants"]["why"]
    assert checks["governance.tenant_quotas"]["status"] == "fail"
    assert "starved (tokens_per_day 100 < MAX_TOKENS" in checks["governance.tenant_quotas"]["why"]
    assert "zeroed (stored record unusable: tokens_per_day:" in checks["governance.tenant_quotas"]["why"]
    assert checks["workers.live"]["status"] == "fail"  # no worker on this prefix
    assert checks["ledger.writer"]["status"] == "fail"


def test_llm_endpoint_checks(dep: Deployment) -> None:
    _, checks = doctor(dep, "--probe-llm", model="scripted-no-json-schema")
    assert checks["llm.probe"]["status"] == "warn"
    assert "structured output: json_object" in checks["llm.probe"]["why"]
    code, checks = doctor(dep, llm_base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert code == 1 and checks["llm.endpoint"]["status"] == "fail"
    assert "llm.probe" not in checks  # the billed probe runs only when asked for


def test_an_endpoint_that_refuses_the_key_fails_the_llm_check(dep: Deployment) -> None:
    port = free_port()
    stub = dep._start("llm-stub-keyed", "llm-stub", "--port", str(port), "--api-key", "the-right-key")
    base = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        assert stub.poll() is None, "the keyed scripted endpoint exited"
        try:
            return call(f"{base}/models", timeout=1).status == 401  # no key: refused, as OpenAI does
        except OSError:
            return False

    try:
        eventually_sync(up, timeout_s=30, interval_s=0.05, what="the keyed scripted endpoint")
        code, checks = doctor(dep, llm_base_url=base, llm_api_key="the-right-key")
        assert checks["llm.endpoint"]["status"] == "ok", checks["llm.endpoint"]
        code, checks = doctor(dep, llm_base_url=base, llm_api_key="a-wrong-key")
        assert code == 1 and checks["llm.endpoint"]["status"] == "fail"
        assert checks["llm.endpoint"]["why"] == f"{base}/models refuses the key (401)"
        assert [n for n, c in checks.items() if c["status"] == "fail"] == ["llm.endpoint"]
    finally:
        stub.terminate()
        stub.wait(timeout=10)


def test_edges_and_the_api_route(up: Deployment) -> None:
    dep = up
    code, checks = doctor(dep, "--api-url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and checks["api.ready"]["status"] == "fail"
    # 0.0.0.0 reaches this host's API too, but a URL that is not loopback sends tokens over the network
    code, checks = doctor(dep, "--api-url", dep.url.replace("127.0.0.1", "0.0.0.0"))
    assert checks["api.tls"]["status"] == "warn" and "in clear text" in checks["api.tls"]["why"]
    code, checks = doctor(dep, metrics_host="0.0.0.0", metrics_port="9464")
    bind = checks["edges.metrics_bind"]
    assert bind["status"] == "warn" and bind["why"] == (
        "worker /metrics on every interface (0.0.0.0:9464), without authentication"
    )
    assert code == 0  # a warning alone
    admin = dep.token("admin")
    report = call(dep.url + "/v1/admin/doctor", token=admin)
    assert report.status == 200
    by_name = {c["name"]: c for c in report.body["checks"]}
    assert by_name["redis.persistence"]["status"] == "ok" and "llm.endpoint" not in by_name
    _, key = dep.agent()
    assert call(dep.url + "/v1/admin/doctor", token=key).status == 403
    metrics = call(dep.url + "/metrics").body
    assert 'plangate_doctor_check{check="redis.persistence"} 0.0' in metrics


# --- each check made to fail for real ----------------------------------------------------------------


def test_a_server_clock_off_by_more_than_the_heartbeat_tolerance_fails(up: Deployment) -> None:
    skew_s = 60  # the deployment's tolerance: 10 x PLANGATE_HEARTBEAT_S = 2.5 s
    late = {"TIME": lambda _args, _reply: array(str(int(time.time()) + skew_s), "0")}
    with proxied(up, late) as server:
        code, checks = doctor(up, redis_url=server.url)
    assert "TIME" in server.seen
    clock = checks["redis.clock_skew"]
    assert clock["status"] == "fail" and re.match(
        r"^\d+ ms from the server \(heartbeat tolerance 2.5 s\)$", clock["why"]
    )
    assert int(clock["why"].split()[0]) >= (skew_s - 1) * 1000 and "NTP" in clock["fix"]
    assert code == 1 and failed(checks) == ["redis.clock_skew"]  # the rest of the deployment is fine


def test_a_redis_older_than_7_fails_the_server_check(up: Deployment) -> None:
    def six(_args: list[bytes], reply: bytes) -> bytes:
        return bulk(re.sub(rb"redis_version:\d+\.", b"redis_version:6.", bulk_text(reply)))

    with proxied(up, {"INFO": six}) as server:
        code, checks = doctor(up, redis_url=server.url)
    assert checks["redis.server"]["status"] == "fail" and checks["redis.server"]["why"].startswith("Redis 6.")
    assert "Redis 7+" in checks["redis.server"]["fix"]
    assert code == 1 and failed(checks) == ["redis.server"]


def test_a_server_that_refuses_scripts_fails_the_script_check(up: Deployment) -> None:
    # what a managed Redis whose ACL takes scripting away answers
    refused = error("NOPERM User default has no permissions to run the 'script|load' command")
    with proxied(up, {"SCRIPT": lambda _args, _reply: refused}) as server:
        code, checks = doctor(up, redis_url=server.url)
    scripts = checks["redis.lua_scripts"]
    assert (
        scripts["status"] == "fail"
        and "does not load" in scripts["why"]
        and "no permissions" in scripts["why"]
    )
    assert code == 1 and failed(checks) == ["redis.lua_scripts"]


@contextlib.contextmanager
def another_worker(dep: Deployment, *, version: str = __version__, heartbeat_s: float = 1.0) -> Iterator[str]:
    """A second worker of the deployment that beats once, as a worker's watchdog beats (this test
    process's worker name, `version`, 2 job slots), then is silent; its beat is gone after. Its name."""
    keys = Keys(dep.prefix)
    settings = Settings(
        redis_url=dep.redis_url, key_prefix=dep.prefix, concurrency=2, heartbeat_s=heartbeat_s
    )

    async def beat() -> None:
        redis = Redis.from_url(dep.redis_url, decode_responses=True)
        try:
            await Watchdog(settings, redis, StatusStore(redis, keys, ttl_s=60), version=version).beat()
        finally:
            await redis.aclose()

    asyncio.run(beat())
    try:
        yield WORKER_NAME
    finally:
        client = sync_redis.Redis.from_url(dep.redis_url, decode_responses=True)
        client.zrem(keys.workers_accepting(), WORKER_NAME)
        client.zrem(keys.workers(), WORKER_NAME)
        client.hdel(keys.workers_info(), WORKER_NAME)
        client.close()


def test_workers_of_mixed_versions_are_a_warning(up: Deployment) -> None:
    """The deployment's worker, and a second one a version behind."""
    with another_worker(up, version="0.1.0"):
        code, checks = doctor(up)
    live = checks["workers.live"]
    assert live["status"] == "warn", live
    assert (
        live["why"].startswith("2 worker(s), 8 job slots, version ")
        and f"0.1.0, {__version__}" in live["why"]
    )
    assert "finish the rolling upgrade" in live["fix"]
    assert code == 0  # a warning alone


def test_a_worker_that_missed_its_beats_is_a_warning(up: Deployment) -> None:
    """A worker that beats every 10 ms beat once and then went silent (frozen): still counted live,
    since its beat is within the liveness window, but late by many of its own intervals."""
    with another_worker(up, heartbeat_s=0.01) as frozen:
        # the doctor's own wide window: the silent worker still counts live however slowly it starts
        code, checks = doctor(up, heartbeat_s="4")
    live = checks["workers.live"]
    assert live["status"] == "warn", live
    assert live["why"].startswith("2 worker(s), 8 job slots, version ")
    assert re.search(rf"late beats: .*{re.escape(frozen)} \(\d+\.\d s, beats every 0.01 s\)", live["why"])
    assert "frozen or starved of CPU" in live["fix"] and "rolling upgrade" not in live["fix"]
    assert code == 0


def test_a_ledger_behind_the_codes_migrations_fails(up: Deployment, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    migrations.migrate_file(old, target=migrations.LATEST - 1)  # as the previous plangate left it
    code, checks = doctor(up, ledger_path=str(old))
    schema = checks["ledger.migrations"]
    assert schema["status"] == "fail"
    assert schema["why"] == f"at version {migrations.LATEST - 1}, this plangate expects {migrations.LATEST}"
    assert schema["fix"] == "`plangate ledger migrate`"
    # and this empty file is not the one the deployment's writer published its head for in Redis
    assert code == 1 and failed(checks) == ["ledger.migrations", "ledger.chain"], checks["ledger.chain"]


def test_a_ledger_path_in_no_writable_directory_fails(up: Deployment, tmp_path: Path) -> None:
    code, checks = doctor(up, ledger_path=str(tmp_path / "no-such-dir" / "ledger.db"))
    assert (
        checks["ledger.file"]["status"] == "fail"
        and "not a writable directory" in checks["ledger.file"]["why"]
    )
    assert code == 1 and failed(checks) == ["ledger.file"]


def test_a_ledger_backlog_above_the_bound_fails(dep: Deployment) -> None:
    from worker.doctor.ledger_checks import MAX_BACKLOG

    prefix = "pgtest-doctor-backlog:"
    stream = Keys(prefix).ledger_stream()
    client = sync_redis.Redis.from_url(dep.redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:  # events no writer takes
            for _ in range(MAX_BACKLOG + 1):
                pipe.xadd(stream, {"e": "1"})
            pipe.execute()
        code, checks = doctor(dep, key_prefix=prefix)
    finally:
        client.delete(stream)
        client.close()
        delete_prefix(dep.redis_url, prefix)
    backlog = checks["ledger.backlog"]
    assert (
        backlog["status"] == "fail" and backlog["why"] == f"{MAX_BACKLOG + 1} event(s) in the ledger stream"
    )
    assert code == 1


def test_an_api_that_is_not_ready_fails_its_check(up: Deployment) -> None:
    """A real `plangate serve` whose /readyz answers 503: no worker serves its key prefix."""
    prefix = "pgtest-doctor-unready:"
    port = free_port()
    api = up.start_process("serve-unready", "serve", "--port", str(port), key_prefix=prefix)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", api, "plangate serve")
        code, checks = doctor(up, "--api-url", url)
    finally:
        api.terminate()
        api.wait(timeout=20)
        delete_prefix(up.redis_url, prefix)
    ready = checks["api.ready"]
    assert ready["status"] == "fail" and ready["why"] == f"{url}/readyz answered 503: no live worker"
    assert code == 1 and failed(checks) == ["api.ready"]
