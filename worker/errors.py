"""The typed errors of the queue side. The CLI maps them to exit codes; the worker to records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plangate_base.errors import PlangateError
from plangate_base.vocabulary import FailureCode

if TYPE_CHECKING:
    from pydantic import ValidationError


class BadRequest(PlangateError):
    """The request was rejected at the edge, before anything was enqueued."""


class JobNotFound(PlangateError):
    """No job with this id is known (never submitted, or its record expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class Unauthenticated(PlangateError):
    """A key did not prove the identity it was presented for (unknown id or wrong key, alike)."""


class Forbidden(BadRequest):
    """The API refused the token this operation (403: another agent or tenant, or a scope without it)."""


class NotCancellable(BadRequest):
    """The job ended already: there is nothing to cancel."""


class NotReviewable(BadRequest):
    """Only a job that ended `done` with decision ESCALATE can be reviewed, and only once."""


class QueueUnavailable(PlangateError):
    """The Redis/Dragonfly server could not be reached."""


class WaitTimeout(PlangateError):
    """The job did not reach a terminal state within the time asked for."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} not finished after {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class LLMError(PlangateError):
    """The LLM call did not produce a usable answer. `retryable` says whether to try again."""

    retryable: bool = False
    code: str = "llm_error"  # every subclass names its FailureCode

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMUnavailable(LLMError):
    """Connect errors and 5xx answers."""

    retryable = True
    code: str = FailureCode.LLM_UNAVAILABLE


class LLMTimeout(LLMError):
    """The request or the stream timed out."""

    retryable = True
    code: str = FailureCode.LLM_TIMEOUT


class LLMRateLimited(LLMError):
    """429 from the endpoint; `retry_after` carries its Retry-After."""

    retryable = True
    code: str = FailureCode.LLM_RATE_LIMITED


class LLMStreamError(LLMError):
    """An error event inside a 200 stream, or a stream cut before it finished."""

    retryable = True
    code: str = FailureCode.LLM_STREAM_ERROR


class LLMAnswerTooLarge(LLMError):
    """The stream outgrew a size cap (one SSE line, or the whole answer) before the model finished.

    Not retried on the same model: an endpoint that ignored max_tokens or never ends its stream does
    it again, and each try costs up to the cap in time and tokens. A fallback model may behave."""

    code: str = FailureCode.LLM_ANSWER_TOO_LARGE


class LLMOutOfCredits(LLMError):
    """402: the account has no credits. Retrying would not help."""

    code: str = FailureCode.LLM_OUT_OF_CREDITS


class LLMRequestRejected(LLMError):
    """A 4xx that is the request's fault (bad model, bad parameters)."""

    code: str = FailureCode.LLM_REQUEST_REJECTED


class InvalidOutput(LLMError):
    """The LLM's answer did not validate as a plan, even after the repair round."""

    code: str = FailureCode.INVALID_OUTPUT


class UnreadablePayload(PlangateError):
    """arq's payload of a job is not a plan call (not JSON, another function, other arguments)."""


def describe_validation_error(exc: ValidationError, what: str = "request") -> str:
    """One line naming every field of `what` that failed validation and why (a BadRequest's message)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or what
        # A model validator's ValueError reads "Value error, <our message>": the prefix says nothing.
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid {what}: " + "; ".join(parts)
