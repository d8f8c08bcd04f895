"""`plangate doctor`: named checks of a deployment, each ok / warn / fail with why and what to do.

`run_checks` runs them in order (Redis first: when it cannot be reached, the checks that need it are
not run and its failure says so); a check that raises becomes a `fail` naming the error, never a
traceback. worker/doctor/report.py renders the results; the CLI and `GET /v1/admin/doctor` share both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from governance import deployment_checks
from governance.models import DEFAULT_TENANT, SEED_AGENT, AgentRecord, TenantRecord
from plangate_base import codec
from plangate_base.checks import CheckResult, fail
from plangate_base.errors import PlangateError
from plangate_base.vocabulary import CheckStatus
from worker.doctor import edge_checks, fleet_checks, ledger_checks, llm_checks, redis_checks
from worker.errors import BadRequest
from worker.keys import Keys
from worker.redis_conn import redacted, text_client
from worker.settings import Settings


async def run_checks(
    settings: Settings,
    redis: Redis | None = None,
    *,
    api_url: str | None = None,
    probe_llm: bool = False,
    llm: bool = True,
) -> list[CheckResult]:
    """Every check, in report order, on `redis` (else a client of its own on REDIS_URL). `llm=False`
    leaves the LLM endpoint out (the API's own runs: the workers call it, not the API)."""
    own = redis is None
    try:
        client = redis if redis is not None else text_client(settings.redis_url)
    except PlangateError as exc:  # a URL that is no Redis URL: one fail line, like an unreachable one
        where = redacted(settings.redis_url)
        broken = fail("redis.reachable", f"{where}: {exc}", "fix PLANGATE_REDIS_URL")
        return await _checks(settings, None, broken, api_url=api_url, probe_llm=probe_llm, llm=llm)
    try:
        first = await redis_checks.reachable(client, redacted(settings.redis_url))
        return await _checks(settings, client, first, api_url=api_url, probe_llm=probe_llm, llm=llm)
    finally:
        if own:
            await client.aclose()


async def _checks(
    settings: Settings,
    redis: Redis | None,
    first: CheckResult,
    *,
    api_url: str | None,
    probe_llm: bool,
    llm: bool,
) -> list[CheckResult]:
    keys = Keys(settings.key_prefix)
    results = [first]
    redis_up = first.status is not CheckStatus.FAIL
    if redis is not None and redis_up:
        for name, check in (
            ("redis.server", lambda: redis_checks.server(redis)),
            ("redis.persistence", lambda: redis_checks.persistence(redis)),
            ("redis.lua_scripts", lambda: redis_checks.scripts(redis, settings.key_prefix)),
            ("redis.clock_skew", lambda: redis_checks.clock(redis, settings)),
            ("workers.live", lambda: fleet_checks.workers(redis, keys, settings)),
            ("ledger.writer", lambda: fleet_checks.ledger_writer(redis, keys)),
        ):
            results.append(await _guarded(name, check))
        results += await _governance(redis, keys, settings)
    if llm:
        results.append(await _guarded("llm.endpoint", lambda: llm_checks.endpoint(settings)))
    if llm and probe_llm:
        results.append(await _guarded("llm.probe", lambda: llm_checks.probe(settings)))
    results.append(_guarded_sync("ledger.file", lambda: ledger_checks.ledger_file(settings)))
    results.append(_guarded_sync("ledger.migrations", lambda: ledger_checks.ledger_schema(settings)))
    results.append(
        await _guarded(
            "ledger.chain", lambda: ledger_checks.chain(settings, redis if redis_up else None, keys)
        )
    )
    results.append(_guarded_sync("ledger.signing_key", lambda: ledger_checks.signing_key(settings)))
    if redis is not None and redis_up:
        results.append(await _guarded("ledger.backlog", lambda: ledger_checks.backlog(redis, keys)))
    if redis is not None and redis_up:
        results.append(
            await _guarded("webhooks.deliveries", lambda: edge_checks.webhook_deliveries(redis, keys))
        )
    if api_url:
        results.append(await _guarded("api.ready", lambda: edge_checks.api_ready(api_url)))
        results.append(_guarded_sync("api.tls", lambda: edge_checks.api_tls(api_url)))
    results.append(_guarded_sync("edges.metrics_bind", lambda: edge_checks.metrics_bind(settings)))
    if not redis_up:
        skipped = (
            "the checks that need Redis (server, scripts, clock, workers, governance, backlog) did not run"
        )
        first = results[0]
        results[0] = CheckResult(first.name, first.status, f"{first.why}; {skipped}", first.fix)
    return results


async def _governance(redis: Redis, keys: Keys, settings: Settings) -> list[CheckResult]:
    """Read agents (each on its own, so one bad record is named, not fatal), keys and tenants, then
    hand them to governance's pure checks."""
    try:
        agents: list[AgentRecord] = []
        unreadable: dict[str, str] = {}
        stored: dict[str, dict[str, Any]] = {}
        ids = sorted(await redis.smembers(keys.agents()))
        fitting = []
        for agent_id in ids:  # an id with the key separator has no key of its own: name it, read the rest
            try:
                keys.agent(agent_id)
            except BadRequest as exc:
                unreadable[agent_id] = f"its id does not fit the key layout ({exc})"
            else:
                fitting.append(agent_id)
        for agent_id, raw in zip(
            fitting, await redis.mget([keys.agent(i) for i in fitting]) if fitting else [], strict=True
        ):
            if raw is None:
                unreadable[agent_id] = "indexed, but its record is gone"
                continue
            try:
                agents.append(AgentRecord.model_validate_json(raw))
            except ValidationError as exc:
                unreadable[agent_id] = f"{exc.error_count()} problem(s) in the stored record"
            else:
                stored[agent_id] = codec.loads(raw)
        if SEED_AGENT.agent_id not in ids:
            agents.append(SEED_AGENT)  # the built-in seed agent exists unless stored otherwise
            stored[SEED_AGENT.agent_id] = SEED_AGENT.model_dump(mode="json")
        key_ids = [a.agent_id for a in agents]
        hashes = await redis.mget([keys.agent_key(i) for i in key_ids]) if key_ids else []
        keyed = {i for i, h in zip(key_ids, hashes, strict=True) if h}
        tenants, bad_tenants = await _tenants(redis, keys)
    except Exception as exc:  # a doctor reports what it could not read; it does not crash
        return [fail("governance.records", f"cannot read agents and tenants: {exc}", "see the error")]
    return [
        deployment_checks.stored_ids(unreadable),
        deployment_checks.forbidden_lists(stored),
        deployment_checks.agent_keys(agents, keyed),
        deployment_checks.agent_tenants(agents, tenants),
        deployment_checks.tenant_quotas(tenants, agents, settings.max_tokens, bad_tenants),
    ]


async def _tenants(redis: Redis, keys: Keys) -> tuple[dict[str, TenantRecord], dict[str, str]]:
    """The tenants (the default one unless stored otherwise), each read on its own: the ones whose
    stored record does not validate are named, with why, instead of hiding every other finding."""
    tenants = {DEFAULT_TENANT.tenant_id: DEFAULT_TENANT}
    unreadable: dict[str, str] = {}
    ids = sorted(await redis.smembers(keys.tenants()))
    for tenant_id, raw in zip(
        ids, await redis.mget([keys.tenant(i) for i in ids]) if ids else [], strict=True
    ):
        if raw is None:
            continue  # (as the registry reads it: an index entry without a record is no tenant)
        try:
            record = TenantRecord.model_validate_json(raw)
        except ValidationError as exc:
            tenants.pop(tenant_id, None)
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            unreadable[tenant_id] = f"stored record unusable: {problems}"
        else:
            tenants[record.tenant_id] = record
    return tenants, unreadable


async def _guarded(name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    try:
        return await check()
    except Exception as exc:  # one broken check is a fail line, never a traceback
        return fail(name, f"the check itself failed: {type(exc).__name__}: {exc}", "see the error")


def _guarded_sync(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as exc:  # (as above)
        return fail(name, f"the check itself failed: {type(exc).__name__}: {exc}", "see the error")
