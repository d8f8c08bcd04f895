"""The LLM key and an agent's key never show up in anything a run produces: logs, CLI output,
status objects, Redis, the ledger, or error messages."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as sync_redis

from plangate_base.vocabulary import JobState
from tests.e2e.conftest import plangate_cmd
from worker.cli.main import EXIT_OF_STATE

pytestmark = pytest.mark.e2e

SECRET = "sk-or-v1-THIS-IS-THE-SECRET-4f2a9c"
MODELS = ("scripted", "scripted-500", "scripted-402", "scripted-invalid-json", "scripted-midstream-error")


def _redis_text(url: str, prefix: str) -> str:
    """Every value stored under our prefix, as text."""
    parts = []
    with sync_redis.Redis.from_url(url, decode_responses=True) as redis:
        for key in redis.scan_iter(match=f"{prefix}*", count=500):
            kind = redis.type(key)
            if kind == "hash":
                parts.append(json.dumps(redis.hgetall(key)))
            elif kind == "stream":
                parts.append(json.dumps(redis.xrange(key)))
            elif kind == "string":
                parts.append(str(redis.get(key)))
            elif kind == "zset":
                parts.append(json.dumps(redis.zrange(key, 0, -1)))
            elif kind == "set":
                parts.append(json.dumps(sorted(redis.smembers(key))))
    return "\n".join(parts)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def test_the_key_never_leaks(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]], tmp_path: Path
) -> None:
    e2e_env.update(PLANGATE_LLM_API_KEY=SECRET, OPENROUTER_API_KEY=SECRET, PLANGATE_LOG_LEVEL="DEBUG")
    issued = _cli(e2e_env, "agents", "add", "keyed-planner", "--issue-key", "--json")
    assert issued.returncode == 0, issued.stderr
    agent_key = json.loads(issued.stdout)["agent_key"]
    e2e_env["PLANGATE_AGENT_KEY"] = agent_key
    start_workers(1, llm_max_retries="1")
    produced, states = [], []
    keyed = _cli(
        e2e_env, "submit", "--agent", "keyed-planner", "--description", "Plan with a key", "--wait", "--json"
    )
    assert json.loads(keyed.stdout)["state"] == "done", keyed.stderr
    wrong = _cli(
        {**e2e_env, "PLANGATE_AGENT_KEY": agent_key[:-3] + "xyz"},
        *("submit", "--agent", "keyed-planner", "--description", "Plan with a wrong key", "--wait", "--json"),
    )
    assert json.loads(wrong.stdout)["refusal"]["code"] == "unauthenticated"
    produced += [keyed.stdout, keyed.stderr, wrong.stdout, wrong.stderr]
    for model in MODELS:
        run = _cli(
            e2e_env, "submit", "--model", model, "--description", f"Plan with {model}", "--wait", "--json"
        )
        status = json.loads(run.stdout)
        assert run.returncode == EXIT_OF_STATE[JobState(status["state"])], run.stderr
        states.append(status["state"])
        shown = _cli(e2e_env, "status", status["job_id"])
        produced += [run.stdout, run.stderr, shown.stdout, shown.stderr]
    assert states == ["done", "failed", "failed", "failed", "done"]  # real failures, with messages

    produced.append(_redis_text(e2e_env["PLANGATE_REDIS_URL"], e2e_env["PLANGATE_KEY_PREFIX"]))
    for path in tmp_path.iterdir():  # worker and stub logs, the ledger and its WAL
        if path.is_file():
            produced.append(path.read_bytes().decode("utf-8", "replace"))
    everything = "\n".join(produced)
    assert "llm_unavailable" in everything and "gave up" in everything  # the errors are there...
    assert SECRET not in everything  # ...the keys are not
    assert SECRET[-12:] not in everything
    assert agent_key not in everything and agent_key[-12:] not in everything


def test_no_token_leaks_through_the_api(redis_base_url: str, tmp_path: Path) -> None:
    from tests.e2e.api_deployment import Deployment, call, sse_events

    dep = Deployment(redis_base_url, tmp_path)
    dep.env.update(PLANGATE_LLM_API_KEY=SECRET, PLANGATE_LOG_LEVEL="DEBUG")
    try:
        dep.start(workers=1)
        _, agent_key = dep.agent()
        tokens = (agent_key, dep.token("tenant", "default"), dep.token("admin"))
        assert all(t.startswith(("pgk_", "pgt_")) for t in tokens)
        produced: list[str] = []
        for token in tokens:
            body = {"description": "Plan with a token"}
            if token != agent_key:
                body["agent_id"] = "llm-planner-001"
            submitted = call(dep.url + "/v1/jobs", "POST", token=token, body=body)
            assert submitted.status == 202, submitted.body
            job_url = f"{dep.url}/v1/jobs/{submitted.body['job_id']}"
            produced.append(json.dumps(sse_events(job_url + "/events", token)))
            final = call(job_url + "?wait=30", token=token)
            assert final.body["state"] == "done", final.body
            listed = call(dep.url + "/v1/jobs?tenant_id=default", token=token)
            produced += [json.dumps(final.body), json.dumps(listed.body)]
            wrong = call(job_url, token=token[:-3] + "xyz")
            assert wrong.status == 401
            produced.append(json.dumps(wrong.body))
        produced += [call(dep.url + "/metrics").body, json.dumps(call(dep.url + "/openapi.json").body)]
        produced.append(dep.out("tokens", "list", "--json"))
        produced.append(_redis_text(dep.redis_url, dep.prefix))
    finally:
        dep.stop()
    for path in tmp_path.iterdir():  # the API's, the workers' and the endpoint's logs, the ledger
        if path.is_file():
            produced.append(path.read_bytes().decode("utf-8", "replace"))
    everything = "\n".join(produced)
    assert "plangate_api_requests_total" in everything and "api.listening" in everything
    for secret in (SECRET, *tokens):
        assert secret not in everything and secret[-12:] not in everything
