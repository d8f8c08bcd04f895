"""structlog configuration, done once per process at its entry (worker/cli/main.py's `main`, the bench's
`__main__`), never by library code (which logs through plangate_base/logs.py's default until then).

JSON off a terminal, readable on one, secrets redacted, and the context variables a job binds
(job_id, agent_id, tenant_id, attempt, phase: worker/pipeline.py) merged into every line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from plangate_base import codec
from plangate_base.logs import redact_secrets


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and stdlib logging (arq's, uvicorn's) to stderr at `level`.

    plangate's own events are rendered by structlog and written straight to stderr, a line each (the
    API logs one per submit: going through stdlib's handler machinery cost more than the rest of the
    line); other libraries' stdlib records get the same rendering through a ProcessorFormatter."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    tracebacks: list[Any] = [structlog.processors.format_exc_info] if use_json else []
    structlog.configure(
        processors=[*shared, *tracebacks, renderer],
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
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
    # No caller lookup for stdlib records (the switch logging's own source names for this): nothing here
    # renders their file, line or function, and the lookup (structlog's frame walk, for each of arq's
    # lines per job) cost CPU and kept a frame object alive per running job.
    logging._srcfile = None  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx logs every request at INFO; keep that for DEBUG.
    for noisy in ("httpx", "httpx2", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def _json_line(event: Any, **_: Any) -> str:
    """One JSON line (codec: anything it cannot encode as its str)."""
    return codec.dumps(event)
