"""The one JSON codec: how plangate writes and reads JSON, in Redis, job payloads, the ledger and the CLI.

`dumps` writes compact text, non-ASCII kept as is, key order kept, anything unknown as str(...): the
stdlib's `json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)`, except that a float
is written in orjson's shortest form (`1e-7`, not `1e-07`) and a float NaN or infinity as null. `loads`
reads any JSON exactly (long integers stay integers; the non-JSON NaN/Infinity become the text "NaN" and
"Infinity") and raises ValueError for anything else. `canonical_dumps` is the ledger chain's hashed
form, byte for byte `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
(tests/unit/test_codec.py checks every code point).

orjson does the work where it gives exactly that text (~15 times the stdlib on a plan-sized payload,
most of the ledger writer's Python time); the stdlib writes what orjson refuses (integers beyond 64
bits, lone surrogates, non-text keys). orjson is imported on first use: it pulls in dataclasses and
inspect, which `plangate --help` does without.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

# orjson reads an integer beyond 64 bits as a float (silently), so text with a long digit run (in a
# number or, harmlessly, in a string) goes to the stdlib, which keeps it exact.
# (A regex scan costs ~20 us on a plan-sized text; mapping every digit to "0" and searching costs ~2.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
_SCALARS = frozenset({str, int, bool, type(None)})  # (exact types: a float or a subclass goes to the stdlib)

_orjson: ModuleType | None = None
_options = 0


def _fast() -> ModuleType:
    """orjson, imported on the first call."""
    global _orjson, _options
    if _orjson is None:
        import orjson

        # Datetimes and dataclasses go to `default` (str, as the stdlib path does) instead of orjson's own
        # formats; subclasses of str, int, dict and list are written as their base, as the stdlib does.
        _options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
        _orjson = orjson
    return _orjson


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is, key order kept, anything unknown as str(...)."""
    try:
        return _fast().dumps(value, default=str, option=_options).decode("utf-8")
    except TypeError:  # a big integer, a lone surrogate, a non-text key: the stdlib writes those
        return _stdlib_dumps(value)


def dumpb(value: Any) -> bytes:
    """`dumps(value)` as UTF-8 bytes (arq's job serializer, the LLM request body), without a decode and
    re-encode.

    Copied to an object of its own size: orjson's bytes keep the whole buffer it grew while writing (a
    4.5 KB request body holds 32 KB, 8 x), and a worker holds each streaming job's body until the stream
    ends (tests/unit/test_codec.py measures it with tracemalloc)."""
    try:
        return memoryview(_fast().dumps(value, default=str, option=_options)).tobytes()
    except TypeError:
        return _stdlib_dumps(value).encode("utf-8")


def _stdlib_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _constant(name: str) -> str:
    """NaN, Infinity and -Infinity are not JSON: they are kept as text ("NaN"), not as floats."""
    return name


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON text or bytes exactly; ValueError for anything that is not JSON (or nests too deeply)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_RUN not in raw.translate(_DIGITS_TO_ZERO):
        orjson = _fast()
        try:
            return orjson.loads(raw)  # (the UTF-8 bytes made for the check: no second encode)
        except orjson.JSONDecodeError:
            pass  # the stdlib names the problem (and reads NaN/Infinity, which orjson refuses)
    try:
        return json.loads(data, parse_constant=_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def canonical_dumps(content: dict[str, Any]) -> str:
    """Compact sorted-key JSON of a flat dict of text, integers and nulls (a chain row's hashed content)."""
    fast = _canonical_fast(content)
    if fast is not None:
        return fast.decode("utf-8")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(content: dict[str, Any]) -> bytes:
    """`canonical_dumps(content)` as UTF-8 (what the chain hashes and a signature covers)."""
    fast = _canonical_fast(content)
    return fast if fast is not None else canonical_dumps(content).encode("utf-8")


def _canonical_fast(content: dict[str, Any]) -> bytes | None:
    if set(map(type, content.values())) <= _SCALARS:
        orjson = _fast()
        try:
            return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            pass  # an integer beyond 64 bits, a lone surrogate
    return None
