"""Per-agent keys: issued once, stored only as a salted SHA-256, checked before PREFLIGHT."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

from redis.asyncio import Redis

_SCHEME = "sha256"


def issue_key() -> str:
    """A new random agent key (shown once to the operator, never stored)."""
    return "pgk_" + secrets.token_urlsafe(32)


def hash_key(key: str, salt: str | None = None) -> str:
    """The stored form of a key: scheme$salt$hex digest."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
    return f"{_SCHEME}${salt}${digest}"


def key_matches(stored: str | None, presented: str | None) -> bool:
    """Whether a presented key matches the stored hash; an agent without a stored key needs none."""
    if stored is None:
        return True
    if not presented:
        return False
    try:
        scheme, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    return scheme == _SCHEME and hmac.compare_digest(hash_key(presented, salt), stored)


class AgentKeyKeys(Protocol):
    """The key name the store needs."""

    def agent_key(self, agent_id: str) -> str: ...


class AgentKeyStore:
    """Where an agent's key hash lives."""

    def __init__(self, redis: Redis, keys: AgentKeyKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def stored(self, agent_id: str) -> str | None:
        """The agent's key hash, or None when it has no key."""
        return await self._redis.get(self._keys.agent_key(agent_id))

    async def issue(self, agent_id: str) -> str:
        """Issue (or replace) the agent's key; returns the key itself, which is not kept."""
        key = issue_key()
        await self._redis.set(self._keys.agent_key(agent_id), hash_key(key))
        return key
