"""plangate_base.codec: orjson's fast text must be the stdlib's text byte for byte (the chain hashes it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import chain
from plangate_base import codec
from tests.unit.ledger_events import done_event


def stdlib_canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stdlib_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def test_every_code_point_is_written_as_the_stdlib_writes_it() -> None:
    mismatched = []
    for start in range(0, 0x110000, 4096):
        points = range(start, min(start + 4096, 0x110000))
        text = "".join(chr(cp) for cp in points if not 0xD800 <= cp <= 0xDFFF)
        content = {"k": text, "é": start}
        if codec.canonical_dumps(content) != stdlib_canonical(content):
            mismatched.append(hex(start))
    assert mismatched == []


scalars = st.none() | st.booleans() | st.integers() | st.text()


@given(st.dictionaries(st.text(), scalars, max_size=25))
def test_canonical_text_matches_the_stdlib(content: dict[str, Any]) -> None:
    assert codec.canonical_dumps(content) == stdlib_canonical(content)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 10**40, 1.5, 1e16, float("nan"), "\ud800", True],
    ids=["2^64", "below-int64", "10^40", "float", "1e16", "nan", "lone-surrogate", "bool"],
)
def test_values_orjson_refuses_or_writes_differently_go_to_the_stdlib(value: Any) -> None:
    content = {"seq": 1, "value": value}
    assert codec.canonical_dumps(content) == stdlib_canonical(content)


def test_row_hash_is_unchanged_by_the_fast_path() -> None:
    row = {name: f"{name}-é-\u2028-\x01" for name in chain.CHAIN_COLUMNS}
    row.update(seq=7, attempt=2, schema_version=4, payload=stdlib_dumps(done_event()["payload"]))
    expected = chain.hashlib.sha256(stdlib_canonical(row).encode("utf-8")).hexdigest()
    assert chain.row_hash(row) == expected
    assert chain.row_hash({**row, "extra": "ignored"}) == expected  # only the chain columns are hashed


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.recursive(scalars | finite, lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_dumps_round_trips_through_loads(value: Any) -> None:
    assert codec.loads(codec.dumps(value)) == value
    assert json.loads(codec.dumps(value)) == value


def test_dumps_matches_the_stdlib_for_what_only_the_stdlib_writes() -> None:
    at = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    for value in ({"at": at}, {"big": 2**70}, {1: "int key"}, ["\ud800"], {"x": {"y": object}}):
        assert codec.dumps(value) == stdlib_dumps(value)


def test_loads_keeps_long_integers_exact() -> None:
    text = '{"a": 123456789012345678901234567890, "b": -9223372036854775809, "c": 18446744073709551615}'
    assert codec.loads(text) == {"a": 123456789012345678901234567890, "b": -(2**63) - 1, "c": 2**64 - 1}
    assert codec.loads(text.encode()) == codec.loads(text)


def test_loads_reads_non_json_constants_as_text() -> None:
    value = codec.loads('{"a": NaN, "b": [Infinity, -Infinity], "c": 1.5}')
    assert value == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}
    assert not any(isinstance(v, float) and math.isnan(v) for v in value.values())


@pytest.mark.parametrize("text", ["", "{", '{"a": 1,}', "nul", b"\xff"])
def test_loads_rejects_invalid_json_with_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        codec.loads(text)


class _Level(IntEnum):
    HIGH = 3


class _Colour(StrEnum):
    RED = "red"


class _Tag(str):
    pass


def test_subclasses_are_written_as_their_base_as_the_stdlib_does() -> None:
    value = {"c": Counter(a=2), "o": OrderedDict(b=1), "i": _Level.HIGH, "s": _Colour.RED, "t": _Tag("x")}
    assert codec.dumps(value) == stdlib_dumps(value) == '{"c":{"a":2},"o":{"b":1},"i":3,"s":"red","t":"x"}'


def test_dumpb_is_dumps_as_utf8() -> None:
    for value in ({"text": "é\u2028"}, {"big": 2**70}, [1, None, True], {1: "int key"}):
        assert codec.dumpb(value) == codec.dumps(value).encode("utf-8")


def test_dumpb_holds_no_more_memory_than_its_bytes() -> None:
    """orjson's own bytes keep the buffer it grew (8 x a 4 KB text): a worker holds each streaming job's
    request body, so dumpb hands back an object of its own size."""
    value = {"messages": [{"role": "system", "content": "x" * 4000}]}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [codec.dumpb(value) for _ in range(20)]
        per_body = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert len(held[0]) < per_body < 1.25 * len(held[0])


def test_nesting_too_deep_for_either_parser_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        codec.loads("[" * 100_000 + "]" * 100_000)


def test_importing_the_codec_leaves_orjson_for_its_first_use() -> None:
    program = (
        "import sys, plangate_base.codec as c; before = 'orjson' in sys.modules; c.dumps({}); "
        "print(before, 'orjson' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
