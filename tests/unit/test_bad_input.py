"""Hostile input at every edge: property-based (hypothesis) over PlanRequest, the job payload decoder
and PREFLIGHT. Whatever comes in, the answer is a typed error or a refusal, never a crash."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.models import PlanRequest
from governance.registry import AgentRegistry
from plangate_base.vocabulary import FailureCode, RefusalCode
from worker.client import to_request
from worker.errors import BadRequest, UnreadablePayload
from worker.keys import Keys
from worker.pipeline import JobRun, Pipeline, Refused
from worker.queue_backend.arq_payload import (
    JOB_FUNCTION,
    decode_job,
    encode_job,
    request_of,
    try_count_problem,
    unrunnable,
)
from worker.settings import Settings
from worker.status_store import StatusStore

_CALL = encode_job({"t": None, "f": JOB_FUNCTION, "a": ["job-1", {"agent_id": "a"}], "k": {}, "et": 0})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "agent_id": json_values | st.sampled_from(["llm-planner-001", "a b", "", "x" * 300]),
        "tenant_id": json_values,
        "task_type": json_values | st.sampled_from(["plan", "deploy", "Plan!"]),
        "description": json_values | st.text(max_size=9_000),
        "constraints": json_values | st.lists(st.text(max_size=20), max_size=60),
        "context": json_values,
        "side_effects": json_values | st.lists(st.sampled_from(["ssh", "read_docs", "x y"]), max_size=5),
        "locks": json_values,
        "wait_lock_s": json_values,
        "model": json_values,
        "unexpected": json_values,
    },
)


@given(request_like)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_request_validates_or_raises_bad_request(data: dict[str, Any]) -> None:
    try:
        request = to_request(data)
    except BadRequest as exc:
        assert str(exc).startswith("invalid request:")
        return
    assert isinstance(request, PlanRequest)
    json.dumps(request.model_dump(mode="json"))  # what is accepted can always be enqueued


@given(st.binary(max_size=500))
def test_the_payload_decoder_decodes_a_call_or_raises_unreadable_on_bytes(raw: bytes) -> None:
    _check_decoded(raw)


@given(json_values)
def test_the_payload_decoder_decodes_a_call_or_raises_unreadable_on_json(value: Any) -> None:
    _check_decoded(json.dumps(value).encode())


@given(st.dictionaries(st.sampled_from(["f", "a", "k", "t", "et", "x"]), json_values, max_size=6))
def test_a_hand_crafted_payload_is_a_call_the_pipeline_can_refuse_or_unreadable(
    fields: dict[str, Any],
) -> None:
    is_call = (
        fields.get("f") == JOB_FUNCTION
        and isinstance(fields.get("a"), list)
        and len(fields["a"]) == 2
        and fields.get("k", {}) == {}
    )
    assert _check_decoded(json.dumps(fields).encode()) is is_call


@given(st.dictionaries(st.sampled_from(["agent_id", "description", "x"]), json_values, max_size=3))
def test_a_plan_call_decodes_whatever_its_request_holds(request: dict[str, Any]) -> None:
    payload = {"t": None, "f": JOB_FUNCTION, "a": ["job-1", request], "k": {}, "et": 0}
    assert _check_decoded(encode_job(payload))


def _check_decoded(raw: bytes) -> bool:
    """Whether `raw` decoded to a well-formed plan call; the only other outcome is UnreadablePayload."""
    try:
        decoded = decode_job(raw)
    except UnreadablePayload as exc:
        assert str(exc)
        return False
    assert decoded["f"] == JOB_FUNCTION and decoded["k"] == {}
    assert isinstance(decoded["a"], list) and len(decoded["a"]) == 2
    assert decoded["t"] is None or isinstance(decoded["t"], int)
    assert isinstance(decoded["et"], int)
    return True


@pytest.mark.parametrize(
    ("raw", "tries", "code", "message"),
    [
        (None, None, FailureCode.PAYLOAD_LOST, "gone"),
        (b"", b"1", FailureCode.PAYLOAD_LOST, "empty"),
        (b"\x80garbage", None, FailureCode.PAYLOAD_UNREADABLE, "not JSON"),
        (b'{"f": "rm", "a": [], "k": {}}', None, FailureCode.PAYLOAD_UNREADABLE, "unknown job function 'rm'"),
        (_CALL, b"1000001", FailureCode.PAYLOAD_UNREADABLE, "arq counts 1000001 tries"),
        (_CALL, b"many", FailureCode.PAYLOAD_UNREADABLE, "not a number ('many')"),
        (_CALL.replace(b'"t":null', b'"t":5000000'), b"1", FailureCode.PAYLOAD_UNREADABLE, "counts 5000000"),
        (_CALL, b"1", FailureCode.PAYLOAD_UNREADABLE, "arq could not start the job"),
    ],
)
def test_why_arq_drops_a_job(raw: bytes | None, tries: bytes | None, code: FailureCode, message: str) -> None:
    found_code, found_message = unrunnable(raw, tries, 1_000_000)
    assert found_code is code and message in found_message


def test_a_sane_try_counter_has_no_problem() -> None:
    assert try_count_problem(None, 10) is None and try_count_problem(b"9", 10) is None
    assert try_count_problem("10", 10) == "arq counts 10 tries of the job (its limit is 10)"


def test_our_own_payload_round_trips() -> None:
    payload = {"t": None, "f": JOB_FUNCTION, "a": ["job-1", {"agent_id": "a"}], "k": {}, "et": 5}
    decoded = decode_job(encode_job(payload))
    assert decoded == payload and request_of(tuple(decoded["a"])) == {"agent_id": "a"}


def test_text_that_is_not_utf8_is_refused_at_submit() -> None:
    raw = b"plan the \xff\xfe rollout".decode("utf-8", "surrogateescape")  # how argv carries bad bytes
    with pytest.raises(BadRequest, match="description"):
        to_request({"agent_id": "a", "description": raw})


def test_json_bombs_are_refused_at_submit() -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(10_000):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(BadRequest, match="nested"):
        to_request({"agent_id": "a", "description": "x", "context": deep})
    with pytest.raises(UnreadablePayload, match="nested"):  # the decoder survives too
        decode_job(("[" * 100_000 + "]" * 100_000).encode())


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    keys = Keys("unit:")
    s = Settings(key_prefix="unit:", llm_base_url="http://127.0.0.1:9/v1")
    return Pipeline(s, redis, StatusStore(redis, keys, ttl_s=60), AgentRegistry(redis, keys), planner=None)  # type: ignore[arg-type]


@given(st.one_of(request_like, json_values))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
async def test_preflight_refuses_or_allows_anything(pipeline: Pipeline, raw: Any) -> None:
    import structlog

    job = JobRun("job", 1, "a", "t", structlog.get_logger())
    try:
        request, agent = await pipeline.preflight_phase.check(job, raw)
    except Refused as exc:
        assert exc.refusal.code in set(RefusalCode) and exc.refusal.reason
        return
    assert request.agent_id == agent.agent_id
