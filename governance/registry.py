"""The agent registry: agent records in Redis, a TOML loader, and the seed agent out of the box.

A thin adapter; key names come from the caller's key builder (anything with `agent(id)` and
`agents()`), so governance does not depend on the queue side.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from redis.asyncio import Redis

from governance.models import DEFAULT_TENANT, SEED_AGENT, AgentRecord, TenantRecord


class RegistryKeys(Protocol):
    """The two key names the registry needs."""

    def agent(self, agent_id: str) -> str: ...

    def agents(self) -> str: ...


class TenantKeys(Protocol):
    """The two key names the tenant registry needs."""

    def tenant(self, tenant_id: str) -> str: ...

    def tenants(self) -> str: ...


class RegistryError(Exception):
    """An agents file or a stored record could not be read."""


class AgentRegistry:
    """Reads and writes agent records. The seed agent exists even when nothing is stored."""

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, agent_id: str) -> AgentRecord | None:
        """The agent's record, the seed agent's default, or None when unknown."""
        raw = await self._redis.get(self._keys.agent(agent_id))
        if raw is None:
            return SEED_AGENT if agent_id == SEED_AGENT.agent_id else None
        try:
            return AgentRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(f"stored record of agent {agent_id!r} is invalid: {exc}") from exc

    async def put(self, record: AgentRecord) -> None:
        """Add or replace an agent's record."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.agent(record.agent_id), record.model_dump_json())
            pipe.sadd(self._keys.agents(), record.agent_id)
            await pipe.execute()

    async def list(self) -> list[AgentRecord]:
        """Every registered agent, the seed agent included, sorted by id."""
        ids = sorted(await self._redis.smembers(self._keys.agents()))
        records = {SEED_AGENT.agent_id: SEED_AGENT}
        if ids:
            raws = await self._redis.mget([self._keys.agent(i) for i in ids])
            for raw in raws:
                if raw is not None:
                    record = AgentRecord.model_validate_json(raw)
                    records[record.agent_id] = record
        return [records[k] for k in sorted(records)]


def load_agents_file(path: Path) -> list[AgentRecord]:
    """Parse a TOML agents file: one `[[agents]]` table per agent, fields as in AgentRecord."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read agents file {path}: {exc}") from exc
    try:
        return [AgentRecord.model_validate(entry) for entry in data.get("agents", [])]
    except ValidationError as exc:
        raise RegistryError(f"invalid agent in {path}: {exc}") from exc


class TenantRegistry:
    """Reads and writes tenant records. The `default` tenant exists even when nothing is stored."""

    def __init__(self, redis: Redis, keys: TenantKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, tenant_id: str) -> TenantRecord | None:
        """The tenant's record, the default tenant, or None when unknown."""
        raw = await self._redis.get(self._keys.tenant(tenant_id))
        if raw is None:
            return DEFAULT_TENANT if tenant_id == DEFAULT_TENANT.tenant_id else None
        try:
            return TenantRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(f"stored record of tenant {tenant_id!r} is invalid: {exc}") from exc

    async def put(self, record: TenantRecord) -> None:
        """Add or replace a tenant's record."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.tenant(record.tenant_id), record.model_dump_json())
            pipe.sadd(self._keys.tenants(), record.tenant_id)
            await pipe.execute()

    async def list(self) -> list[TenantRecord]:
        """Every tenant, the default one included, sorted by id."""
        ids = sorted(await self._redis.smembers(self._keys.tenants()))
        records = {DEFAULT_TENANT.tenant_id: DEFAULT_TENANT}
        if ids:
            for raw in await self._redis.mget([self._keys.tenant(i) for i in ids]):
                if raw is not None:
                    record = TenantRecord.model_validate_json(raw)
                    records[record.tenant_id] = record
        return [records[k] for k in sorted(records)]
