"""The arq job payload: JSON in, and a decoder that never raises.

arq fails a job it cannot decode (or whose function it does not know) without calling us,
which would leave the job's status `queued` forever. So whatever bytes are in Redis, the
decoder hands arq a well-formed `plan` call, and the pipeline refuses what is not a request.
"""

from __future__ import annotations

from typing import Any

from worker import codec

JOB_FUNCTION = "plan"
MALFORMED_FIELD = "__malformed_payload__"


def encode_job(data: dict[str, Any]) -> bytes:
    """arq's job serializer: JSON, never pickle."""
    return codec.dumpb(data)


def decode_job(raw: bytes | str) -> dict[str, Any]:
    """arq's job deserializer; a payload that is not ours becomes a call the pipeline will refuse."""
    try:
        data = codec.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _malformed(f"not JSON: {exc}")
    if not isinstance(data, dict):
        return _malformed("not a JSON object")
    args, kwargs = data.get("a"), data.get("k", {})
    if data.get("f") != JOB_FUNCTION:
        return _malformed(f"unknown job function {data.get('f')!r}")
    if not isinstance(args, list) or len(args) != 2 or not isinstance(kwargs, dict) or kwargs:
        return _malformed("expected exactly the arguments (job_id, request)")
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


def _malformed(why: str) -> dict[str, Any]:
    return {"f": JOB_FUNCTION, "a": [None, {MALFORMED_FIELD: why}], "k": {}, "t": None, "et": 0}
