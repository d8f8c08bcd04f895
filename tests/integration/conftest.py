"""Integration fixtures: an arq worker running the real pipeline in this process, against real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from arq.worker import Worker

from worker.client import PlanClient
from worker.settings import Settings
from worker.worker_app import build_worker, stop_worker


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[PlanClient]:
    """A producer client on the test database and prefix."""
    async with PlanClient.connect(settings) as plan_client:
        yield plan_client


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """A real arq worker (pipeline, heartbeats, ledger writer) running as a task of this event loop."""
    arq_worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(arq_worker.async_run())
    yield arq_worker
    await stop_worker(arq_worker)
    with contextlib.suppress(asyncio.CancelledError):
        await task
