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
