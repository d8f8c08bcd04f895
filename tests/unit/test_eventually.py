"""tests.eventually: the polling helper returns the first truthy value, or fails naming what it waited for."""

from __future__ import annotations

import pytest

from tests.eventually import eventually, eventually_sync


class Counter:
    """A check that returns falsy values until its `ready_at`-th call, then the call number."""

    def __init__(self, ready_at: int | None) -> None:
        self.calls = 0
        self.ready_at = ready_at

    def __call__(self) -> int | None:
        self.calls += 1
        return self.calls if self.ready_at is not None and self.calls >= self.ready_at else None

    async def acheck(self) -> int | None:
        return self()


async def test_returns_the_first_truthy_value_of_a_plain_check() -> None:
    check = Counter(ready_at=4)
    assert await eventually(check, timeout_s=30, interval_s=0) == 4
    assert check.calls == 4


async def test_awaits_an_async_check() -> None:
    check = Counter(ready_at=3)
    assert await eventually(check.acheck, timeout_s=30, interval_s=0) == 3
    assert check.calls == 3


async def test_a_check_that_holds_at_once_is_called_once() -> None:
    check = Counter(ready_at=1)
    assert await eventually(check, timeout_s=0, interval_s=0) == 1
    assert check.calls == 1


async def test_times_out_naming_what_and_the_last_value() -> None:
    seen: list[object] = []

    def never() -> list[object]:
        seen.append("x")
        return []

    with pytest.raises(AssertionError) as raised:
        await eventually(never, timeout_s=0, interval_s=0, what="the ledger to catch up")
    assert str(raised.value) == "timed out after 0 s waiting for the ledger to catch up; last value: []"
    assert seen == ["x"]  # checked once even with no time to wait


async def test_an_exception_in_the_check_ends_the_wait() -> None:
    check = Counter(ready_at=None)

    def failing() -> None:
        check()
        assert check.calls < 2, "the worker exited"

    with pytest.raises(AssertionError, match="the worker exited"):
        await eventually(failing, timeout_s=30, interval_s=0)
    assert check.calls == 2


async def test_a_callable_what_is_called_at_the_deadline() -> None:
    seen: list[int] = []

    def sample() -> bool:
        seen.append(len(seen))
        return False

    with pytest.raises(AssertionError) as raised:
        await eventually(sample, timeout_s=0, what=lambda: f"done; saw {seen}")
    assert str(raised.value) == "timed out after 0 s waiting for done; saw [0]; last value: False"


class _LongFalsy:
    """A falsy value with a 5,000-character repr."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "y" * 5000


async def test_a_long_last_value_is_cut_in_the_message() -> None:
    with pytest.raises(AssertionError) as raised:
        await eventually(_LongFalsy, timeout_s=0, what="x")
    message = str(raised.value)
    assert message.endswith("y" * 100 + "...") and len(message) < 2100


def test_sync_twin_returns_the_first_truthy_value() -> None:
    check = Counter(ready_at=5)
    assert eventually_sync(check, timeout_s=30, interval_s=0) == 5
    assert check.calls == 5


def test_sync_twin_times_out_naming_what_and_the_last_value() -> None:
    check = Counter(ready_at=None)
    with pytest.raises(AssertionError) as raised:
        eventually_sync(check, timeout_s=0, interval_s=0, what="redis to answer PING")
    assert str(raised.value) == "timed out after 0 s waiting for redis to answer PING; last value: None"
    assert check.calls == 1
