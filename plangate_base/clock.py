"""The one clock: UTC, ISO-8601 with milliseconds (sorts as text), and milliseconds since the epoch."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(at: datetime) -> str:
    """A UTC time as ISO-8601 text with milliseconds and a 'Z', e.g. 2026-11-25T13:36:00.123Z."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current UTC time as ISO-8601 text with milliseconds (see `iso`)."""
    return iso(utcnow())


def now_ms() -> int:
    """Milliseconds since the epoch (the score of every time-ordered sorted set, the ledger's NOW_MS)."""
    return time.time_ns() // 1_000_000


def from_ms(millis: int) -> datetime:
    """The UTC time `millis` milliseconds after the epoch (a Redis stream id's time part)."""
    return datetime.fromtimestamp(millis / 1000, UTC)


def utc_day(at_s: float | None = None) -> str:
    """The UTC day (YYYY-mm-dd) of `at_s` seconds since the epoch, now when None."""
    return datetime.fromtimestamp(time.time() if at_s is None else at_s, UTC).strftime("%Y-%m-%d")


def utc_minute(at_s: float | None = None) -> str:
    """The UTC minute (YYYYmmddHHMM) of `at_s` seconds since the epoch, now when None."""
    return time.strftime("%Y%m%d%H%M", time.gmtime(at_s))


def parse_iso(text: str) -> datetime:
    """ISO-8601 text as `iso` writes it (any offset, or none for UTC) back to an aware UTC time."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def ms_of(iso_text: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time as `iso` writes it (a naive one is taken as UTC)."""
    return int(parse_iso(iso_text).timestamp() * 1000)
