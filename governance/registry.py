"""The registries of agents and tenants: records in Redis, a TOML loader for agents, and the seed
agent and default tenant out of the box.

Thin adapters; key names come from the caller's key builder, so governance does not depend on
the queue side.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from governance.models import DEFAULT_TENANT, SEED_AGENT, AgentRecord, TenantRecord


class RegistryKeys(Protocol):
    """The key names the agent registry needs."""

    def agent(self, agent_id: str) -> str: ...

    def agents(self) -> str: ...


class TenantKeys(Protocol):
    """The key names the tenant registry needs."""

    def tenant(self, tenant_id: str) -> str: ...

    def tenants(self) -> str: ...


class RegistryError(Exception):
    """An agents file or a stored record could not be read."""


RecordT = TypeVar("RecordT", bound=BaseModel)


class _Registry(Generic[RecordT]):
    """Records of one kind stored as JSON under their id, with an index set and a built-in default."""

    kind = "record"

    def __init__(
        self,
        redis: Redis,
        model: type[RecordT],
        key: Callable[[str], str],
        index: str,
        default: RecordT,
        ident: Callable[[RecordT], str],
    ) -> None:
        self._redis = redis
        self._model = model
        self._key = key
        self._index = index
        self._default = default
        self._ident = ident

    async def get(self, record_id: str) -> RecordT | None:
        """The stored record, the built-in default, or None when unknown."""
        raw = await self._redis.get(self._key(record_id))
        if raw is None:
            return self._default if record_id == self._ident(self._default) else None
        try:
            return self._model.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(f"stored record of {self.kind} {record_id!r} is invalid: {exc}") from exc

    async def put(self, record: RecordT) -> None:
        """Add or replace a record."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(self._ident(record)), record.model_dump_json())
            pipe.sadd(self._index, self._ident(record))
            await pipe.execute()

    async def list(self) -> list[RecordT]:
        """Every record, the default included, sorted by id."""
        ids = sorted(await self._redis.smembers(self._index))
        records = {self._ident(self._default): self._default}
        if ids:
            for raw in await self._redis.mget([self._key(i) for i in ids]):
                if raw is not None:
                    record = self._model.model_validate_json(raw)
                    records[self._ident(record)] = record
        return [records[k] for k in sorted(records)]


class AgentRegistry(_Registry[AgentRecord]):
    """Agent records. The seed agent exists even when nothing is stored."""

    kind = "agent"

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        super().__init__(redis, AgentRecord, keys.agent, keys.agents(), SEED_AGENT, lambda r: r.agent_id)


class TenantRegistry(_Registry[TenantRecord]):
    """Tenant records. The `default` tenant exists even when nothing is stored."""

    kind = "tenant"

    def __init__(self, redis: Redis, keys: TenantKeys) -> None:
        super().__init__(
            redis, TenantRecord, keys.tenant, keys.tenants(), DEFAULT_TENANT, lambda r: r.tenant_id
        )


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
