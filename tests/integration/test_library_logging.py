"""A program that imports plangate and configures no logging: nothing on its stdout, warnings on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Submits a job (the client logs it at INFO), then runs the ledger writer in-process on a fresh file
# (migrations and the writer's start log at INFO) over the stream holding that job's event and one
# malformed entry, which the writer reports with a warning.
_HOST_PROGRAM = textwrap.dedent(
    """
    import asyncio
    import sys

    from redis.asyncio import Redis

    from worker import PlanClient
    from worker.keys import Keys
    from worker.settings import Settings
    from worker.worker_app import start_ledger_writer, stop_ledger_writer


    async def main(url: str, prefix: str, ledger: str) -> None:
        key = f"{ledger}-keys/ledger.key"  # configured: no warning that one was generated
        settings = Settings(redis_url=url, key_prefix=prefix, ledger_path=ledger, ledger_signing_key=key)
        async with PlanClient.connect(settings) as client:
            await client.submit({"agent_id": "llm-planner-001", "description": "library logging"})
        redis = Redis.from_url(url, decode_responses=True)
        await redis.xadd(Keys(prefix).ledger_stream(), {"e": "{not json"})
        writer, task = await start_ledger_writer(redis, settings)
        deadline = asyncio.get_running_loop().time() + 20
        while writer.processed < 2:
            assert asyncio.get_running_loop().time() < deadline, "the writer did not drain the stream"
            await asyncio.sleep(0.02)
        await stop_ledger_writer(writer, task)
        await redis.aclose()


    asyncio.run(main(*sys.argv[1:]))
    """
)


def test_host_program_stdout_stays_empty_and_only_warnings_reach_stderr(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    program = tmp_path / "host.py"
    program.write_text(_HOST_PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    proc = subprocess.run(
        [sys.executable, str(program), redis_url, key_prefix, str(tmp_path / "ledger.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ledger.entry_malformed "), proc.stderr
    assert "ledger.migrated" not in proc.stderr and "job.submitted" not in proc.stderr
