"""The registries of agents, tenants and reviewers, and the extended capability vocabulary: records
in Redis, a TOML loader for agents, and the seed agent and default tenant out of the box.

Thin adapters; key names come from the caller's key builder, so governance does not depend on
the queue side. A change an auditor must see carries its ledger entry (encoded by the caller) in
the same transaction.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from governance.capabilities import BUILTIN_VOCABULARY, SEED_FORBIDDEN_ACTIONS, declared_word
from governance.models import DEFAULT_TENANT, AgentRecord, ReviewerRecord, TenantRecord
from plangate_base.errors import PlangateError

LedgerEntry = dict[str, str]  # the stream fields of one encoded ledger event


class RegistryKeys(Protocol):
    """The key names the agent registry needs."""

    def agent(self, agent_id: str) -> str: ...

    def agents(self) -> str: ...

    def ledger_stream(self) -> str: ...


class TenantKeys(Protocol):
    """The key names the tenant registry needs."""

    def tenant(self, tenant_id: str) -> str: ...

    def tenants(self) -> str: ...

    def ledger_stream(self) -> str: ...


class ReviewerKeys(Protocol):
    """The key names the reviewer registry needs."""

    def reviewer(self, reviewer_id: str) -> str: ...

    def reviewers(self) -> str: ...

    def ledger_stream(self) -> str: ...


class CapabilityKeys(Protocol):
    """The key names of the extended capability vocabulary and the ledger stream."""

    def capabilities(self) -> str: ...

    def ledger_stream(self) -> str: ...


class RegistryError(PlangateError):
    """An agents file or a stored record could not be read."""


RecordT = TypeVar("RecordT", bound=BaseModel)


@functools.cache
def _seed_agent() -> AgentRecord:
    # Built on first use: the template models cost a polling command (`plangate status`) that never
    # reads an agent.
    from governance.templates import seed_agent

    return seed_agent()


class _Registry(Generic[RecordT]):
    """Records of one kind stored as JSON under their id, with an index set and a built-in default."""

    kind = "record"

    def __init__(
        self,
        redis: Redis,
        model: type[RecordT],
        key: Callable[[str], str],
        index: str,
        default: RecordT | None,
        ident: Callable[[RecordT], str],
        ledger_stream: str,
    ) -> None:
        self._redis = redis
        self._model = model
        self._key = key
        self._index = index
        self._default = default
        self._ident = ident
        self._ledger_stream = ledger_stream

    async def get(self, record_id: str) -> RecordT | None:
        """The stored record, the built-in default, or None when unknown."""
        return self.from_raw(record_id, await self._redis.get(self._key(record_id)))

    def read_on(self, pipe: Pipeline, record_id: str) -> None:
        """Queue the read of `get` on `pipe` (one reply: give it to `from_raw`), to share a round trip."""
        pipe.get(self._key(record_id))

    def from_raw(self, record_id: str, raw: str | None) -> RecordT | None:
        """`get`'s answer from the stored text (None: nothing stored)."""
        if raw is None:
            default = self._default
            return default if default is not None and record_id == self._ident(default) else None
        try:
            return self._model.model_validate_json(raw)
        except ValidationError as exc:
            # The count, never the stored text: an error message must not carry a record's data.
            raise RegistryError(
                f"stored record of {self.kind} {record_id!r} is invalid ({exc.error_count()} problems)"
            ) from None

    async def put(self, record: RecordT, ledger: LedgerEntry | None = None) -> None:
        """Add or replace a record (with its ledger entry, when given, in the same transaction)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(self._ident(record)), record.model_dump_json())
            pipe.sadd(self._index, self._ident(record))
            if ledger is not None:
                pipe.xadd(self._ledger_stream, ledger)
            await pipe.execute()

    async def list(self) -> list[RecordT]:
        """Every record, the default included, sorted by id."""
        ids = sorted(await self._redis.smembers(self._index))
        records = {} if self._default is None else {self._ident(self._default): self._default}
        if ids:
            for raw in await self._redis.mget([self._key(i) for i in ids]):
                if raw is not None:
                    record = self._model.model_validate_json(raw)
                    records[self._ident(record)] = record
        return [records[k] for k in sorted(records)]


class AgentRegistry(_Registry[AgentRecord]):
    """Agent records. The seed agent (an instance of the built-in llm-planner template) exists even when
    nothing is stored."""

    kind = "agent"

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        super().__init__(
            redis, AgentRecord, keys.agent, keys.agents(), _seed_agent(), lambda r: r.agent_id,
            keys.ledger_stream(),
        )  # fmt: skip


class TenantRegistry(_Registry[TenantRecord]):
    """Tenant records. The `default` tenant exists even when nothing is stored."""

    kind = "tenant"

    def __init__(self, redis: Redis, keys: TenantKeys) -> None:
        super().__init__(
            redis, TenantRecord, keys.tenant, keys.tenants(), DEFAULT_TENANT, lambda r: r.tenant_id,
            keys.ledger_stream(),
        )  # fmt: skip


class ReviewerRegistry(_Registry[ReviewerRecord]):
    """Reviewer records: the humans who decide a tenant's escalated plans. None exist by default."""

    kind = "reviewer"

    def __init__(self, redis: Redis, keys: ReviewerKeys) -> None:
        super().__init__(
            redis, ReviewerRecord, keys.reviewer, keys.reviewers(), None, lambda r: r.reviewer_id,
            keys.ledger_stream(),
        )  # fmt: skip


class CapabilityVocabulary:
    """The known capability words: the seed's built-in ones plus those an operator added (each
    addition recorded with who, when and why)."""

    def __init__(self, redis: Redis, keys: CapabilityKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def known(self) -> frozenset[str]:
        """Every known word, built-in and added."""
        return BUILTIN_VOCABULARY | frozenset(await self._redis.hkeys(self._keys.capabilities()))

    async def added(self) -> dict[str, str]:
        """The words operators added, each with its record (JSON: by, at, reason)."""
        return await self._redis.hgetall(self._keys.capabilities())

    async def add(self, words: list[str], record_json: str, ledger: LedgerEntry) -> list[str]:
        """Add words (normalised; built-in ones are skipped) with their ledger entry; returns the new ones."""
        new = [w for w in dict.fromkeys(check_words(words)) if w not in BUILTIN_VOCABULARY]
        existing = set(await self._redis.hkeys(self._keys.capabilities()))
        new = [w for w in new if w not in existing]
        if not new:
            return []
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.capabilities(), mapping=dict.fromkeys(new, record_json))
            pipe.xadd(self._keys.ledger_stream(), ledger)
            await pipe.execute()
        return new


def check_words(words: list[str]) -> list[str]:
    """Normalised vocabulary words; RegistryError naming any that is not lower snake case."""
    normal = [declared_word(w) for w in words]
    bad = [w for w, n in zip(words, normal, strict=True) if n is None]
    if bad:
        raise RegistryError(
            f"not a capability word: {', '.join(map(repr, bad))} (lower snake case, e.g. read_docs)"
        )
    return [n for n in normal if n is not None]


def vocabulary_problems(record: AgentRecord, known: frozenset[str]) -> list[str]:
    """What is wrong with an agent's lists against the known vocabulary (empty when nothing is)."""
    problems = []
    for what, names in (
        ("allowed side effect", record.allowed_side_effects),
        ("forbidden action", record.forbidden_actions),
        ("lifted forbidden action", record.lifted_forbidden),
    ):
        unknown = [n for n in names if n not in known]
        if unknown:
            problems.append(f"unknown {what}: {', '.join(unknown)}")
    not_liftable = [n for n in record.lifted_forbidden if n not in SEED_FORBIDDEN_ACTIONS]
    if not_liftable:
        problems.append(f"only the seed's forbidden actions are lifted, not: {', '.join(not_liftable)}")
    clash = [n for n in record.allowed_side_effects if n in record.forbidden_actions]
    if clash:
        problems.append(
            f"allowed and forbidden at once: {', '.join(clash)} (lift a seed forbidden action with --lift)"
        )
    return problems


@dataclass(frozen=True, slots=True)
class AgentsFile:
    """What an agents file declares: capability words it adds to the vocabulary, and agents."""

    vocabulary: list[str]
    agents: list[AgentRecord]


def load_agents_file(path: Path) -> AgentsFile:
    """Parse a TOML agents file: `[vocabulary] add = [...]` (capability words beyond the seed's), then
    one `[[agents]]` table per agent, fields as in AgentRecord."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read agents file {path}: {exc}") from exc
    unknown_tables = set(data) - {"agents", "vocabulary"}
    if unknown_tables:
        raise RegistryError(f"agents file {path}: unknown tables {', '.join(sorted(unknown_tables))}")
    words = data.get("vocabulary", {}).get("add", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise RegistryError(f"agents file {path}: [vocabulary] add must be a list of words")
    try:
        agents = [AgentRecord.model_validate(entry) for entry in data.get("agents", [])]
    except ValidationError as exc:
        raise RegistryError(f"invalid agent in {path}: {exc}") from exc
    return AgentsFile(check_words(words), agents)
