"""The arq job payload: JSON in, a strict decoder, and why arq would drop a job it cannot run.

A payload that is a `plan` call reaches the pipeline whatever its request holds, and the pipeline
refuses what is not a request (`bad_request`). A payload that is no plan call at all (not JSON,
another function, other arguments) raises: arq then drops the job without calling us, as it does
when the payload is gone or its try count is past the limit, and the worker's drop hook
(arq_worker) ends the job `failed` with the code `unrunnable` names, instead of leaving its
status `queued` forever.
"""

from __future__ import annotations

from typing import Any

from plangate_base import codec
from plangate_base.vocabulary import FailureCode
from worker.errors import UnreadablePayload

JOB_FUNCTION = "plan"
MALFORMED_FIELD = "__malformed_payload__"


def encode_job(data: dict[str, Any]) -> bytes:
    """arq's job serializer: JSON, never pickle."""
    return codec.dumpb(data)


def decode_job(raw: bytes | str) -> dict[str, Any]:
    """arq's job deserializer: a plan call, or UnreadablePayload for anything else."""
    try:
        data = codec.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadablePayload(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadablePayload("not a JSON object")
    args, kwargs = data.get("a"), data.get("k", {})
    if data.get("f") != JOB_FUNCTION:
        raise UnreadablePayload(f"unknown job function {str(data.get('f'))[:80]!r}")
    if not isinstance(args, list) or len(args) != 2 or not isinstance(kwargs, dict) or kwargs:
        raise UnreadablePayload("expected exactly the arguments (job_id, request)")
    job_try, enqueued = data.get("t"), data.get("et", 0)
    return {
        "f": JOB_FUNCTION,
        "a": args,
        "k": {},
        "t": job_try if isinstance(job_try, int) and not isinstance(job_try, bool) else None,
        "et": enqueued if isinstance(enqueued, int) and not isinstance(enqueued, bool) else 0,
    }


def request_of(args: tuple[Any, ...]) -> Any:
    """The request part of a decoded call (whatever it is; the pipeline validates it)."""
    return args[1] if len(args) == 2 else {MALFORMED_FIELD: "missing request"}


def unrunnable(raw: bytes | str | None, tries: bytes | str | None, max_tries: int) -> tuple[FailureCode, str]:
    """Why arq drops a job without running it, from its payload and arq's try counter of it."""
    if raw is None:
        return FailureCode.PAYLOAD_LOST, "arq's payload of the job is gone"
    if not raw:
        return FailureCode.PAYLOAD_LOST, "arq's payload of the job is empty"
    try:
        payload_try = decode_job(raw)["t"]
    except UnreadablePayload as exc:
        return FailureCode.PAYLOAD_UNREADABLE, f"arq's payload of the job is unreadable: {exc}"
    problem = try_count_problem(tries, max_tries, payload_try)
    return FailureCode.PAYLOAD_UNREADABLE, problem or "arq could not start the job"


def try_count_problem(
    tries: bytes | str | None, max_tries: int, payload_try: int | None = None
) -> str | None:
    """What is wrong with arq's try counter of a job (its retry key, or the payload's `t`), if anything."""
    if tries is None:
        counted = 0
    else:
        try:
            counted = int(tries)
        except ValueError:
            shown = tries.decode("utf-8", "replace") if isinstance(tries, bytes) else tries
            return f"arq's try counter of the job is not a number ({shown[:40]!r})"
    count = max(counted, payload_try or 0)
    if count >= max_tries:
        return f"arq counts {count} tries of the job (its limit is {max_tries})"
    return None
