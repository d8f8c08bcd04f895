"""Signed webhooks end to end: `plangate serve`, `plangate worker` (its deliverer inside) and
`plangate webhooks run` as real processes on a real Redis, and a receiver on loopback that checks every
signature with a verifier written from the Standard Webhooks specification (tests/webhook_receiver.py).

The tenants here allow 127.0.0.1 explicitly (`allow_private`), which the SSRF guard refuses otherwise.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import signed_note
from ledger.signing import load_public_key
from plangate_base.vocabulary import (
    DEPLOYMENT_WEBHOOKS,
    AttemptOutcome,
    DeliveryState,
    EventKind,
    JobState,
    WebhookEvent,
)
from tests.conftest import free_port
from tests.e2e.api_deployment import Deployment, call
from tests.eventually import eventually_sync
from tests.webhook_receiver import Receiver, start_receiver, verify

pytestmark = pytest.mark.e2e

# One attempt's limit (a claim's lease is 2 x this + 1 s): long enough that every healthy delivery of the
# hanging-receiver test lands before the hanging endpoint's first attempts run out, on a loaded machine.
_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got = start_receiver()
    try:
        yield got
    finally:
        got.stop()


@pytest.fixture(scope="module")
def dep(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(redis_base_url, tmp_path_factory.mktemp("webhooks"))
    deployment.env.update(
        PLANGATE_WEBHOOK_TIMEOUT_S=str(_TIMEOUT_S),
        PLANGATE_WEBHOOK_RETRY_BASE_S="0.05",
        PLANGATE_WEBHOOK_RETRY_CAP_S="2",
        PLANGATE_WEBHOOK_RETRY_WINDOW_S="120",
        PLANGATE_WEBHOOK_ENDPOINT_CONCURRENCY="2",
        PLANGATE_WEBHOOK_POLL_S="0.05",
        PLANGATE_LEDGER_ANCHOR_INTERVAL_S="0.5",  # checkpoints (and their webhooks) twice a second
    )
    try:
        yield deployment.start(workers=1)
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def admin(dep: Deployment) -> str:
    return dep.token("admin")


def _name() -> str:
    return uuid.uuid4().hex[:10]


def _tenant(dep: Deployment, admin: str, *, hosts: list[str], allow_private: bool = True) -> tuple[str, str]:
    """A new tenant whose webhooks may go to `hosts`, and a tenant token of it."""
    tenant_id = dep.tenant()
    answer = call(
        f"{dep.url}/v1/tenants/{tenant_id}/webhooks/policy",
        "PUT",
        token=admin,
        body={"hosts": hosts, "allow_private": allow_private},
    )
    assert answer.status == 200, answer.body
    return tenant_id, dep.token("tenant", tenant_id)


def _endpoint(dep: Deployment, tenant_id: str, token: str, url: str, *events: WebhookEvent) -> dict[str, Any]:
    answer = call(
        f"{dep.url}/v1/tenants/{tenant_id}/webhooks/endpoints",
        "POST",
        token=token,
        body={"url": url, "events": list(events or [WebhookEvent.JOB_TERMINAL])},
    )
    assert answer.status == 201, answer.body
    assert answer.body["secret"].startswith("whsec_")
    return answer.body


def _submit(dep: Deployment, key: str, **extra: Any) -> str:
    answer = call(f"{dep.url}/v1/jobs", "POST", token=key, body={"description": "Plan the hook", **extra})
    assert answer.status == 202, answer.body
    return str(answer.body["job_id"])


def _status(dep: Deployment, key: str, job_id: str, wait: float = 0) -> dict[str, Any]:
    answer = call(f"{dep.url}/v1/jobs/{job_id}?wait={wait}", token=key)
    assert answer.status == 200, answer.body
    return dict(answer.body)


def _attempts(dep: Deployment, key: str, job_id: str, n: int) -> list[dict[str, Any]]:
    """The job's webhook attempts, once there are `n`."""
    return eventually_sync(
        lambda: a if len(a := _status(dep, key, job_id)["webhooks"]) >= n else None,
        timeout_s=30,
        what=f"{n} webhook attempts on job {job_id}",
    )


def _delivered_events(dep: Deployment, job_id: str) -> list[dict[str, Any]]:
    done = dep.cli("ledger", "show", job_id, "--json")
    if done.returncode != 0:
        return []
    return [e for e in json.loads(done.stdout)["events"] if e["kind"] == EventKind.WEBHOOK_DELIVERED]


def _received(receiver: Receiver, name: str, n: int, timeout_s: float = 30) -> list[Any]:
    return eventually_sync(
        lambda: got if len(got := receiver.got(name)) >= n else None,
        timeout_s=timeout_s,
        what=lambda: f"{n} requests to {name} (got {len(receiver.got(name))})",
    )


def test_a_callback_and_an_endpoint_each_get_the_terminal_event_signed(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    endpoint_name, callback_name = _name(), _name()
    endpoint = _endpoint(dep, tenant_id, token, f"{receiver.base}/ok/{endpoint_name}")
    issued = call(f"{dep.url}/v1/tenants/{tenant_id}/webhooks/callback-secret", "POST", token=token)
    assert issued.status == 201
    callback_secret = issued.body["secret"]

    job_id = _submit(dep, key, callback_url=f"{receiver.base}/ok/{callback_name}")

    final = _status(dep, key, job_id, wait=30)
    assert final["state"] == JobState.DONE
    [to_endpoint] = _received(receiver, endpoint_name, 1)
    [to_callback] = _received(receiver, callback_name, 1)
    assert verify(endpoint["secret"], to_endpoint.headers, to_endpoint.body)
    assert verify(callback_secret, to_callback.headers, to_callback.body)
    assert not verify(callback_secret, to_endpoint.headers, to_endpoint.body)  # each its own secret
    assert not verify(endpoint["secret"], to_endpoint.headers, to_endpoint.body + b" ")
    for got in (to_endpoint, to_callback):
        body = got.json()
        assert body["type"] == WebhookEvent.JOB_TERMINAL
        assert body["data"]["job_id"] == job_id and body["data"]["state"] == JobState.DONE
        assert body["data"]["output"] == final["output"]
    assert to_endpoint.headers["webhook-id"] == to_callback.headers["webhook-id"]  # one event, one id
    attempts = _attempts(dep, key, job_id, 2)
    assert {a["endpoint_id"] for a in attempts} >= {endpoint["endpoint_id"]}
    assert all(a["outcome"] == AttemptOutcome.DELIVERED and a["status"] == 204 for a in attempts)
    assert all(a["latency_ms"] >= 0 and a["attempt"] == 1 for a in attempts)
    shown = json.dumps(_status(dep, key, job_id))
    assert endpoint["secret"] not in shown and callback_secret not in shown
    assert "Plan the hook" not in json.dumps(attempts)  # outcomes only, never the body
    delivered = eventually_sync(
        lambda: _delivered_events(dep, job_id), timeout_s=30, what="webhook_delivered"
    )
    assert len(delivered) == 1  # once, though two receivers took it
    status_text = dep.out("status", job_id)  # the CLI shows the attempts too (its last line)
    assert "webhook job.terminal" in status_text and "delivered" in status_text
    logged = dep.logged()
    assert endpoint["secret"] not in logged and callback_secret not in logged


def test_a_receiver_answering_503_three_times_gets_the_same_webhook_id_until_it_takes_it(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    name = _name()
    endpoint = _endpoint(dep, tenant_id, token, f"{receiver.base}/flaky/{name}")

    job_id = _submit(dep, key)

    got = _received(receiver, name, 4)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert all(verify(endpoint["secret"], r.headers, r.body) for r in got)
    attempts = _attempts(dep, key, job_id, 4)
    assert [a["status"] for a in attempts] == [503, 503, 503, 200]
    assert [a["outcome"] for a in attempts] == [AttemptOutcome.RETRY] * 3 + [AttemptOutcome.DELIVERED]
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert eventually_sync(lambda: len(_delivered_events(dep, job_id)) == 1, timeout_s=30, what="ledger")


def test_a_429_is_retried_no_sooner_than_its_retry_after(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    name = _name()
    _endpoint(dep, tenant_id, token, f"{receiver.base}/slow-start/{name}")

    job_id = _submit(dep, key)

    first, second = _received(receiver, name, 2)
    assert second.at - first.at >= 1.0  # Retry-After: 1, against a 50 ms first backoff
    assert [a["status"] for a in _attempts(dep, key, job_id, 2)] == [429, 200]


def test_another_4xx_goes_dead_at_once_and_redeliver_sends_it_again_with_the_same_id(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    name = _name()
    endpoint = _endpoint(dep, tenant_id, token, f"{receiver.base}/reject/{name}")
    job_id = _submit(dep, key)
    [refused] = _received(receiver, name, 1)
    [attempt] = _attempts(dep, key, job_id, 1)
    assert attempt["status"] == 400 and attempt["outcome"] == AttemptOutcome.DEAD

    def dead() -> list[dict[str, Any]]:
        done = dep.cli("webhooks", "failed", "--tenant", tenant_id, "--json")
        assert done.returncode == 0, done.stderr
        return [d for d in json.loads(done.stdout) if d["job_id"] == job_id]

    [record] = dead()
    assert (
        record["state"] == DeliveryState.DEAD and record["attempts"] == 1 and record["last_status"] == "400"
    )
    doctor = json.loads(dep.cli("doctor", "--json").stdout)
    [check] = [c for c in doctor["checks"] if c["name"] == "webhooks.deliveries"]
    assert check["status"] == "warn" and "gave up" in check["why"] and "redeliver" in check["fix"]
    assert (
        record["endpoint_id"] == endpoint["endpoint_id"] and record["msg_id"] == refused.headers["webhook-id"]
    )
    listed = call(f"{dep.url}/v1/webhooks/failed", token=token)
    assert listed.status == 200 and record["delivery_id"] in {d["delivery_id"] for d in listed.body}
    other_tenant = dep.token("tenant", dep.tenant())
    listed = call(f"{dep.url}/v1/webhooks/failed", token=other_tenant)
    assert record["delivery_id"] not in {d["delivery_id"] for d in listed.body}
    assert len(receiver.got(name)) == 1  # never retried

    receiver.accept(name)
    assert "1 delivery due again" in dep.out("webhooks", "redeliver", record["delivery_id"])

    _first, again = _received(receiver, name, 2)
    assert again.headers["webhook-id"] == refused.headers["webhook-id"]
    assert verify(endpoint["secret"], again.headers, again.body) and again.body == refused.body
    assert _attempts(dep, key, job_id, 2)[-1]["outcome"] == AttemptOutcome.DELIVERED
    assert eventually_sync(lambda: not dead(), timeout_s=10, what="the dead letter gone")


def test_redirects_are_not_followed(dep: Deployment, admin: str, receiver: Receiver) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    name = _name()
    _endpoint(dep, tenant_id, token, f"{receiver.base}/redirect/{name}")

    job_id = _submit(dep, key)

    [attempt] = _attempts(dep, key, job_id, 1)
    assert attempt["status"] == 302 and attempt["outcome"] == AttemptOutcome.DEAD
    assert attempt["error"] == "redirect_not_followed"
    assert len(receiver.got(name)) == 1 and receiver.got(f"{name}-redirected") == []


def test_the_ssrf_guard_refuses_hosts_off_the_list_and_private_addresses_unless_allowed(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1", "localhost"], allow_private=False)
    _agent, key = dep.agent(tenant_id)
    endpoints = f"{dep.url}/v1/tenants/{tenant_id}/webhooks/endpoints"

    loopback = call(
        endpoints, "POST", token=token, body={"url": f"{receiver.base}/ok/x", "events": ["job.terminal"]}
    )
    off_list = call(
        endpoints, "POST", token=token, body={"url": "https://example.com/h", "events": ["job.terminal"]}
    )
    not_http = call(
        endpoints, "POST", token=token, body={"url": "file:///etc/passwd", "events": ["job.terminal"]}
    )
    by_tenant = call(
        f"{dep.url}/v1/tenants/{tenant_id}/webhooks/policy", "PUT", token=token, body={"allow_private": True}
    )
    call(f"{dep.url}/v1/tenants/{tenant_id}/webhooks/callback-secret", "POST", token=token)
    callback = call(
        f"{dep.url}/v1/jobs",
        "POST",
        token=key,
        body={"description": "x", "callback_url": "https://example.com/cb"},
    )

    assert loopback.status == 400 and "private" in loopback.body["detail"]
    assert off_list.status == 400 and "allow list" in off_list.body["detail"]
    assert not_http.status == 400
    assert by_tenant.status == 403  # only admins lift the guard
    assert callback.status == 400 and "allow list" in callback.body["detail"]
    # A name on the list is registered, but the addresses it resolves to are checked as it connects.
    name = _name()
    _endpoint(dep, tenant_id, token, f"http://localhost:{receiver.port}/ok/{name}")
    job_id = _submit(dep, key)
    [attempt] = _attempts(dep, key, job_id, 1)
    assert attempt["outcome"] == AttemptOutcome.DEAD and attempt["error"] == "refused_address"
    assert receiver.got(name) == []


def test_a_hanging_receiver_does_not_delay_another_endpoint(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    hanging, healthy = _name(), _name()
    stuck = _endpoint(dep, tenant_id, token, f"{receiver.base}/hang/{hanging}")
    _endpoint(dep, tenant_id, token, f"{receiver.base}/ok/{healthy}")
    try:
        jobs = [_submit(dep, key) for _ in range(6)]

        got = _received(receiver, healthy, 6, timeout_s=_TIMEOUT_S)

        # Every healthy delivery arrived while the hanging endpoint still holds its first two (its
        # concurrency limit), and before any of its attempts ran out of time.
        assert {r.json()["data"]["job_id"] for r in got} == set(jobs)
        assert len(receiver.got(hanging)) <= 2 and receiver.most_open_hangs <= 2
        for job_id in jobs:
            hooks = _status(dep, key, job_id)["webhooks"]
            assert not [a for a in hooks if a["endpoint_id"] == stuck["endpoint_id"]]
    finally:
        receiver.release(hanging)


def test_review_and_revocation_events_reach_a_subscribed_endpoint(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    agent_id, key = dep.agent(tenant_id)
    name = _name()
    events = (WebhookEvent.REVIEW_REQUESTED, WebhookEvent.REVIEW_DECIDED, WebhookEvent.AGENT_REVOKED)
    endpoint = _endpoint(dep, tenant_id, token, f"{receiver.base}/ok/{name}", *events)
    reviewer = dep.reviewer(tenant_id)

    job_id = _submit(dep, key, model="scripted-low-confidence")
    requested = _received(receiver, name, 1)[0].json()
    decided = call(f"{dep.url}/v1/reviews/{job_id}/approve", "POST", token=reviewer, body={"note": "fine"})
    assert decided.status == 200, decided.body
    revoked = call(f"{dep.url}/v1/agents/{agent_id}/revoke", "POST", token=admin, body={"reason": "test"})
    assert revoked.status == 200

    got = _received(receiver, name, 3)
    assert all(verify(endpoint["secret"], r.headers, r.body) for r in got)
    bodies = [r.json() for r in got]
    assert requested["type"] == WebhookEvent.REVIEW_REQUESTED and requested["data"]["job_id"] == job_id
    assert (
        bodies[1]["type"] == WebhookEvent.REVIEW_DECIDED
        and bodies[1]["data"]["review"]["decision"] == "approved"
    )
    assert bodies[2]["type"] == WebhookEvent.AGENT_REVOKED and bodies[2]["data"]["agent_id"] == agent_id
    assert len({r.headers["webhook-id"] for r in got}) == 3


def test_a_delivery_survives_its_deliverer_killed_mid_request(
    dep: Deployment, admin: str, receiver: Receiver
) -> None:
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    _agent, key = dep.agent(tenant_id)
    name = _name()
    endpoint = _endpoint(dep, tenant_id, token, f"{receiver.base}/hang/{name}")
    job_id = _submit(dep, key)
    [held] = _received(receiver, name, 1)  # the worker's deliverer is inside this request now
    workers = [p for p, log in zip(dep.procs, dep.logs, strict=True) if log.name.startswith("worker-")]
    for proc in workers:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    receiver.release(name)

    # Another worker without a deliverer, and a deliverer process of its own (with /metrics).
    dep.start_process("worker", "worker", webhooks_in_worker="false")
    metrics_port = free_port()
    dep.start_process("webhooks", "webhooks", "run", metrics_port=str(metrics_port))

    _first, again = _received(receiver, name, 2, timeout_s=2 * _TIMEOUT_S + 30)
    assert again.headers["webhook-id"] == held.headers["webhook-id"]  # at least once, one id
    assert verify(endpoint["secret"], again.headers, again.body)
    [attempt] = _attempts(dep, key, job_id, 1)  # the killed attempt never recorded an outcome
    assert attempt["attempt"] == 2 and attempt["outcome"] == AttemptOutcome.DELIVERED
    assert eventually_sync(lambda: len(_delivered_events(dep, job_id)) == 1, timeout_s=30, what="ledger")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert (
        'plangate_webhook_attempts_total{event="job.terminal",outcome="delivered",status="2xx"} 1.0'
        in metrics
    )


def test_operators_manage_allow_lists_and_endpoints_with_the_cli(dep: Deployment, receiver: Receiver) -> None:
    tenant_id = dep.tenant()
    refused = dep.cli("webhooks", "add", tenant_id, f"{receiver.base}/ok/x", "--event", "job.terminal")
    assert refused.returncode == 2 and "allow list" in refused.stderr

    allowed = json.loads(
        dep.out("webhooks", "allow", tenant_id, "--host", "127.0.0.1", "--allow-private", "--json")
    )
    added = json.loads(
        dep.out("webhooks", "add", tenant_id, f"{receiver.base}/ok/x", "--event", "job.terminal", "--json")
    )
    listed = json.loads(dep.out("webhooks", "list", tenant_id, "--json"))
    rotated = json.loads(dep.out("webhooks", "rotate-secret", tenant_id, added["endpoint_id"], "--json"))
    removed = dep.out("webhooks", "remove", tenant_id, added["endpoint_id"])

    assert allowed == {"hosts": ["127.0.0.1"], "allow_private": True}
    assert added["secret"].startswith("whsec_") and added["events"] == ["job.terminal"]
    assert [e["endpoint_id"] for e in listed] == [added["endpoint_id"]] and "secret" not in listed[0]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != added["secret"]
    assert removed == f"endpoint {added['endpoint_id']} removed"
    assert json.loads(dep.out("webhooks", "list", tenant_id, "--json")) == []


def test_signed_checkpoints_go_to_the_deployments_endpoint_and_an_auditor_proves_a_job_with_one(
    dep: Deployment, admin: str, receiver: Receiver, tmp_path: Path
) -> None:
    """The writer's checkpoints are a deployment's event: an auditor token subscribes the deployment's
    endpoint (`*`, whose allow list admins set); a tenant token can do neither, and its own endpoint never
    gets one. Each delivery is signed, its note verifies with the ledger's public key, and an auditor proves
    a job against the delivered note with nothing but the bundle and that key."""
    tenant_id, token = _tenant(dep, admin, hosts=["127.0.0.1"])
    auditor = dep.token("auditor")
    policy_url = f"{dep.url}/v1/tenants/{DEPLOYMENT_WEBHOOKS}/webhooks/policy"
    loopback = {"hosts": ["127.0.0.1"], "allow_private": True}
    assert call(policy_url, "PUT", token=auditor, body=loopback).status == 403
    assert call(policy_url, "PUT", token=token, body=loopback).status == 403
    assert call(policy_url, "PUT", token=admin, body=loopback).status == 200
    checkpoints = [WebhookEvent.LEDGER_CHECKPOINT.value]
    to_deployment = call(
        f"{dep.url}/v1/tenants/{DEPLOYMENT_WEBHOOKS}/webhooks/endpoints", "POST", token=token,
        body={"url": f"{receiver.base}/ok/{_name()}", "events": checkpoints},
    )  # fmt: skip
    assert to_deployment.status == 403, to_deployment.body
    to_tenant = call(
        f"{dep.url}/v1/tenants/{tenant_id}/webhooks/endpoints", "POST", token=token,
        body={"url": f"{receiver.base}/ok/{_name()}", "events": checkpoints},
    )  # fmt: skip
    assert to_tenant.status == 400 and "whole deployment" in to_tenant.body["detail"], to_tenant.body
    tenant_name, auditor_name = _name(), _name()
    tenant_events = [e for e in WebhookEvent if e is not WebhookEvent.LEDGER_CHECKPOINT]
    _endpoint(dep, tenant_id, token, f"{receiver.base}/ok/{tenant_name}", *tenant_events)
    hook = _endpoint(
        dep,
        DEPLOYMENT_WEBHOOKS,
        auditor,
        f"{receiver.base}/ok/{auditor_name}",
        WebhookEvent.LEDGER_CHECKPOINT,
    )
    _agent, key = dep.agent(tenant_id)
    job_id = _submit(dep, key)
    assert _status(dep, key, job_id, wait=30)["state"] == JobState.DONE
    _received(receiver, tenant_name, 1)  # the tenant's job.terminal
    eventually_sync(lambda: _delivered_events(dep, job_id), timeout_s=30, what="webhook_delivered")

    public = load_public_key(dep.env["PLANGATE_LEDGER_TRUSTED_KEY"])
    note_file, bundle = tmp_path / "checkpoint", tmp_path / "bundle.json"

    def covering() -> dict[str, Any] | None:
        """The latest delivered checkpoint, once it covers every row of the job."""
        got = receiver.got(auditor_name)
        if not got:
            return None
        assert verify(hook["secret"], got[-1].headers, got[-1].body)
        body = got[-1].json()
        assert body["type"] == WebhookEvent.LEDGER_CHECKPOINT
        data = body["data"]
        checked = signed_note.verified_checkpoint(data["note"], data["origin"], public)
        assert (checked.size, checked.root.hex()) == (data["tree_size"], data["root_hash"])
        note_file.write_text(data["note"])
        proved = dep.cli("ledger", "prove", job_id, "--checkpoint", str(note_file), "-o", str(bundle))
        assert proved.returncode == 0, proved.stderr
        return None if "newer than the checkpoint" in proved.stderr else dict(data)

    data = eventually_sync(covering, timeout_s=30, what="a delivered checkpoint covering the job")
    checked = dep.cli(
        "ledger", "verify-bundle", str(bundle), "--public-key", dep.env["PLANGATE_LEDGER_TRUSTED_KEY"]
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"in the signed tree of {data['tree_size']} rows" in checked.stdout
    assert all(g.json()["type"] != WebhookEvent.LEDGER_CHECKPOINT for g in receiver.got(tenant_name))
