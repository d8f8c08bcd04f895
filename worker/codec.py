"""The one JSON codec: compact, UTF-8, used for job payloads, Redis fields and ledger events."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    """Serialize to compact JSON text (non-ASCII kept as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def dumpb(value: Any) -> bytes:
    """Serialize to UTF-8 JSON bytes (arq's job serializer)."""
    return dumps(value).encode("utf-8")


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON text or bytes; ValueError for anything that is not JSON (or nests too deeply)."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
