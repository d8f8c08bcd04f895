"""worker.ids: job and event ids are UUIDv7 hex: time-ordered by millisecond, random below that."""

from __future__ import annotations

import time
import uuid

from tests.eventually import eventually_sync
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

    def next_millisecond() -> str | None:
        later = new_id()
        return later if later[:12] != first[:12] else None

    later = eventually_sync(next_millisecond, timeout_s=1.0, interval_s=0, what="the clock to advance")
    assert later > first
    many = {new_id() for _ in range(20_000)}
    assert len(many) == 20_000


def test_ids_made_in_one_process_keep_their_order_within_a_millisecond() -> None:
    burst = [new_id() for _ in range(5_000)]  # many share a millisecond
    assert burst == sorted(burst) and len(set(burst)) == len(burst)
    assert len({i[:12] for i in burst}) < len(burst)  # (some did share one)
    assert all(uuid.UUID(i).version == 7 for i in burst)
