"""`python -m bench.cli_startup`: the CPU one `plangate` command costs, start to exit, against the floors.

Agents poll by shelling out (`plangate status ID`), so a command's start-up is its cost. Each command runs
as the console script a user runs, `runs` times, round-robin with the two baselines, `python -c pass`
(the interpreter) and `python -c "import redis"` (redis-py's own import: the floor of any command that
talks to Redis); its CPU is the user + system time of the finished child (getrusage RUSAGE_CHILDREN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.infra import Bench
from bench.report import Row, median, render
from worker.cli.main import EXIT_CANCELLED
from worker.client import PlanClient
from worker.settings import Settings

# What each command is compared with, and how far it may be from it (bench/README.md, "The targets").
HELP_OVER_PASS_S = 0.05
REDIS_RATIO = 1.2
REDIS_COMMANDS = ("status", "wait", "cancel")
# The same commands over the HTTP API (`--api URL --token T --json`): no redis-py at all.
API_COMMANDS = ("status_api", "wait_api", "cancel_api")

_REQUEST = {"agent_id": "llm-planner-001", "description": "a job for the start-up benchmark"}


def plangate_argv() -> list[str]:
    """The `plangate` console script of this environment (else the module, which costs a little more)."""
    script = Path(sys.executable).with_name("plangate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


def _child_cpu_s(argv: list[str], env: dict[str, str], expected: int = 0) -> float:
    """User + system CPU seconds of one run of `argv`, which must exit `expected`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != expected:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def startup(bench: Bench, runs: int) -> dict[str, float]:
    """Median CPU seconds of each command and baseline, and the ratios the targets are about."""
    prefix = bench.prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(PLANGATE_REDIS_URL=bench.redis_url, PLANGATE_KEY_PREFIX=prefix)
    # Compiled once, as an installed package is (pip writes its .pyc): a source tree run with
    # PYTHONDONTWRITEBYTECODE would compile every module of ours on every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(bench.workdir / "pycache")
    async with PlanClient.connect(Settings(redis_url=bench.redis_url, key_prefix=prefix)) as client:
        # A finished job, so status, wait and watch answer at once; a queued job for each cancel.
        finished = await client.submit(_REQUEST)
        await client.cancel(finished)
        queued = [await client.submit(_REQUEST) for _ in range(runs + 1)]
        queued_api = [await client.submit(_REQUEST) for _ in range(runs + 1)]
    plangate = plangate_argv()
    api_url, token = await _start_api(bench, plangate, env)
    api = ["--api", api_url, "--token", token, "--json"]
    commands: dict[str, Callable[[int], list[str]]] = {
        "pass": lambda _: [sys.executable, "-c", "pass"],
        "import_redis": lambda _: [sys.executable, "-c", "import redis"],
        "help": lambda _: [*plangate, "--help"],
        "status": lambda _: [*plangate, "status", finished],
        "wait": lambda _: [*plangate, "wait", finished, "--timeout", "5"],
        "watch": lambda _: [*plangate, "watch", finished],
        "cancel": lambda i: [*plangate, "cancel", queued[i]],
        "status_api": lambda _: [*plangate, "status", finished, *api],
        "wait_api": lambda _: [*plangate, "wait", finished, "--timeout", "5", *api],
        "cancel_api": lambda i: [*plangate, "cancel", queued_api[i], *api],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 1):  # the first round writes the bytecode and is not counted
        for name, argv in commands.items():
            # `wait` on the cancelled job says so in its exit code
            expected = EXIT_CANCELLED if name.startswith("wait") else 0
            cpu = await asyncio.to_thread(_child_cpu_s, argv(i), env, expected)
            if i:
                samples[name].append(cpu)
    n = {f"startup.{name}_s": median(values) for name, values in samples.items()}
    n["startup.runs"] = float(runs)
    n["startup.help_over_pass_s"] = n["startup.help_s"] - n["startup.pass_s"]
    for name in (*REDIS_COMMANDS, "watch", *API_COMMANDS):
        n[f"startup.{name}_ratio"] = n[f"startup.{name}_s"] / n["startup.import_redis_s"]
    return n


async def _start_api(bench: Bench, plangate: list[str], env: dict[str, str]) -> tuple[str, str]:
    """`plangate serve` on the benchmark's prefix, and an admin token for it."""
    from governance.api_tokens import Scope
    from worker.admin import AgentAdmin
    from worker.keys import Keys
    from worker.redis_conn import text_client

    redis = text_client(env["PLANGATE_REDIS_URL"])
    try:
        admin = AgentAdmin(redis, Keys(env["PLANGATE_KEY_PREFIX"]))
        token, _ = await admin.issue_token(Scope.ADMIN, tenant_id=None, name="bench", by="bench")
    finally:
        await redis.aclose()
    url, _ = await asyncio.to_thread(bench.start_api, plangate, env)
    return url, token


def rows(n: dict[str, float]) -> list[Row]:
    """The start-up section of the table."""
    section = f"startup (`plangate` CPU user+sys per run, median of {n['startup.runs']:.0f})"

    def ms(name: str) -> str:
        return f"{n[f'startup.{name}_s'] * 1000:.0f} ms"

    over = n["startup.help_over_pass_s"]
    out = [
        Row(section, "baseline: python -c pass", ms("pass")),
        Row(section, 'baseline: python -c "import redis"', ms("import_redis")),
        Row(
            section,
            "plangate --help (over python -c pass)",
            f"{ms('help')} (+{over * 1000:.0f} ms)",
            f"<= +{HELP_OVER_PASS_S * 1000:.0f} ms",
            over <= HELP_OVER_PASS_S,
        ),
    ]
    for name in (*REDIS_COMMANDS, "watch"):
        ratio = n[f"startup.{name}_ratio"]
        target, met = (f"<= {REDIS_RATIO}", ratio <= REDIS_RATIO) if name in REDIS_COMMANDS else ("", None)
        value = f"{ms(name)} ({ratio:.2f} x import redis)"
        out.append(Row(section, f"plangate {name} ID (of import redis)", value, target, met))
    for name in API_COMMANDS:
        ratio = n[f"startup.{name}_ratio"]
        command = name.removesuffix("_api")
        value = f"{ms(name)} ({ratio:.2f} x import redis)"
        label = f"plangate {command} ID --api URL --json (of import redis)"
        out.append(Row(section, label, value, f"<= {REDIS_RATIO}", ratio <= REDIS_RATIO))
    return out


async def _run(args: argparse.Namespace) -> dict[str, float]:
    bench = Bench.open(args.redis_url)
    try:
        return await startup(bench, args.runs)
    finally:
        await bench.close()


def main() -> None:
    """Measure, print the rows (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument(
        "--redis-url", help="use this Redis (give it a db index of its own); default: start one"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    numbers = asyncio.run(_run(args))
    print(render(rows(numbers), f"`python -m bench.cli_startup --runs {args.runs}`"))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
