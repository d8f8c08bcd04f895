"""A hostile LLM endpoint against a real worker: a stream that floods in (one endless line, or content
that never finishes) ends the job `failed` with a typed code, quickly, and the job's heartbeat keeps
beating while it arrives (a stalled heartbeat would let another worker take the job over)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from plangate_base.vocabulary import JobState, Phase
from worker.client import PlanClient
from worker.errors import LLMAnswerTooLarge
from worker.keys import Keys
from worker.llm_stub.server import StubServer
from worker.settings import Settings

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# Well under JOB_TIMEOUT_S (30 s in these settings): a job that only ends at the job timeout fails the test.
WAIT_S = 15.0


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    """The scripted endpoint, its huge line (64 MiB) spread over 3 s: the worker reads it for about
    1.5 s before the line cap below stops it, time for a dozen heartbeats."""
    async with StubServer(stream_seconds=3.0) as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "heartbeat_s": 0.1,
            "heartbeat_timeout_s": 2.0,
            "llm_max_line_bytes": 32 * MIB,
            "llm_max_answer_bytes": 48 * MIB,
        }
    )


@pytest.mark.parametrize(
    ("model", "cap"),
    [("scripted-huge-line", "LLM_MAX_LINE_BYTES"), ("scripted-endless", "LLM_MAX_ANSWER_BYTES")],
)
async def test_a_flooding_stream_fails_typed_and_the_heartbeat_keeps_beating(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, model: str, cap: str
) -> None:
    job_id = await client.submit(
        {"agent_id": "llm-planner-001", "description": "Plan a log rotation", "model": model}
    )
    status = await client.wait(job_id, timeout=WAIT_S)

    assert status.state is JobState.FAILED and status.error is not None, status
    assert status.error.type == LLMAnswerTooLarge.code
    assert f"{cap}=" in status.error.message and model in status.error.message

    # The job's event stream: its PLAN phase, a progress beat per HEARTBEAT_S while the stream came
    # in, then the terminal record. No gap between two of them may come near the takeover threshold.
    entries = await redis.xrange(Keys(settings.key_prefix).job_events(job_id))
    events = [fields for _, fields in entries]
    start = next(i for i, e in enumerate(events) if e["kind"] == "phase" and e["phase"] == Phase.PLAN)
    planning = events[start:]
    assert planning[-1]["kind"] == "terminal" and planning[-1]["state"] == JobState.FAILED
    beats = [e for e in planning if e["kind"] == "progress"]
    times = [datetime.fromisoformat(e["at"]) for e in planning]
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    # The endless stream lasts as long as reading 48 MiB takes (under half a second on a quiet box):
    # the beats are counted against how long the flood lasted, at least one beat per 3 HEARTBEAT_S.
    flooded_s = (times[-1] - times[0]).total_seconds()
    assert len(beats) >= max(2, int(flooded_s / (3 * settings.heartbeat_s))), (flooded_s, planning)
    assert max(gaps) < settings.stale_after_s / 2, gaps
    assert int(beats[-1]["tokens"]) > 0 or model == "scripted-huge-line"  # endless content was counted
