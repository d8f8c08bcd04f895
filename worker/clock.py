"""The one clock: UTC, ISO-8601 with milliseconds, so timestamps sort as text."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def now_iso() -> str:
    """The current UTC time as ISO-8601 text, e.g. 2026-11-25T13:36:00.123Z."""
    now = utcnow()
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
