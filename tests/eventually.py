"""The one way tests wait for what happens elsewhere: poll a check until it holds, or fail at a deadline.

`eventually` (async tests) and `eventually_sync` (sync tests and helpers) call `check` until it returns a
truthy value and return that value. `check` may raise (an ``assert proc.poll() is None`` inside it fails
the wait at once, with its own message). At the deadline they raise AssertionError naming `what` and the
last value `check` returned; `what` may be a callable, called then, to describe what was seen by then.
Polling is the synchronisation: no test sleeps a fixed time instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_INTERVAL_S = 0.02
_SHOWN_CHARS = 2000  # of the last value in the failure message


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """The first truthy value of `check()` (awaited if it is awaitable), polled every `interval_s`.

    Raises AssertionError naming `what` and the last value once `timeout_s` has passed without one."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout_s, value))
        await asyncio.sleep(interval_s)


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """`eventually` for sync code: the first truthy value of `check()`, polled every `interval_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout_s, value))
        time.sleep(interval_s)


def _timed_out(what: str | Callable[[], str], timeout_s: float, last: object) -> str:
    if callable(what):
        what = what()
    shown = repr(last)
    if len(shown) > _SHOWN_CHARS:
        shown = shown[:_SHOWN_CHARS] + "..."
    return f"timed out after {timeout_s:g} s waiting for {what}; last value: {shown}"
