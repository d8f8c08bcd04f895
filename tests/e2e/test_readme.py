"""The README's examples, run as written against a real worker, the test Redis and the scripted
endpoint, so they cannot rot. Every code block says what is done with it in the comment above it:
`<!-- readme-test: run python -->`, `run bash`, `agents-file` (a TOML agents file, loaded), or
`skip: why` (what cannot run here, e.g. it installs packages or needs Docker)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from governance.registry import load_agents_file
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)^```", re.S | re.M
)
_MARKS = ("run python", "run bash", "agents-file")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README, with its marker."""

    line: int
    lang: str
    mark: str
    code: str


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, m.start()) + 1, m["lang"], (m["mark"] or "").strip(), m["code"])
        for m in _BLOCK.finditer(text)
    ]


def _blocks(mark: str) -> list[Block]:
    return [b for b in readme_blocks() if b.mark == mark]


def test_every_code_block_says_how_the_tests_treat_it() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 5
    unmarked = [b.line for b in blocks if b.lang and not (b.mark in _MARKS or b.mark.startswith("skip: "))]
    assert unmarked == [], f"README code blocks without a readme-test marker at lines {unmarked}"
    assert _blocks("run python") and _blocks("run bash")


@pytest.mark.parametrize("block", _blocks("agents-file"), ids=lambda b: f"line-{b.line}")
def test_agents_files_in_the_readme_load(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(block.code, encoding="utf-8")
    assert load_agents_file(path).agents


@pytest.fixture
def agent_env(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]]
) -> dict[str, str]:
    """A running worker, and the environment of an agent holding the seed agent's key (issued here, so
    the seed agent is no longer keyless: the key is checked as in a real deployment)."""
    start_workers(1)
    issued = subprocess.run(
        plangate_cmd("agents", "issue-key", "llm-planner-001"), env=e2e_env, capture_output=True, text=True
    )
    assert issued.returncode == 0, issued.stderr
    bin_dir = str(Path(sys.executable).parent)
    return {
        **e2e_env,
        "PLANGATE_AGENT_KEY": issued.stdout.strip(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }


def test_the_python_examples_run_as_written(agent_env: dict[str, str], tmp_path: Path) -> None:
    for block in _blocks("run python"):
        script = tmp_path / f"readme_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)], env=agent_env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"README line {block.line}:\n{result.stdout}\n{result.stderr}"
        assert "done" in result.stdout, result.stdout


def test_the_shell_examples_run_as_written(agent_env: dict[str, str], tmp_path: Path) -> None:
    for block in _blocks("run bash"):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            env=agent_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, f"README line {block.line}:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
