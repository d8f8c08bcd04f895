"""ledger.jsontext: orjson's fast text must be the stdlib's text byte for byte (the chain hashes it)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import chain, jsontext
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
        if jsontext.canonical_dumps(content) != stdlib_canonical(content):
            mismatched.append(hex(start))
    assert mismatched == []


scalars = st.none() | st.booleans() | st.integers() | st.text()


@given(st.dictionaries(st.text(), scalars, max_size=25))
def test_canonical_text_matches_the_stdlib(content: dict[str, Any]) -> None:
    assert jsontext.canonical_dumps(content) == stdlib_canonical(content)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 10**40, 1.5, 1e16, float("nan"), "\ud800", True],
    ids=["2^64", "below-int64", "10^40", "float", "1e16", "nan", "lone-surrogate", "bool"],
)
def test_values_orjson_refuses_or_writes_differently_go_to_the_stdlib(value: Any) -> None:
    content = {"seq": 1, "value": value}
    assert jsontext.canonical_dumps(content) == stdlib_canonical(content)


def test_row_hash_is_unchanged_by_the_fast_path() -> None:
    row = {name: f"{name}-é-\u2028-\x01" for name in chain.CHAIN_COLUMNS}
    row.update(seq=7, attempt=2, schema_version=4, payload=stdlib_dumps(done_event()["payload"]))
    expected = chain.hashlib.sha256(stdlib_canonical(row).encode("utf-8")).hexdigest()
    assert chain.row_hash(row) == expected
    assert chain.row_hash({**row, "extra": "ignored"}) == expected  # only the chain columns are hashed


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.recursive(scalars | finite, lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_dumps_round_trips_through_loads(value: Any) -> None:
    assert jsontext.loads(jsontext.dumps(value)) == value
    assert json.loads(jsontext.dumps(value)) == value


def test_dumps_matches_the_stdlib_for_what_only_the_stdlib_writes() -> None:
    at = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    for value in ({"at": at}, {"big": 2**70}, {1: "int key"}, ["\ud800"], {"x": {"y": object}}):
        assert jsontext.dumps(value) == stdlib_dumps(value)


def test_loads_keeps_long_integers_exact() -> None:
    text = '{"a": 123456789012345678901234567890, "b": -9223372036854775809, "c": 18446744073709551615}'
    assert jsontext.loads(text) == {"a": 123456789012345678901234567890, "b": -(2**63) - 1, "c": 2**64 - 1}
    assert jsontext.loads(text.encode()) == jsontext.loads(text)


def test_loads_reads_non_json_constants_as_text() -> None:
    value = jsontext.loads('{"a": NaN, "b": [Infinity, -Infinity], "c": 1.5}')
    assert value == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}
    assert not any(isinstance(v, float) and math.isnan(v) for v in value.values())


@pytest.mark.parametrize("text", ["", "{", '{"a": 1,}', "nul", b"\xff"])
def test_loads_rejects_invalid_json_with_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)
