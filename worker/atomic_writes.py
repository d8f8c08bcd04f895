"""Writes collected like a pipeline's and applied by one Lua script: one round trip, atomic, and every
key the script touches declared in KEYS (what DragonflyDB requires of a script).

A MULTI/EXEC pipeline of a dozen writes costs a dozen commands to pack and a dozen QUEUED replies to
parse, plus a WATCH round trip when a guard key must be checked first; submit is the API's hot path,
so it records its writes here instead and sends them as one EVALSHA. The recorder has the pipeline
methods the submit transaction uses (the queue backend's `add_enqueue` writes into it as into a
pipeline), nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from plangate_base import codec

# KEYS: every key the writes touch. ARGV[1]: the index in KEYS of the guard key, 0 for none;
# ARGV[2]: the writes, JSON [[command, key index (0: the command takes no key), arg, ...], ...]; a step
# (a Lua function compiled into the script, see `compose`) is ["@name", [key index, ...], [arg, ...]].
# A guard key that exists makes the script write nothing and answer its value.
_RUN = """
local guard = tonumber(ARGV[1])
if guard > 0 then
  local held = redis.call('GET', KEYS[guard])
  if held then return held end
end
for _, op in ipairs(cjson.decode(ARGV[2])) do
  local key = op[2]
  if string.sub(op[1], 1, 1) == '@' then
    local keys = {}
    for i, index in ipairs(key) do keys[i] = KEYS[index] end
    STEPS[string.sub(op[1], 2)](keys, op[3])
  elseif key > 0 then
    redis.call(op[1], KEYS[key], unpack(op, 3))
  else
    redis.call(op[1], unpack(op, 3))
  end
end
return false
"""


def compose(prelude: str = "", steps: Mapping[str, str] | None = None) -> str:
    """The apply script with named steps: each a Lua chunk over its own KEYS and ARGV (what a script of
    its own would be), compiled in as a function, after `prelude` (local functions the steps share).
    A step's keys are declared in the script's KEYS like every other key it touches."""
    functions = "".join(
        f"STEPS[{codec.dumps(name)}] = function(KEYS, ARGV)\n{body}\nend\n"
        for name, body in (steps or {}).items()
    )
    return f"{prelude}\nlocal STEPS = {{}}\n{functions}{_RUN}"


_APPLY = compose()


class AtomicWrites:
    """Records writes; `apply` runs them all or none, in order, in one round trip."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._ops: list[list[Any]] = []

    def _key(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self._keys.append(key)
            index = self._index[key] = len(self._keys)
        return index

    def _op(self, command: str, key: str | None, *args: Any) -> None:
        self._ops.append(
            [
                command,
                0 if key is None else self._key(key),
                *(a if a.__class__ is str else _arg(a) for a in args),
            ]
        )

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        if ex is None:
            self._op("SET", key, value)
        else:
            self._op("SET", key, value, "EX", ex)

    def psetex(self, key: str, ms: int, value: str | bytes) -> None:
        self._op("PSETEX", key, ms, value)

    def hset(self, key: str, mapping: Mapping[str, Any]) -> None:
        self._op("HSET", key, *(part for item in mapping.items() for part in item))

    def expire(self, key: str, seconds: int) -> None:
        self._op("EXPIRE", key, seconds)

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        self._op("ZADD", key, *(part for member, score in mapping.items() for part in (score, member)))

    def zremrangebyscore(self, key: str, low: float | str, high: float | str) -> None:
        self._op("ZREMRANGEBYSCORE", key, low, high)

    def xadd(self, key: str, fields: Mapping[str, Any]) -> None:
        self._op("XADD", key, "*", *(part for item in fields.items() for part in item))

    def incr(self, key: str) -> None:
        self._op("INCR", key)

    def publish(self, channel: str, message: str) -> None:
        self._op("PUBLISH", None, channel, message)  # a channel is no key

    def step(self, name: str, keys: list[str], args: list[Any]) -> None:
        """Run the script's step `name` (see `compose`) over `keys` and `args`."""
        self._ops.append([f"@{name}", [self._key(k) for k in keys], [_arg(a) for a in args]])

    async def apply(self, script: AsyncScript, *, guard: str | None = None) -> str | None:
        """Run the writes with `script` (from `register`); with `guard`, only when that key does not
        exist (then its value is answered and nothing is written). None when the writes ran."""
        guard_index = self._key(guard) if guard is not None else 0
        held = await script(keys=self._keys, args=[guard_index, codec.dumps(self._ops)])
        return None if held is None else held.decode() if isinstance(held, bytes) else str(held)


def register(redis: Redis, source: str = _APPLY) -> AsyncScript:
    """The script that applies recorded writes (`source`: one from `compose`, for writes with steps),
    registered on `redis` (EVALSHA; EVAL when unknown)."""
    return redis.register_script(source)


def _arg(value: Any) -> str:
    """Every argument travels as text, as redis-py would send it (no Lua number formatting)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, bool):
        raise TypeError("a Redis argument is not a bool")  # redis-py refuses them too
    return value if isinstance(value, str) else str(value)
