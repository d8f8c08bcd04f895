"""`plangate` starts light (bench/cli_startup.py measures the CPU): `--help` imports no third-party
package, and the status path none of what only submitting or running jobs needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.cli_imports import NOT_FOR_POLLING, imported_by_redis_py, loaded, run_cli
from worker.cli.main import build_parser

# Everything a parser needs is the standard library's; these are what the commands themselves use.
THIRD_PARTY = (*NOT_FOR_POLLING, "redis", "pydantic", "pydantic_core", "pydantic_settings", "structlog")


def _command_paths(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths += _command_paths(child, [*prefix, name])
    return paths


def test_help_of_every_command_imports_no_third_party_package(tmp_path: Path) -> None:
    paths = _command_paths(build_parser(), [])
    assert len(paths) > 40  # every command and subcommand, and the top level
    codes, modules = run_cli(tmp_path, [[*path, "--help"] for path in paths])
    assert codes == [0] * len(paths)
    assert loaded(modules, (*THIRD_PARTY, "asyncio")) == []


def test_status_path_imports_nothing_only_submit_or_the_worker_needs(tmp_path: Path) -> None:
    # Nothing listens on port 1: the command imports all it needs, then exits 3 (Redis unreachable).
    codes, modules = run_cli(tmp_path, [["status", "job-1"]], PLANGATE_REDIS_URL="redis://127.0.0.1:1/0")
    assert codes == [3]
    assert "worker.client" in modules and "worker.job_models" in modules  # it did reach the client
    unneeded = tuple(n for n in NOT_FOR_POLLING if n not in imported_by_redis_py(tmp_path))
    assert loaded(modules, unneeded) == []
