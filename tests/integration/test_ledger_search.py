"""The search index's contract with the pipeline: a job a real worker ran is found by a word of its plan."""

from __future__ import annotations

import asyncio
import time

from arq.worker import Worker

from governance.models import SEED_AGENT_ID
from ledger.queries import search, show_job
from plangate_base.vocabulary import JobState
from worker.client import PlanClient
from worker.settings import Settings

WAIT_S = 30.0
# A word the scripted endpoint (worker/llm_stub/server.py build_plan) writes into a step only: the last step's
# description ("... their risks and rollback points ...").
STEP_WORD = "rollback"


async def _committed(settings: Settings, job_id: str, kind: str) -> None:
    """Return once the ledger writer has committed the job's `kind` event (poll with a deadline)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        if settings.ledger_path.exists():
            events = (await show_job(settings.ledger_path, job_id))["events"]
            if kind in {e["kind"] for e in events}:
                return
        assert time.monotonic() < deadline, f"the ledger never held {kind} of {job_id}"
        await asyncio.sleep(0.05)


async def test_a_job_is_found_by_a_word_that_only_its_steps_hold(
    worker: Worker, client: PlanClient, settings: Settings
) -> None:
    description = "Move the session store to the new cache cluster"
    job_id = await client.submit({"agent_id": SEED_AGENT_ID, "description": description})
    final = await client.wait(job_id, timeout=WAIT_S)
    assert final.state is JobState.DONE and final.output is not None, final
    steps = " ".join(f"{step.title} {step.description}" for step in final.output.plan)
    # The word is in a step, and in none of the other columns the index holds.
    assert STEP_WORD in steps.lower()
    assert STEP_WORD not in description.lower()
    assert STEP_WORD not in final.output.notes_for_humans.lower()
    await _committed(settings, job_id, "done")

    found = await search(settings.ledger_path, STEP_WORD)
    assert [job["job_id"] for job in found] == [job_id]
    assert f"[{STEP_WORD}]" in found[0]["snippet"]
    assert found[0]["state"] == "done" and found[0]["description"] == description
