"""Identifiers of jobs and ledger events: UUIDv7 (RFC 9562) as 32 hex digits.

The first 48 bits are the Unix time in milliseconds, the other 74 free bits random (`secrets`), so
ids are as unguessable as a job id must be (a tenant-scoped client cannot probe them) and close to
time order: the ledger's unique event_id index and its job_id indexes take new ids at their end
instead of at random pages (batches 13-16 % faster than with uuid4 ids in a 30,000-event test, more
as the file outgrows the page cache; bench/README.md note 4).
"""

from __future__ import annotations

import secrets

from plangate_base.clock import now_ms

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def new_id() -> str:
    """A fresh UUIDv7 as 32 lowercase hex digits (the same form as `uuid4().hex`)."""
    millis = now_ms()
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | rand_a << 64 | _VARIANT | rand_b
    return f"{value:032x}"
