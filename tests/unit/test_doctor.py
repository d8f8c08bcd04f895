"""doctor's pure parts: governance's deployment checks (records in, finding out), the report's exit
code and lines, and that the Redis check covers every Lua script the code registers."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from governance import deployment_checks as checks
from governance.capabilities import SEED_FORBIDDEN_ACTIONS
from governance.models import AgentRecord, TenantRecord
from plangate_base.checks import fail, ok, warn
from plangate_base.vocabulary import CheckStatus
from worker.doctor.redis_checks import SCRIPTS
from worker.doctor.report import EXIT_FAILED, EXIT_HEALTHY, exit_code, lines

ROOT = Path(__file__).resolve().parents[2]


def _stored(record: AgentRecord, **changed: object) -> dict[str, object]:
    return {**record.model_dump(mode="json"), **changed}


def test_forbidden_lists() -> None:
    fine = AgentRecord(agent_id="a")
    assert checks.forbidden_lists({"a": _stored(fine)}).status is CheckStatus.OK
    lifted = AgentRecord(agent_id="b", lifted_forbidden=[SEED_FORBIDDEN_ACTIONS[0]])
    result = checks.forbidden_lists({"a": _stored(fine), "b": _stored(lifted)})
    assert result.status is CheckStatus.WARN and SEED_FORBIDDEN_ACTIONS[0] in result.why
    stale = checks.forbidden_lists({"c": _stored(AgentRecord(agent_id="c"), forbidden_actions=[])})
    assert stale.status is CheckStatus.FAIL and "c:" in stale.why and stale.fix


def test_agent_keys() -> None:
    keyed, keyless = AgentRecord(agent_id="k"), AgentRecord(agent_id="open", keyless=True)
    assert checks.agent_keys([keyed], {"k"}).status is CheckStatus.OK
    assert checks.agent_keys([keyed, keyless], {"k"}).status is CheckStatus.WARN
    missing = checks.agent_keys([keyed, keyless], set())
    assert missing.status is CheckStatus.FAIL and "k" in missing.why and "issue-key k" in (missing.fix or "")


def test_agent_tenants_and_quotas() -> None:
    tenants = {
        "default": TenantRecord(tenant_id="default"),
        "t": TenantRecord(tenant_id="t", tokens_per_day=100),
    }
    agents = [AgentRecord(agent_id="a"), AgentRecord(agent_id="b", tenant_id="t")]
    assert checks.agent_tenants(agents, tenants).status is CheckStatus.OK
    assert checks.agent_tenants([*agents, AgentRecord(agent_id="c", tenant_id="x")], tenants).status is (
        CheckStatus.FAIL
    )
    assert checks.tenant_quotas(tenants, agents, max_tokens=64).status is CheckStatus.OK
    starved = checks.tenant_quotas(tenants, agents, max_tokens=2048)
    assert starved.status is CheckStatus.FAIL and "t (tokens_per_day 100 < MAX_TOKENS 2048)" in starved.why
    assert checks.tenant_quotas(tenants, agents[:1], max_tokens=2048).status is CheckStatus.OK  # no agents
    unusable = checks.tenant_quotas(tenants, agents, max_tokens=64, unreadable={"z": "tokens_per_day: 0"})
    assert unusable.status is CheckStatus.FAIL and "z (tokens_per_day: 0)" in unusable.why
    assert checks.stored_ids({}).status is CheckStatus.OK
    assert checks.stored_ids({"x": "gone"}).status is CheckStatus.FAIL


def test_the_exit_code_fails_only_on_a_fail_and_lines_show_what_to_do() -> None:
    results = [ok("a.one", "fine"), warn("a.two", "hm", "do this")]
    assert exit_code(results) == EXIT_HEALTHY
    assert exit_code([*results, fail("b.three", "bad", "do that")]) == EXIT_FAILED
    text = lines([*results, fail("b.three", "bad", "do that")])
    assert text[0].startswith("ok    a.one") and any("-> do this" in line for line in text)
    assert text[-1] == "1 ok, 1 warn, 1 fail"
    hints = lines([*results, fail("b.three", "bad", "do that")], hints_only=True)
    assert not any(line.startswith("ok") for line in hints)
    assert [CheckStatus(s).gauge for s in ("ok", "warn", "fail")] == [0, 1, 2]


def test_every_registered_lua_script_is_checked() -> None:
    registered = []
    for path in sorted(
        p for package in ("worker", "governance", "ledger") for p in (ROOT / package).rglob("*.py")
    ):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.stem == "__main__" or "register" not in ast.unparse(tree):
            continue  # (importing a __main__ would run it)
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "attr", getattr(node.func, "id", ""))
            # redis.register_script(SOURCE), and atomic_writes.register(redis, SOURCE) (whose own
            # register_script(source) takes a parameter: its call sites name the scripts)
            if called == "register_script" and ast.unparse(node.args[0]) != "source":
                source = node.args[0]
            elif called == "register" and len(node.args) == 2:
                source = node.args[1]
            else:
                continue
            registered.append((path.name, eval(compile(ast.Expression(source), path, "eval"), vars(module))))
    assert len(registered) >= 10  # the scan sees the code's scripts (SCRIPTS also holds ones sent by EVAL)
    checked = set(SCRIPTS.values())
    assert [name for name, source in registered if source not in checked] == []
