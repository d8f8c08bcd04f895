"""What an LLM call spent, in tokens (and in money when the endpoint says): one type from the stream's
last event to the pipeline, the ledger payload and the metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one or more LLM calls. `estimated`: counted by plangate, not by the endpoint.

    `total_tokens` and `cost` are None when nobody counted them (an attempt that failed mid-call;
    an endpoint that reports no cost); `as_dict` leaves them out then, so the ledger's shape stays."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    estimated: bool = False
    cost: float | None = None  # what the endpoint billed (OpenRouter's usage.cost), when it says

    @classmethod
    def reported(cls, usage: dict[str, Any]) -> Usage:
        """The usage object of a stream's last event (`usage`), as the endpoint counted it."""
        cost = usage.get("cost")
        return cls(
            prompt_tokens=_tokens(usage.get("prompt_tokens")),
            completion_tokens=_tokens(usage.get("completion_tokens")),
            total_tokens=_tokens(usage.get("total_tokens")),
            cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        )

    @classmethod
    def estimate(cls, messages: list[dict[str, Any]], chunks: int) -> Usage:
        """Our count when the stream reported none: about 4 characters per prompt token, a token per chunk."""
        prompt = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
        return cls(prompt, chunks, prompt + chunks, estimated=True)

    @classmethod
    def sum(cls, usages: Iterable[Usage]) -> Usage:
        """The usage of several calls of one plan (retries, the repair round): estimated if any part is."""
        items = list(usages)
        costs = [u.cost for u in items if u.cost is not None]
        return cls(
            prompt_tokens=sum(u.prompt_tokens for u in items),
            completion_tokens=sum(u.completion_tokens for u in items),
            total_tokens=sum(u.total_tokens or 0 for u in items),
            estimated=any(u.estimated for u in items),
            cost=sum(costs) if costs else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape in the job's metadata and the ledger payload (counts left out when unknown)."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        if self.total_tokens is not None:
            out["total_tokens"] = self.total_tokens
        out["estimated"] = self.estimated
        if self.cost is not None:
            out["cost"] = self.cost
        return out


def _tokens(value: Any) -> int:
    """A token count from an endpoint's JSON: a number, or 0 when it sent none (or something else)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)
