"""Integration fixtures: an arq worker running the real pipeline in this process, against real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.worker import Worker

from tests.integration.workers import running_worker
from worker.client import PlanClient
from worker.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[PlanClient]:
    """A producer client on the test database and prefix."""
    async with PlanClient.connect(settings) as plan_client:
        yield plan_client


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """A real arq worker (pipeline, heartbeats, ledger writer) running as a task of this event loop."""
    async with running_worker(settings) as arq_worker:
        yield arq_worker
