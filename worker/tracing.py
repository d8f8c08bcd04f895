"""OpenTelemetry spans, when PLANGATE_TRACING is on and the [otel] extra is installed; else nothing.

One trace per job: `submit` (PRODUCER) on the client, whose context travels inside the job
payload, then `plan job` (CONSUMER) on the worker with a span per phase and the LLM call as a
CLIENT span named after the GenAI semantic conventions (`chat {model}`).
"""

from __future__ import annotations

from typing import Any

try:  # the optional extra
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised where the extra is missing
    trace = None  # type: ignore[assignment]

TRACE_FIELD = "_trace"  # where the submit's trace context rides in the job payload
_TRACER_NAME = "plangate"


def enabled(on: bool) -> bool:
    """Tracing is on when asked for and OpenTelemetry is installed."""
    return on and trace is not None


def start_span(
    name: str, kind: str = "internal", parent: Any = None, attributes: dict[str, Any] | None = None
) -> Any:
    """Start a span (ended by `end_span`); `parent` is a span or an extracted context."""
    ctx = (
        trace.set_span_in_context(parent)
        if parent is not None and hasattr(parent, "get_span_context")
        else parent
    )
    kinds = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT, "producer": SpanKind.PRODUCER,
             "consumer": SpanKind.CONSUMER}  # fmt: skip
    return trace.get_tracer(_TRACER_NAME).start_span(
        name, context=ctx, kind=kinds[kind], attributes=attributes
    )


def end_span(span: Any, error_type: str | None = None, attributes: dict[str, Any] | None = None) -> None:
    """End a span, marking it failed with `error.type` when there was an error."""
    if span is None:
        return
    if attributes:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if error_type:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def inject(span: Any) -> dict[str, str]:
    """The span's context as a carrier dict (W3C traceparent) to put in the job payload."""
    carrier: dict[str, str] = {}
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        propagate.inject(carrier)
    finally:
        otel_context.detach(token)
    return carrier


def extract(carrier: Any) -> Any:
    """The parent context a worker continues from (None when the payload carried none)."""
    if trace is None or not isinstance(carrier, dict):
        return None
    return propagate.extract({str(k): str(v) for k, v in carrier.items()})


def provider_name(base_url: str) -> str:
    """`gen_ai.provider.name`: openrouter when the base URL says so, else openai (the protocol)."""
    return "openrouter" if "openrouter.ai" in base_url else "openai"
