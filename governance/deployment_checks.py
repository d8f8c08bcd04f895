"""The governance part of `plangate doctor`: are the stored agents and tenants what a safe deployment
needs? Pure: records in, findings out (worker/doctor reads them from Redis and renders the findings).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from governance.capabilities import SEED_FORBIDDEN_ACTIONS
from governance.models import AgentRecord, TenantRecord
from plangate_base.checks import CheckResult, fail, ok, warn


def forbidden_lists(stored: Mapping[str, Mapping[str, Any]]) -> CheckResult:
    """Every stored agent record carries the seed's forbidden actions, or an explicit lift of them.

    `stored`: each agent's record as stored (JSON decoded). This plangate adds the seed's list to a
    record whenever it reads one, but a record stored without it (by hand, or by an older version)
    would not be guarded by a worker that does not: such a record fails until it is saved again."""
    name = "governance.forbidden_actions"
    seed = set(SEED_FORBIDDEN_ACTIONS)
    missing: dict[str, list[str]] = {}
    lifted: dict[str, list[str]] = {}
    for agent_id, record in stored.items():
        lifts = {str(a) for a in record.get("lifted_forbidden") or []}
        listed = {str(a) for a in record.get("forbidden_actions") or []}
        if seed - listed - lifts:
            missing[agent_id] = sorted(seed - listed - lifts)
        if lifts:
            lifted[agent_id] = sorted(lifts)
    if missing:
        return fail(
            name,
            f"stored without the seed's forbidden actions (and no lift): {_per_agent(missing)}",
            "save each again (`plangate agents add ID ...` with its settings): the record then holds them",
        )
    if lifted:
        return warn(
            name,
            f"seed forbidden actions lifted (recorded in the ledger): {_per_agent(lifted)}",
            "make sure each lift is intended; `plangate agents add ID ...` without --lift restores the list",
        )
    return ok(name, f"all {len(stored)} agent(s) carry the seed's forbidden actions")


def _per_agent(actions: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{agent}: {', '.join(names)}" for agent, names in sorted(actions.items()))


def agent_keys(agents: Iterable[AgentRecord], keyed: set[str]) -> CheckResult:
    """Every agent that needs a key has one; a keyless agent is a warning (anyone may submit as it)."""
    name = "governance.agent_keys"
    agents = list(agents)
    unkeyed = sorted(a.agent_id for a in agents if not a.keyless and a.agent_id not in keyed)
    keyless = sorted(a.agent_id for a in agents if a.keyless)
    if unkeyed:
        return fail(
            name,
            f"no key issued, so every job is refused: {', '.join(unkeyed)}",
            f"`plangate agents issue-key {unkeyed[0]}` (and give the key to that agent)",
        )
    if keyless:
        return warn(
            name,
            f"keyless, so whoever can submit may claim them: {', '.join(keyless)}",
            f"issue keys: `plangate agents issue-key {keyless[0]}`, then re-add it without --keyless",
        )
    return ok(name, f"all {len(agents)} agent(s) have keys")


def agent_tenants(agents: Iterable[AgentRecord], tenants: Mapping[str, TenantRecord]) -> CheckResult:
    """Every agent belongs to a tenant that exists."""
    name = "governance.agent_tenants"
    orphans = sorted(f"{a.agent_id} ({a.tenant_id})" for a in agents if a.tenant_id not in tenants)
    if orphans:
        return fail(
            name,
            f"agents of tenants that do not exist: {', '.join(orphans)}",
            "`plangate tenants add TENANT`, or move the agent to an existing tenant",
        )
    return ok(name, "every agent's tenant exists")


def stored_ids(unreadable: Mapping[str, str]) -> CheckResult:
    """Every id in the agents index is a readable record whose id fits the key layout."""
    name = "governance.agent_records"
    if unreadable:
        named = "; ".join(f"{ident!r}: {why}" for ident, why in sorted(unreadable.items()))
        return fail(
            name,
            f"agent records that cannot be used: {named}",
            "remove them (`plangate agents revoke`, or delete the keys) and add them again",
        )
    return ok(name, "every stored agent record reads and fits the key layout")


def tenant_quotas(
    tenants: Mapping[str, TenantRecord],
    agents: Iterable[AgentRecord],
    max_tokens: int,
    unreadable: Mapping[str, str] | None = None,
) -> CheckResult:
    """No tenant with agents has a quota that no job can fit in; `unreadable`: tenant records stored
    with quotas this plangate cannot use (a zero, by hand or by an older version), by id, with why."""
    name = "governance.tenant_quotas"
    with_agents = {a.tenant_id for a in agents}
    starved = sorted(
        f"{t.tenant_id} (tokens_per_day {t.tokens_per_day} < MAX_TOKENS {max_tokens})"
        for t in tenants.values()
        if t.tenant_id in with_agents and t.tokens_per_day is not None and t.tokens_per_day < max_tokens
    )
    starved += [f"{tenant_id} ({why})" for tenant_id, why in sorted((unreadable or {}).items())]
    if starved:
        return fail(
            name,
            f"tenants whose daily token quota cannot hold one job: {', '.join(starved)}",
            "raise tokens_per_day (`plangate tenants add TENANT --tokens-per-day N`) or lower MAX_TOKENS",
        )
    return ok(name, f"{len(tenants)} tenant(s); every quota can hold a job")
