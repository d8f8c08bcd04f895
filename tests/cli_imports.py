"""What `plangate` commands import: run them through `worker.cli.main` in a fresh interpreter and list
its modules afterwards (tests/unit/test_cli_startup.py, tests/integration/test_cli_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Not needed to poll a job: arq (any part of it runs arq's __init__, which imports its worker), the LLM
# client and its transports, the metrics exporter, the worker's pipeline, tracing, the ledger's SQLite.
NOT_FOR_POLLING = (
    "arq",
    "openai",
    "aiohttp",
    "httpx",
    "prometheus_client",
    "worker.pipeline",
    "worker.llm.planner",
    "opentelemetry",
    "aiosqlite",
    "fakeredis",
    "cryptography",
)

_PROGRAM = textwrap.dedent(
    """
    import json
    import sys

    from worker.cli.main import main

    codes = []
    for argv in json.loads(sys.argv[2]):
        try:
            codes.append(main(argv))
        except SystemExit as exc:  # --help and usage errors
            codes.append(exc.code)
    with open(sys.argv[1], "w") as out:
        json.dump({"codes": codes, "modules": sorted(sys.modules)}, out)
    """
)


def run_cli(tmp_path: Path, argvs: list[list[str]], **env: str) -> tuple[list[object], set[str]]:
    """Exit codes of `main(argv)` for each argv, run one after another in one fresh interpreter, and the
    modules it had imported at the end. `env` holds PLANGATE_* settings."""
    report = tmp_path / "cli-imports.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    proc = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(report), json.dumps(argvs)],
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    return data["codes"], set(data["modules"])


def imported_by_redis_py(tmp_path: Path) -> set[str]:
    """The modules `import redis` brings in by itself (e.g. cryptography, through PyJWT)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import json, sys, redis; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    return set(json.loads(proc.stdout))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (packages count with their submodules) are among `modules`."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))
