"""The CLI explains itself: every argument of every command has help text, every `--json` says what it
prints, and `--version` answers."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator

from worker.cli.main import build_parser


def _arguments(
    parser: argparse.ArgumentParser, path: str = "plangate"
) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_argument_of_every_command_has_help() -> None:
    missing = [f"{path} {a.option_strings or a.dest}" for path, a in _arguments(build_parser()) if not a.help]
    assert missing == []


def test_every_json_flag_says_what_it_prints() -> None:
    helps = {path: a.help for path, a in _arguments(build_parser()) if "--json" in a.option_strings}
    assert len(helps) >= 20
    for path, text in helps.items():
        assert text and text.startswith("print ") and "JSON" in text, (path, text)
    # and not one text for every command: each says what that command prints
    assert helps["plangate agents list"] != helps["plangate status"] != helps["plangate locks list"]


def test_version_prints_the_installed_version_on_stdout() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"plangate {importlib.metadata.version('plangate')}\n"


def test_the_package_version_is_spelled_once_for_the_code_and_the_distribution() -> None:
    import worker

    assert worker.__version__ == importlib.metadata.version("plangate")
