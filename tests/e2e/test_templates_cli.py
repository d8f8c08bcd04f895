"""`plangate templates`, `agents add --template`, `agents upgrade` and `bootstrap` as an operator runs them:
publishing from TOML and JSON, immutability refused, search, a tampered signed file refused, the upgrade
diff with its confirmation, and an idempotent bootstrap whose agent's job runs through a real worker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from governance.templates import builtin_template
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e

BUILTIN = Path(__file__).resolve().parents[2] / "governance" / "template_llm_planner.toml"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def ok(env: dict[str, str], *args: str) -> str:
    done = run(env, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _toml(tmp_path: Path, name: str, version: str, **replace: str) -> Path:
    """The built-in file with its name, version and some lines replaced, as a publisher edits one."""
    text = BUILTIN.read_text(encoding="utf-8")
    text = text.replace('name = "llm-planner"', f'name = "{name}"').replace(
        'version = "1.0.0"', f'version = "{version}"'
    )
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}-{version}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_publish_search_sign_upgrade(e2e_env: dict[str, str], tmp_path: Path) -> None:
    env = e2e_env
    v1 = _toml(tmp_path, "db-planner", "1.0.0", **{"tags = [": 'tags = ["database", '})
    published = json.loads(ok(env, "templates", "publish", str(v1), "--allow-unsigned", "--json"))
    assert published["new"] and published["signer"] == ""
    edited = _toml(tmp_path, "db-planner", "1.0.0", **{'summary = "': 'summary = "Edited: '})
    refused = run(env, "templates", "publish", str(edited), "--allow-unsigned")
    assert refused.returncode == 2 and "immutable" in refused.stderr

    as_json = tmp_path / "doc-planner.json"
    template = builtin_template("llm-planner").model_dump(mode="json")
    as_json.write_text(json.dumps({**template, "name": "doc-planner", "summary": "Plans documentation"}))
    ok(env, "templates", "publish", str(as_json), "--allow-unsigned")
    hits = json.loads(ok(env, "templates", "search", "database", "--json"))
    assert [h["name"] for h in hits] == ["db-planner"]
    found = json.loads(ok(env, "templates", "search", "documentation", "--json"))
    assert found[0]["name"] == "doc-planner"  # named in its summary; the others mention it in descriptions

    # A signed 1.1.0 that lowers the threshold; edited after signing, it is refused.
    key = tmp_path / "publisher.key"
    ok(env, "templates", "keygen", "--out", str(key))
    ok(env, "templates", "trust", f"{key}.pub", "--publisher", "dba-team")
    v11 = _toml(
        tmp_path, "db-planner", "1.1.0", **{"confidence_threshold = 0.7": "confidence_threshold = 0.5"}
    )
    ok(env, "templates", "sign", str(v11), "--key", str(key), "--publisher", "dba-team")
    v11.write_text(v11.read_text().replace("tier = 0", "tier = 2"))
    tampered = run(env, "templates", "publish", str(v11))
    assert tampered.returncode == 2 and "tampered" in tampered.stderr
    v11.write_text(v11.read_text().replace("tier = 2", "tier = 0"))
    assert "signed by dba-team" in ok(env, "templates", "publish", str(v11))

    ok(env, "agents", "add", "db-1", "--template", "db-planner@1.0.0", "--allow-unsigned")
    shown = json.loads(ok(env, "agents", "show", "db-1", "--json"))
    assert shown["template"]["version"] == "1.0.0" and shown["template"]["hash"] == published["hash"]
    widening = run(env, "agents", "upgrade", "db-1", "--to", "^1")
    assert widening.returncode == 2 and "WIDENS confidence threshold 0.7 -> 0.5" in widening.stdout
    assert "--yes" in widening.stderr
    assert json.loads(ok(env, "agents", "show", "db-1", "--json"))["template"]["version"] == "1.0.0"
    ok(env, "agents", "add", "db-2", "--template", "db-planner@1.0.0", "--allow-unsigned")
    every = ("agents", "upgrade", "--all-from", "db-planner", "--to", "^1", "--yes", "--json")
    bulk = json.loads(ok(env, *every))
    assert sorted((u["agent_id"], u["to_version"], u["widens"]) for u in bulk) == [
        ("db-1", "1.1.0", True),
        ("db-2", "1.1.0", True),
    ]
    for agent in ("db-1", "db-2"):
        shown = json.loads(ok(env, "agents", "show", agent, "--json"))
        assert (shown["template"]["version"], shown["template"]["signer"]) == ("1.1.0", "dba-team")
        assert shown["confidence_threshold"] == 0.5

    ok(env, "templates", "yank", "db-planner@1.1.0", "--reason", "threshold too low")
    assert json.loads(ok(env, "templates", "show", "db-planner@^1", "--json"))["version"] == "1.0.0"
    refused = run(env, "agents", "add", "db-3", "--template", "db-planner@1.1.0")
    assert refused.returncode == 2 and "yanked" in refused.stderr

    # replacing an installed agent by hand says what it leaves behind
    by_hand = ok(env, "agents", "add", "db-2", "--tier", "1", "--keyless")
    assert "no longer runs template db-planner@1.1.0" in by_hand, by_hand
    assert json.loads(ok(env, "agents", "show", "db-2", "--json"))["template"] is None
    assert "no longer runs template" not in ok(env, "agents", "add", "db-2", "--tier", "2", "--keyless")


def test_bootstrap_is_idempotent_and_its_agent_plans(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]]
) -> None:
    env = e2e_env
    first = json.loads(
        ok(
            env,
            "bootstrap",
            "--tenant",
            "acme",
            "--template",
            "llm-planner@^1",
            "--agent",
            "acme-planner",
            "--json",
        )
    )
    assert first["tenant_created"] and first["agent_changed"] and first["agent_key"]
    again = json.loads(
        ok(
            env,
            "bootstrap",
            "--tenant",
            "acme",
            "--template",
            "llm-planner@^1",
            "--agent",
            "acme-planner",
            "--json",
        )
    )
    assert (again["tenant_created"], again["agent_changed"], again["agent_key"]) == (False, False, None)
    start_workers(1)
    job = ok(
        {**env, "PLANGATE_AGENT_KEY": first["agent_key"]},
        "submit", "--agent", "acme-planner", "--description", "plan the rollout", "--wait", "--json",
    )  # fmt: skip
    status = json.loads(job)
    assert (status["state"], status["tenant_id"], status["output"]["decision"]) == ("done", "acme", "EXECUTE")
    rate = json.loads(
        ok(env, "templates", "rate", "llm-planner@1.0.0", "--stars", "4", "--by", "ann", "--json")
    )
    assert rate["count"] == 1


def test_a_template_install_refuses_the_flags_it_would_ignore(e2e_env: dict[str, str]) -> None:
    env = dict(e2e_env)
    refused = run(
        env, "agents", "add", "tpl-1", "--template", "llm-planner@^1", "--tier", "2", "--allow", "ssh"
    )
    assert refused.returncode == 2, refused.stderr
    assert "--tier, --allow cannot be combined" in refused.stderr, refused.stderr
    assert run(env, "agents", "show", "tpl-1").returncode != 0  # nothing was saved
    stray = run(env, "agents", "add", "tpl-1", "--param", "x=1")
    assert stray.returncode == 2 and "--template only" in stray.stderr, stray.stderr
    installed = json.loads(ok(env, "agents", "add", "tpl-1", "--template", "llm-planner@^1", "--json"))
    assert installed["tier"] == builtin_template("llm-planner").governance.tier
