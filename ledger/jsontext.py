"""JSON text for the ledger: orjson where it gives exactly what the stdlib gives, the stdlib otherwise.

The chain hashes text, so the text must not depend on which encoder ran: `canonical_dumps` is byte for
byte `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` (checked for every
code point in tests/unit/test_ledger_jsontext.py), and the stdlib still writes whatever orjson refuses
(integers beyond 64 bits, lone surrogates, non-text keys) or would write differently (floats).
orjson is ~15 times faster on a plan-sized payload, which is most of the ledger writer's Python time.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# orjson reads an integer beyond 64 bits as a float (silently), so text with a long digit run (in a
# number or, harmlessly, in a string) goes to the stdlib, which keeps it exact.
# (A regex scan costs ~20 us on a plan-sized text; mapping every digit to "0" and searching costs ~2.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
# Unsupported types go to `default` (str, as the stdlib path does) instead of orjson's own formats.
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_SCALARS = frozenset({str, int, bool, type(None)})  # (exact types: a float or a subclass goes to the stdlib)


def _constant(name: str) -> str:
    """NaN, Infinity and -Infinity are not JSON: the ledger keeps them as text ("NaN"), not as null."""
    return name


def loads(text: str | bytes) -> Any:
    """Parse JSON text exactly: long integers stay integers; NaN/Infinity become the text "NaN"/"Infinity"."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_RUN not in data.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)  # (the UTF-8 bytes made for the check: no second encode)
        except orjson.JSONDecodeError:
            pass  # the stdlib names the problem (and reads NaN/Infinity, which orjson refuses)
    return json.loads(text, parse_constant=_constant)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is, key order kept, anything unknown as str(...).

    A float NaN or infinity (not JSON; `loads` never returns one) is written as null."""
    try:
        return orjson.dumps(value, default=str, option=_PASSTHROUGH).decode("utf-8")
    except TypeError:  # a big integer, a lone surrogate, a non-text key: the stdlib writes those
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_dumps(content: dict[str, Any]) -> str:
    """Compact sorted-key JSON of a flat dict of text, integers and nulls (a chain row's hashed content)."""
    fast = _orjson_canonical(content)
    if fast is not None:
        return fast.decode("utf-8")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(content: dict[str, Any]) -> bytes:
    """`canonical_dumps(content)` as UTF-8 (what the chain hashes), without a decode and re-encode."""
    fast = _orjson_canonical(content)
    return fast if fast is not None else canonical_dumps(content).encode("utf-8")


def _orjson_canonical(content: dict[str, Any]) -> bytes | None:
    if set(map(type, content.values())) <= _SCALARS:
        try:
            return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            pass  # an integer beyond 64 bits, a lone surrogate
    return None
