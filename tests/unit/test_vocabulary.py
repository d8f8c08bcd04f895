"""The words defined once agree with each other: terminal states and terminal ledger kinds, outcomes."""

from __future__ import annotations

import pytest

from governance.policy import Refuse
from plangate_base.vocabulary import (
    TERMINAL_EVENT_KINDS,
    TERMINAL_STATES,
    CancelReason,
    EventKind,
    FailureCode,
    JobState,
    RefusalCode,
)
from worker.outcome import Outcome


def test_each_terminal_state_has_exactly_one_terminal_event_kind_of_the_same_spelling() -> None:
    for state in TERMINAL_STATES:
        same = [kind for kind in TERMINAL_EVENT_KINDS if kind.value == state.value]
        assert same == [EventKind(state.value)]
    for kind in TERMINAL_EVENT_KINDS:
        assert [state for state in TERMINAL_STATES if state.value == kind.value] == [JobState(kind.value)]
    assert len(TERMINAL_EVENT_KINDS) == len(TERMINAL_STATES)


def test_no_event_kind_outside_the_terminal_ones_is_spelled_like_a_state() -> None:
    states = {state.value for state in JobState}
    assert {kind for kind in EventKind if kind.value in states} == TERMINAL_EVENT_KINDS


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.refused(Refuse(RefusalCode.LOCKED, "resource r is locked by job j")),
        Outcome.error(JobState.FAILED, FailureCode.TRIES_EXHAUSTED, "tried 3 times"),
        Outcome.error(JobState.CANCELLED, CancelReason.BY_SUBMITTER, "cancelled while queued"),
    ],
)
def test_an_outcomes_ledger_event_and_status_fields_say_the_same(outcome: Outcome) -> None:
    assert outcome.kind in TERMINAL_EVENT_KINDS and outcome.kind.value == outcome.state.value
    event, fields = outcome.event_fields(), outcome.status_fields()
    assert event["reason"] == fields["reason_code"] == outcome.reason_code
    detail = "refusal" if outcome.state is JobState.REFUSED else "error"
    assert event["payload"][detail] == fields[detail]
    assert "progress" not in fields  # no token count given: none written


def test_a_failure_after_the_llm_call_began_carries_its_usage_and_progress() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "estimated": True}
    outcome = Outcome.error(JobState.FAILED, FailureCode.JOB_TIMEOUT, "ran past", usage=usage, tokens=4)
    assert outcome.event_fields()["payload"] == {
        "error": {"type": "job_timeout", "message": "ran past"},
        "usage": usage,
    }
    assert outcome.status_fields()["progress"] == {"tokens": 4}


def test_an_error_outcome_ends_a_job_failed_or_cancelled_only() -> None:
    with pytest.raises(ValueError, match="not done"):
        Outcome.error(JobState.DONE, FailureCode.INTERNAL_ERROR, "no")
