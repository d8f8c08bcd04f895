"""The heap of a long-running plangate process (`plangate worker`, `plangate ledger serve`)."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Put everything alive at the end of start-up (modules, classes, pydantic schemas, clients) out
    of the cyclic garbage collector's reach, so its full collections scan only what the work creates.

    Those objects live as long as the process anyway. Without this, every full collection walks the
    whole start-up heap: ~15 % of the ledger writer's time draining a backlog (bench/README.md, note 4).
    Call once from a process entry point, never from library code: it is process-wide."""
    gc.collect()  # (garbage made while starting is freed, not frozen)
    gc.freeze()
