"""Usage: what the endpoint reported, our estimate, the sum over a plan's calls, and the JSON shape the
job's metadata and the ledger keep."""

from __future__ import annotations

from worker.llm.usage import Usage


def test_reported_usage_takes_the_counts_and_a_cost_when_there_is_one() -> None:
    assert Usage.reported({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}) == Usage(
        10, 4, 14
    )
    openrouter = Usage.reported(
        {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cost": 0.0021}
    )
    assert openrouter.cost == 0.0021 and openrouter.as_dict()["cost"] == 0.0021
    # Missing or non-numeric counts are 0, not an error: the answer itself was fine.
    assert Usage.reported({"prompt_tokens": None, "completion_tokens": "7", "cost": True}) == Usage(0, 0, 0)


def test_the_estimate_counts_prompt_characters_and_chunks() -> None:
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 8}]
    assert Usage.estimate(messages, chunks=3) == Usage(12, 3, 15, estimated=True)
    assert Usage.estimate([{"role": "user", "content": ""}], chunks=0).prompt_tokens == 1


def test_the_sum_of_a_plans_calls_is_estimated_if_any_call_was() -> None:
    total = Usage.sum([Usage(10, 4, 14, cost=0.5), Usage.estimate([{"content": "z" * 20}], 2)])
    assert total == Usage(15, 6, 21, estimated=True, cost=0.5)
    assert Usage.sum([Usage(1, 1, 2), Usage(2, 2, None)]) == Usage(3, 3, 2)
    assert Usage.sum([Usage(1, 1, 2)]).cost is None


def test_the_json_shape_leaves_out_what_nobody_counted() -> None:
    assert Usage(3, 4, 7).as_dict() == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "estimated": False,
    }
    # A failed attempt's spend in its ledger event: no total, no cost.
    assert Usage(3, 4, estimated=True).as_dict() == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "estimated": True,
    }
