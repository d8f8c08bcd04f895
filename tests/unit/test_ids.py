"""worker.ids: job and event ids are UUIDv7 hex: time-ordered by millisecond, random below that."""

from __future__ import annotations

import time
import uuid

from worker.ids import new_id


def test_an_id_is_a_uuid7_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert len(value) == 32 and value == parsed.hex
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= int(value[:12], 16) <= after


def test_ids_are_unique_and_ordered_across_milliseconds() -> None:
    first = new_id()
    deadline = time.monotonic() + 1.0
    later = first
    while later[:12] == first[:12]:  # until the clock has moved on by a millisecond
        assert time.monotonic() < deadline, "the clock did not advance"
        later = new_id()
    assert later > first
    many = {new_id() for _ in range(20_000)}
    assert len(many) == 20_000
