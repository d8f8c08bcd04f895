"""Keys of agents and reviewers: issued once, stored only as a salted SHA-256, compared in constant
time. An agent's jobs are checked before PREFLIGHT; a reviewer's decisions before they are recorded.

Agent keys are required by default: an agent with no key issued is refused unless an operator
marked it keyless (AgentRecord.keyless), which `plangate agents show` shows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from governance.api_tokens import Principal, Scope
from governance.models import AgentRecord
from governance.policy import Refuse
from plangate_base.vocabulary import RefusalCode

_SCHEME = "sha256"
AGENT_KEY_PREFIX = "pgk_"
REVIEWER_KEY_PREFIX = "pgr_"


def issue_key(prefix: str = AGENT_KEY_PREFIX) -> str:
    """A new random key (shown once to the operator, never stored)."""
    return prefix + secrets.token_urlsafe(32)


def hash_key(key: str, salt: str | None = None) -> str:
    """The stored form of a key: scheme$salt$hex digest."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
    return f"{_SCHEME}${salt}${digest}"


def key_matches(stored: str | None, presented: str | None) -> bool:
    """Whether a presented key matches the stored hash (never when either is missing)."""
    if stored is None or not presented:
        return False
    try:
        scheme, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    return scheme == _SCHEME and hmac.compare_digest(hash_key(presented, salt), stored)


def check_agent_key(
    agent: AgentRecord, stored: str | None, presented: str | None, token: Principal | None = None
) -> Refuse | None:
    """Whether a job may act as `agent`: its key matches the one issued, or the credential it carries
    is a live API token (`token`, looked up by the caller) of the agent's tenant or an admin's, or it
    has no key issued and the operator made the agent keyless. None when it may; the refusal otherwise."""
    if token is not None and (
        token.scope is Scope.ADMIN or (token.scope is Scope.TENANT and token.tenant_id == agent.tenant_id)
    ):
        return None
    if stored is None:
        if agent.keyless:
            return None
        return Refuse(
            RefusalCode.UNAUTHENTICATED,
            f"agent {agent.agent_id} needs a key and has none issued "
            f"(`plangate agents issue-key {agent.agent_id}`, or `agents add ... --keyless`)",
        )
    if key_matches(stored, presented):
        return None
    return Refuse(RefusalCode.UNAUTHENTICATED, f"wrong or missing key for agent {agent.agent_id}")


class KeyStore:
    """Where the key hashes of one kind of principal (agents, reviewers) live."""

    def __init__(
        self, redis: Redis, key_of: Callable[[str], str], ledger_stream: str, prefix: str = AGENT_KEY_PREFIX
    ) -> None:
        self._redis = redis
        self._key_of = key_of
        self._ledger_stream = ledger_stream
        self._prefix = prefix

    async def stored(self, ident: str) -> str | None:
        """The key hash of `ident`, or None when none was issued."""
        return await self._redis.get(self._key_of(ident))

    def read_on(self, pipe: Pipeline, ident: str) -> None:
        """Queue the read of `stored` on `pipe` (its reply is `stored`'s answer), to share a round trip."""
        pipe.get(self._key_of(ident))

    async def issue(self, ident: str, ledger: dict[str, str]) -> str:
        """Issue (or replace) the key of `ident`, with its ledger entry (which never holds the key);
        returns the key itself, which is not kept."""
        key = issue_key(self._prefix)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key_of(ident), hash_key(key))
            pipe.xadd(self._ledger_stream, ledger)
            await pipe.execute()
        return key

    async def verify(self, ident: str, presented: str | None) -> bool:
        """Whether `presented` is the key issued to `ident`."""
        return key_matches(await self.stored(ident), presented)
