"""How library code logs: structlog, routed through stdlib logging until the application says otherwise.

A program that imports plangate and configures no logging sees warnings only, on stderr (stdlib's
last-resort handler), and nothing on stdout. One that configures stdlib logging gets plangate's lines
through its own handlers and levels, under the module's name (`ledger.migrations`, `worker.client`).
An application that configured structlog before importing plangate keeps its configuration; one that
configures it later replaces this default. plangate's own processes configure logging at entry
(worker/log_setup.py), which replaces it too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_WORDS = (
    "api_key", "apikey", "authorization", "password", "secret", "token_value", "agent_key", "reviewer_key",
)  # fmt: skip
REDACTED = "***"

# Keys that look like ours (agent and reviewer keys) or an LLM provider's, wherever they appear.
_SECRET_TEXT = re.compile(r"\b((?:pgk|pgr)_[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{16,})")


@functools.lru_cache(maxsize=1024)
def _names_a_secret(key: str) -> bool:
    """Whether a field's name says it holds a secret (the same few names come by again and again)."""
    return any(word in key.lower() for word in _SECRET_WORDS)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret, and key-like text anywhere."""
    for key, value in list(event_dict.items()):
        if _names_a_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and ("pgk_" in value or "pgr_" in value or "sk-" in value):
            event_dict[key] = _SECRET_TEXT.sub(REDACTED, value)
    return event_dict


def _traceback_once(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Logger.exception() has the stdlib handler print the traceback: leave it out of the message."""
    if method == "exception":
        event_dict.pop("exc_info", None)
    return event_dict


def apply_library_default() -> None:
    """Send structlog through stdlib logging, unless structlog was configured already (by anyone)."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # the stdlib level decides: WARNING when nobody set one
            structlog.contextvars.merge_contextvars,
            redact_secrets,
            _traceback_once,
            # The message only: the application's formatter adds time and level if it wants them.
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so an application that configures structlog after importing plangate is obeyed.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """The structlog logger library module `name` logs through, with the library default in place."""
    apply_library_default()
    return structlog.get_logger(name)
