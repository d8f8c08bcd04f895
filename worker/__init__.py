"""The queue side of plangate: settings, the producer client, the arq worker, the LLM call and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import BadRequest, JobNotFound, PlangateError, QueueUnavailable, WaitTimeout

if TYPE_CHECKING:
    from worker.client import PlanClient

__version__ = "0.2.0"  # the same as pyproject.toml (tests/unit/test_cli_help.py checks it)

__all__ = ["BadRequest", "JobNotFound", "PlanClient", "PlangateError", "QueueUnavailable", "WaitTimeout"]


def __getattr__(name: str) -> Any:
    # PlanClient is imported on first use: every `worker.*` import runs this file, and the CLI's light
    # commands (`plangate --help`) must not pay for redis-py and pydantic.
    if name == "PlanClient":
        from worker.client import PlanClient

        return PlanClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
