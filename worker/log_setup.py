"""structlog configuration, done once at process entry.

JSON off a terminal, readable on one, secrets redacted.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_WORDS = (
    "api_key", "apikey", "authorization", "password", "secret", "token_value", "agent_key", "reviewer_key",
)  # fmt: skip
REDACTED = "***"


# Keys that look like ours (agent keys) or an LLM provider's, wherever they appear in a message.
_SECRET_TEXT = re.compile(r"\b((?:pgk|pgr)_[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{16,})")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret, and key-like text anywhere."""
    for key, value in list(event_dict.items()):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and ("pgk_" in value or "pgr_" in value or "sk-" in value):
            event_dict[key] = _SECRET_TEXT.sub(REDACTED, value)
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and stdlib logging (arq's) to stderr at `level`."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx logs every request at INFO; keep that for DEBUG.
    for noisy in ("httpx", "httpx2", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
