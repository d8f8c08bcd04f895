"""The HTTP API end to end: `plangate serve` and `plangate worker` as real processes on a real Redis,
the scripted LLM endpoint, tokens issued with the CLI, and plain HTTP (urllib, and Node's fetch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from governance.vocabulary import JobState
from tests.conftest import free_port
from tests.e2e.conftest import plangate_cmd
from worker.api.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH

pytestmark = pytest.mark.e2e

NODE_CLIENT = Path(__file__).with_name("api_client.mjs")
_UP_DEADLINE_S = 20.0
AGENT = "llm-planner-001"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(
    url: str, method: str = "GET", *, token: str | None = None, body: Any = None, raw: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 30,
) -> Answer:  # fmt: skip
    """One HTTP request; the answer whatever its status (JSON bodies decoded)."""
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
    headers_lower = {k.lower(): v for k, v in got.items()}
    decoded: Any = text.decode()
    if "json" in headers_lower.get("content-type", ""):
        decoded = json.loads(text)
    return Answer(status, headers_lower, decoded)


def sse_events(url: str, token: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    """Read a Server-Sent Events stream to its end: each event's id, kind and decoded data."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    request = urllib.request.Request(url, headers=headers)
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with urllib.request.urlopen(request, timeout=60) as response:
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


@dataclass
class Api:
    url: str
    cli: Callable[..., subprocess.CompletedProcess[str]]
    log: Path


@pytest.fixture
def api(
    e2e_env: dict[str, str], start_plangate: Callable[..., subprocess.Popen], tmp_path: Path
) -> Iterator[Api]:
    """`plangate serve` on a free port, its tenant `default` saved."""

    def cli(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        env = {**e2e_env, **{f"PLANGATE_{k.upper()}": v for k, v in settings.items()}}
        return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=60)

    assert cli("tenants", "add", "default").returncode == 0
    yield start_api(start_plangate, tmp_path, cli)


def start_api(
    start_plangate: Callable[..., subprocess.Popen], tmp_path: Path, cli: Callable[..., Any], **settings: str
) -> Api:
    """Start one more `plangate serve` and wait until /healthz answers."""
    port = free_port()
    proc = start_plangate("serve", "serve", "--port", str(port), **settings)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _UP_DEADLINE_S
    while True:
        assert proc.poll() is None, "plangate serve exited"
        try:
            if call(url + "/healthz", timeout=1).status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "plangate serve did not answer /healthz"
        time.sleep(0.05)
    logs = sorted(tmp_path.glob("serve-*.log"))
    return Api(url, cli, logs[-1])


def issue(api: Api, *args: str) -> str:
    """A token from the CLI (`tokens issue ...`), or an agent's key (`agents issue-key ID`)."""
    done = api.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()[-1]


def agent_key(api: Api, agent_id: str = AGENT) -> str:
    """The agent's key (`agents issue-key` prints it alone): its API token too."""
    return issue(api, "agents", "issue-key", agent_id)


def test_an_agent_token_submits_follows_the_stream_and_reads_the_plan(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    key = agent_key(api)
    start_workers(1)

    submitted = call(api.url + "/v1/jobs", "POST", token=key, body={"description": "Plan the API check"})

    assert submitted.status == 202, submitted.body
    job_id = submitted.body["job_id"]
    assert submitted.headers["location"] == f"/v1/jobs/{job_id}"
    assert submitted.body["agent_id"] == AGENT and submitted.body["state"] == JobState.QUEUED
    events = sse_events(f"{api.url}/v1/jobs/{job_id}/events", key)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "terminal" and "phase" in kinds
    final = events[-1]["data"]["status"]
    assert final["state"] == JobState.DONE and final["output"]["plan"]
    again = call(f"{api.url}/v1/jobs/{job_id}", token=key)
    assert again.status == 200 and again.body == final
    # resumed after the last phase event, the stream holds only what came after it
    last_phase = [e for e in events if e["event"] == "phase"][-1]
    resumed = sse_events(f"{api.url}/v1/jobs/{job_id}/events", key, last_event_id=last_phase["id"])
    assert [e["id"] for e in resumed] == [e["id"] for e in events[events.index(last_phase) + 1 :]]
    assert key not in api.log.read_text()


def test_wait_long_polls_until_the_job_ends(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    key = agent_key(api)
    job = call(api.url + "/v1/jobs", "POST", token=key, body={"description": "Plan the long poll"}).body
    queued = call(f"{api.url}/v1/jobs/{job['job_id']}?wait=0.2", token=key)
    assert (
        queued.status == 200 and queued.body["state"] == JobState.QUEUED
    )  # no worker yet: answers after 0.2 s
    start_workers(1)
    done = call(f"{api.url}/v1/jobs/{job['job_id']}?wait=30", token=key)
    assert done.body["state"] == JobState.DONE
    assert call(f"{api.url}/v1/jobs/{job['job_id']}?wait=61", token=key).status == 422


def test_identity_comes_from_the_token_never_the_body(api: Api) -> None:
    key = agent_key(api)
    assert api.cli("tenants", "add", "other").returncode == 0
    url = api.url + "/v1/jobs"

    other_agent = call(url, "POST", token=key, body={"agent_id": "someone-else", "description": "Plan x"})
    other_tenant = call(url, "POST", token=key, body={"tenant_id": "other", "description": "Plan x"})
    key_in_body = call(url, "POST", token=key, body={"agent_key": key, "description": "Plan x"})

    assert other_agent.status == 403 and "agent" in other_agent.body["detail"]
    assert other_tenant.status == 403 and "tenant" in other_tenant.body["detail"]
    assert key_in_body.status == 422 and key_in_body.headers["content-type"] == "application/problem+json"
    assert key not in json.dumps(key_in_body.body)


def test_tokens_401_403_404_and_revocation(api: Api) -> None:
    key = agent_key(api)
    assert api.cli("tenants", "add", "other").returncode == 0
    other = issue(api, "tokens", "issue", "--scope", "tenant", "--tenant", "other")
    auditor = issue(api, "tokens", "issue", "--scope", "auditor")
    job_id = call(api.url + "/v1/jobs", "POST", token=key, body={"description": "Plan the scopes"}).body[
        "job_id"
    ]
    job_url = f"{api.url}/v1/jobs/{job_id}"

    assert call(job_url).status == 401
    assert call(job_url).headers["www-authenticate"] == "Bearer"
    assert call(job_url, token="pgt_not-a-token").status == 401
    hidden, missing = call(job_url, token=other), call(f"{api.url}/v1/jobs/no-such-job", token=other)
    assert hidden.status == missing.status == 404  # another tenant's job looks like no job at all
    assert hidden.body["code"] == missing.body["code"] == "not_found"
    assert call(job_url, token=auditor).status == 200  # auditors read every job
    assert call(api.url + "/v1/jobs", "POST", token=auditor, body={"description": "x"}).status == 403
    assert call(job_url + "/cancel", "POST", token=auditor).status == 403
    assert call(api.url + "/v1/agents/" + AGENT, token=key).status == 403

    listed = json.loads(api.cli("tokens", "list", "--json").stdout)
    auditor_id = next(t["token_id"] for t in listed if t["scope"] == "auditor")
    assert api.cli("tokens", "revoke", auditor_id, "--reason", "test").returncode == 0
    assert call(job_url, token=auditor).status == 401  # at once
    assert api.cli("agents", "revoke", AGENT, "--reason", "test").returncode == 0
    revoked = call(job_url, token=key)
    assert revoked.status == 401 and revoked.body["code"] == "revoked"
    assert auditor not in api.log.read_text() and key not in api.log.read_text()


def test_a_tenant_token_submits_for_its_agents_and_cancels(api: Api) -> None:
    token = issue(api, "tokens", "issue", "--scope", "tenant", "--tenant", "default")
    agent_key(api)  # the agent needs a key: the tenant token stands in for it
    url = api.url + "/v1/jobs"

    unnamed = call(url, "POST", token=token, body={"description": "Plan for whom?"})
    job = call(url, "POST", token=token, body={"agent_id": AGENT, "description": "Plan by tenant"})
    cancelled = call(f"{url}/{job.body['job_id']}/cancel", "POST", token=token)
    again = call(f"{url}/{job.body['job_id']}/cancel", "POST", token=token)

    assert unnamed.status == 403
    assert job.status == 202
    assert cancelled.status == 200 and cancelled.body["state"] == JobState.CANCELLED
    assert again.status == 409


def test_a_tenant_tokens_job_passes_the_workers_key_check(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    token = issue(api, "tokens", "issue", "--scope", "tenant", "--tenant", "default")
    agent_key(api)
    start_workers(1)
    job = call(
        api.url + "/v1/jobs", "POST", token=token, body={"agent_id": AGENT, "description": "Plan keyed"}
    )
    done = call(f"{api.url}/v1/jobs/{job.body['job_id']}?wait=30", token=token)
    assert done.body["state"] == JobState.DONE, done.body


def test_idempotency_same_body_same_job_other_body_409(api: Api) -> None:
    key = agent_key(api)
    url, idem = api.url + "/v1/jobs", {"Idempotency-Key": "order-42"}
    first = call(url, "POST", token=key, body={"description": "Plan once"}, headers=idem)
    second = call(url, "POST", token=key, body={"description": "Plan once"}, headers=idem)
    changed = call(url, "POST", token=key, body={"description": "Plan twice"}, headers=idem)
    assert first.status == second.status == 202
    assert first.body["job_id"] == second.body["job_id"]
    assert changed.status == 409 and changed.body["code"] == "idempotency_conflict"


def test_batch_answers_each_item(api: Api) -> None:
    key = agent_key(api)
    items = [
        {"description": "Plan a"},
        {"description": "Plan b", "agent_id": "not-mine"},
        {"description": " "},
    ]
    batch = call(api.url + "/v1/jobs/batch", "POST", token=key, body={"jobs": items})
    assert batch.status == 202
    statuses = [r["status"] for r in batch.body["results"]]
    assert statuses == [202, 403, 400]
    assert batch.body["results"][0]["job"]["state"] == JobState.QUEUED


def test_limits_at_the_edge(api: Api) -> None:
    key = agent_key(api)
    url = api.url + "/v1/jobs"
    too_big = call(url, "POST", token=key, raw=b'{"description": "' + b"x" * MAX_BODY_BYTES + b'"}')
    too_deep = call(url, "POST", token=key, raw=b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    not_json = call(url, "POST", token=key, raw=b"{not json")
    assert too_big.status == 413 and too_big.body["code"] == "too_large"
    assert too_deep.status == 413 and too_deep.body["code"] == "too_deep"
    assert not_json.status == 422 and not_json.headers["content-type"] == "application/problem+json"


def test_the_rate_limit_holds_across_two_api_processes(
    api: Api, start_plangate: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    limit = 5
    first = start_api(start_plangate, tmp_path, api.cli, api_rate_limit_per_s=str(limit))
    second = start_api(start_plangate, tmp_path, api.cli, api_rate_limit_per_s=str(limit))
    key = agent_key(api)
    started = time.time()
    answers = [call(f"{(first, second)[n % 2].url}/v1/jobs/nothing", token=key).status for n in range(40)]
    windows = int(time.time()) - int(started) + 1  # the limit counts per whole second
    assert set(answers) <= {404, 429}
    assert answers.count(404) <= limit * windows, answers  # per process it would be twice that
    assert answers.count(429) > 0


def test_health_readiness_metrics_and_openapi(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    assert call(api.url + "/healthz").body["status"] == "ok"
    unready = call(api.url + "/readyz")
    assert unready.status == 503 and "no live worker" in unready.body["detail"]
    start_workers(1)
    deadline = time.monotonic() + _UP_DEADLINE_S
    while call(api.url + "/readyz").status != 200:
        assert time.monotonic() < deadline, "readyz never became ready with a worker up"
        time.sleep(0.1)
    spec = call(api.url + "/openapi.json").body
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/cancel"} <= set(
        spec["paths"]
    )
    assert "plangate_api_requests" in call(api.url + "/metrics").body


@pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed: the non-Python client is skipped"
)
def test_a_node_client_submits_streams_and_reads_the_result(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    key = agent_key(api)
    start_workers(1)
    done = subprocess.run(
        ["node", str(NODE_CLIENT), api.url, key, "Plan from Node"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["events"][-1] == "terminal" and "phase" in result["events"]
    assert result["status"]["state"] == JobState.DONE and result["status"]["output"]["plan"]


def test_the_cli_over_http_needs_no_redis(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    key = agent_key(api)
    start_workers(1)
    # The agent's environment: the API's URL and its token, and a Redis URL that leads nowhere.
    http = {"api_url": api.url, "token": key, "redis_url": "redis://127.0.0.1:1/0"}

    submitted = api.cli("submit", "--description", "Plan over HTTP", "--wait", "--json", **http)
    assert submitted.returncode == 0, submitted.stderr
    final = json.loads(submitted.stdout)
    assert final["state"] == JobState.DONE and final["agent_id"] == AGENT
    status = api.cli("status", final["job_id"], "--json", **http)
    assert json.loads(status.stdout) == final
    shown = api.cli("status", final["job_id"], **http)
    assert shown.returncode == 0 and f"job {final['job_id']}: done" in shown.stdout
    watched = api.cli("watch", final["job_id"], "--json", **http)
    assert json.loads(watched.stdout.splitlines()[-1])["kind"] == "terminal"
    assert api.cli("cancel", final["job_id"], **http).returncode == 2  # it had ended
    assert api.cli("wait", final["job_id"], **http).returncode == 0

    assert api.cli("status", final["job_id"], **{**http, "token": "pgt_wrong"}).returncode == 2
    assert api.cli("status", "no-such-job", **http).returncode == 2
    down = api.cli("status", final["job_id"], **{**http, "api_url": "http://127.0.0.1:1"})
    assert down.returncode == 3 and "cannot reach the API" in down.stderr and "Traceback" not in down.stderr
    bad_url = api.cli("status", final["job_id"], "--api", "localhost:8080", "--token", key)
    assert bad_url.returncode == 2 and "not an API URL" in bad_url.stderr


def test_plan_client_http_has_the_redis_clients_methods(
    api: Api, start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    import asyncio

    from worker.client import PlanClient
    from worker.errors import JobNotFound, NotCancellable, Unauthenticated

    key = agent_key(api)
    start_workers(1)

    async def scenario() -> None:
        async with PlanClient.http(api.url, key) as client:
            job_id = await client.submit({"description": "Plan from PlanClient.http"})
            kinds = [event.kind async for event in client.watch(job_id)]
            final = await client.wait(job_id, timeout=30)
            assert kinds[-1] == "terminal" and final.state is JobState.DONE and final.output is not None
            assert (await client.status(job_id)) == final
            with pytest.raises(NotCancellable):
                await client.cancel(job_id)
            with pytest.raises(JobNotFound):
                await client.status("no-such-job")
        with pytest.raises(Unauthenticated):
            await PlanClient.http(api.url, "pgt_wrong").status(job_id)

    asyncio.run(scenario())


def test_listing_jobs_by_token_filter_and_cursor(api: Api) -> None:
    key = agent_key(api)
    added = api.cli("agents", "add", "second-planner", "--issue-key", "--json")
    assert added.returncode == 0, added.stderr
    second = json.loads(added.stdout)["agent_key"]
    tenant = issue(api, "tokens", "issue", "--scope", "tenant", "--tenant", "default")
    assert api.cli("tenants", "add", "other").returncode == 0
    other = issue(api, "tokens", "issue", "--scope", "tenant", "--tenant", "other")
    url = api.url + "/v1/jobs"
    mine = [call(url, "POST", token=key, body={"description": f"Plan {n}"}).body["job_id"] for n in range(5)]
    theirs = [
        call(url, "POST", token=second, body={"description": f"Plan {n}"}).body["job_id"] for n in range(2)
    ]
    cancelled = call(f"{url}/{mine[0]}/cancel", "POST", token=key).body["job_id"]

    def listed(token: str, query: str = "") -> list[str]:
        ids, cursor = [], None
        while True:
            page = call(f"{url}?limit=2{query}" + (f"&cursor={cursor}" if cursor else ""), token=token).body
            assert len(page["jobs"]) <= 2
            ids += [job["job_id"] for job in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    assert sorted(listed(key)) == sorted(mine)  # an agent token: its agent's jobs only
    everything = listed(tenant)
    assert sorted(everything) == sorted(mine + theirs) and len(set(everything)) == len(everything)
    assert listed(tenant, "&state=cancelled") == [cancelled]
    assert sorted(listed(tenant, "&agent_id=second-planner")) == sorted(theirs)
    assert listed(other) == []
    assert call(f"{url}?tenant_id=default", token=other).status == 403
    assert call(f"{url}?cursor=nonsense", token=tenant).status == 400
