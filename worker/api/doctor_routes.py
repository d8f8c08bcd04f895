"""`GET /v1/admin/doctor` (admin scope): `plangate doctor`'s checks run by this API process, and the
`plangate_doctor_check` gauge (0 ok, 1 warn, 2 fail, one series per check) on its /metrics, refreshed
by each call and every DOCTOR_INTERVAL_S in the background, so a dashboard shows a red check."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel
from redis.asyncio import Redis

from governance.api_tokens import Scope
from plangate_base.checks import CheckResult
from plangate_base.logs import get_logger
from plangate_base.vocabulary import CheckStatus
from worker.api.auth import Caller, require
from worker.doctor import run_checks
from worker.doctor.report import EXIT_HEALTHY, exit_code, summary
from worker.settings import Settings

log = get_logger("plangate.api")


class DoctorCheck(BaseModel):
    """One check: `name` (dotted, group first), ok / warn / fail, why, and what to do."""

    name: str
    status: CheckStatus
    why: str
    fix: str | None = None


class DoctorReport(BaseModel):
    """Every check, and whether none failed (the CLI's exit 0)."""

    ok: bool
    summary: dict[str, int]
    checks: list[DoctorCheck]


class Doctor:
    """Runs the checks for this API process and keeps the gauge."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._settings = settings
        self._gauge = Gauge(
            "plangate_doctor_check",
            "plangate doctor's last finding per check: 0 ok, 1 warn, 2 fail",
            ["check"],
            registry=registry,
        )

    async def report(self, redis: Redis) -> DoctorReport:
        results = await run_checks(self._settings, redis, llm=False)
        for result in results:
            self._gauge.labels(result.name).set(result.status.gauge)
        return _report(results)

    async def refresh_forever(self, redis: Redis) -> None:
        """Run the checks every DOCTOR_INTERVAL_S (not at all when 0) until cancelled."""
        interval = self._settings.doctor_interval_s
        while interval > 0:
            try:
                await self.report(redis)
            except Exception as exc:  # a failing refresh is logged; the route still answers
                log.warning("doctor.refresh_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def running(self, redis: Redis) -> Any:
        """The background refresh for the app's lifetime."""
        task = asyncio.create_task(self.refresh_forever(redis))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _report(results: list[CheckResult]) -> DoctorReport:
    return DoctorReport(
        ok=exit_code(results) == EXIT_HEALTHY,
        summary=summary(results),
        checks=[DoctorCheck(name=r.name, status=r.status, why=r.why, fix=r.fix) for r in results],
    )


def doctor_router(responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """The route (with the app's problem `responses` documented)."""
    router = APIRouter()

    @router.get(
        "/v1/admin/doctor",
        response_model=DoctorReport,
        responses=responses,
        summary="plangate doctor's checks, run by this API process (admins)",
        tags=["admin"],
    )
    async def doctor(request: Request, principal: Caller) -> DoctorReport:
        """The checks `plangate doctor` runs, as this API process sees the deployment (the LLM endpoint
        is the workers' to call, and is left out); `ok` is false when one fails. Also sets the
        `plangate_doctor_check` gauge."""
        require(principal, Scope.ADMIN)
        doctor: Doctor = request.app.state.doctor
        return await doctor.report(request.app.state.redis)

    return router
