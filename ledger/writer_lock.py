"""The active-writer lock: one ledger writer drains the stream, others wait as standby.

A Redis key holding the active writer's token with a TTL the writer renews; a writer that dies stops
renewing and a standby takes over when the key expires. Safety does not rest on it (two writers still
cannot fork the chain: each batch extends the head it reads under SQLite's write lock); it keeps one
writer doing the work and signing anchors.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

# KEYS[1] lock. ARGV[1] token, ARGV[2] ttl ms. Renew only a lock we still hold.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock. ARGV[1] token. Release only a lock we still hold.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class WriterLock:
    """A TTL lock on one key; `token` names the holder (its consumer name plus a random part)."""

    def __init__(self, redis: aioredis.Redis, key: str, holder: str, ttl_s: float = 5.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.redis = redis
        self.key = key
        self.token = f"{holder}:{uuid.uuid4().hex[:8]}"
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.held = False

    async def acquire(self) -> bool:
        """Take the lock if free (or renew it if ours); returns whether we hold it now."""
        if self.held and await self.renew():
            return True
        self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def renew(self) -> bool:
        """Extend our hold by the TTL; False (and not held) if the lock expired or another writer has it."""
        self.held = bool(await self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        return self.held

    async def release(self) -> None:
        """Give the lock up at once (a standby need not wait for the TTL)."""
        if self.held:
            self.held = False
            await self.redis.eval(_RELEASE, 1, self.key, self.token)

    async def holder(self) -> str | None:
        """Who holds the lock now (its token), if anyone."""
        value = await self.redis.get(self.key)
        return value if value is None or isinstance(value, str) else value.decode()
