"""Recorded writes applied by one Lua script on a real Redis: all of them in order, each kind of
command as redis-py would send it, and nothing at all when the guard key exists."""

from __future__ import annotations

from redis.asyncio import Redis

from worker.atomic_writes import AtomicWrites, register


async def test_the_writes_land_as_their_commands_would_write_them(redis: Redis, key_prefix: str) -> None:
    writes = AtomicWrites()
    writes.set(f"{key_prefix}s", "v", ex=60)
    writes.psetex(f"{key_prefix}p", 60_000, b'{"raw": "bytes"}')
    writes.hset(f"{key_prefix}h", {"state": "queued", "attempt": 0, "ratio": 0.5})
    writes.expire(f"{key_prefix}h", 120)
    writes.zadd(f"{key_prefix}z", {"a": 1_796_177_350_867, "b": 2})
    writes.zremrangebyscore(f"{key_prefix}z", "-inf", "(3")
    writes.xadd(f"{key_prefix}x", {"e": "one"})
    writes.incr(f"{key_prefix}n")
    writes.incr(f"{key_prefix}n")
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{key_prefix}wake")
    writes.publish(f"{key_prefix}wake", "job-1")

    assert await writes.apply(register(redis)) is None

    assert await redis.get(f"{key_prefix}s") == "v" and 0 < await redis.ttl(f"{key_prefix}s") <= 60
    assert await redis.get(f"{key_prefix}p") == '{"raw": "bytes"}' and await redis.pttl(f"{key_prefix}p") > 0
    assert await redis.hgetall(f"{key_prefix}h") == {"state": "queued", "attempt": "0", "ratio": "0.5"}
    assert 0 < await redis.ttl(f"{key_prefix}h") <= 120
    assert await redis.zrange(f"{key_prefix}z", 0, -1, withscores=True) == [("a", 1_796_177_350_867.0)]
    assert [fields for _, fields in await redis.xrange(f"{key_prefix}x")] == [{"e": "one"}]
    assert await redis.get(f"{key_prefix}n") == "2"
    messages = []
    while len(messages) < 2:  # the subscribe confirmation, then the message (each read waits up to 5 s)
        message = await pubsub.get_message(timeout=5)
        assert message is not None, "the PUBLISH never arrived"
        messages.append(message)
    assert messages[-1]["data"] == "job-1"
    await pubsub.aclose()


async def test_an_existing_guard_key_answers_its_value_and_writes_nothing(
    redis: Redis, key_prefix: str
) -> None:
    await redis.set(f"{key_prefix}idem", "job-earlier")
    writes = AtomicWrites()
    writes.hset(f"{key_prefix}h", {"state": "queued"})
    writes.incr(f"{key_prefix}n")

    assert await writes.apply(register(redis), guard=f"{key_prefix}idem") == "job-earlier"
    assert await redis.exists(f"{key_prefix}h", f"{key_prefix}n") == 0

    fresh = AtomicWrites()
    fresh.set(f"{key_prefix}idem2", "job-new", ex=60)
    assert await fresh.apply(register(redis), guard=f"{key_prefix}idem2") is None
    assert await redis.get(f"{key_prefix}idem2") == "job-new"
