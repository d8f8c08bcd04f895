"""Fault-injection fixtures (the end-to-end ones: real worker processes, the scripted endpoint) and
the suite's closing report of what was broken and what survived."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import e2e_env, llm_stub_url, start_plangate, start_workers  # noqa: F401  (fixtures)

FAULT_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the counts the fault tests recorded (jobs, kills, retries, duplicates, lost)."""
    if FAULT_REPORT:
        terminalreporter.section("fault-injection report")
        for line in FAULT_REPORT:
            terminalreporter.write_line(line)
