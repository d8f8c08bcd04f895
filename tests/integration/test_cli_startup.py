"""The polling commands against a real job import none of what only submitting or running jobs needs."""

from __future__ import annotations

from pathlib import Path

from tests.cli_imports import NOT_FOR_POLLING, imported_by_redis_py, loaded, run_cli
from worker.client import PlanClient
from worker.settings import Settings


async def test_status_wait_cancel_watch_import_only_what_polling_needs(
    client: PlanClient, settings: Settings, tmp_path: Path
) -> None:
    job_id = await client.submit({"agent_id": "llm-planner-001", "description": "polled from the CLI"})
    env = {"PLANGATE_REDIS_URL": settings.redis_url, "PLANGATE_KEY_PREFIX": settings.key_prefix}
    argvs = [["status", job_id], ["wait", job_id, "--timeout", "0.2"], ["cancel", job_id], ["watch", job_id]]
    codes, modules = run_cli(tmp_path, argvs, **env)
    assert codes == [0, 1, 0, 0]  # the queued job times out the wait; cancelled, watch sees its end
    assert (await client.status(job_id)).state == "cancelled"
    unneeded = tuple(n for n in NOT_FOR_POLLING if n not in imported_by_redis_py(tmp_path))
    assert loaded(modules, unneeded) == []
