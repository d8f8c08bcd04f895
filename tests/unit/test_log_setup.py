"""Logging as plangate's processes set it up: configured once, at process entry; job context merged into
every line; one naming style for events."""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "governance", "ledger", "plangate_base", "bench")
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # noun.verb, dotted lowercase


@functools.cache
def _all_calls() -> tuple[tuple[str, str, str, ast.Call], ...]:
    """Every call in the code: (file, enclosing function or "<module>", the called name, the call)."""
    found = []

    def visit(node: ast.AST, file: str, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call):
                func = child.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                found.append((file, function, called, child))
            visit(child, file, inner)

    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            visit(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)), "<module>")
    return tuple(found)


def _calls(name: str) -> list[tuple[str, str, ast.Call]]:
    """Every call `x.<name>(...)` or `<name>(...)`: (file, enclosing function, call)."""
    return [(file, function, call) for file, function, called, call in _all_calls() if called == name]


def test_logging_is_configured_in_one_module_called_from_process_entry_only() -> None:
    structlog_configure = {
        file
        for file, _, call in _calls("configure")
        if isinstance(call.func, ast.Attribute) and ast.unparse(call.func.value) == "structlog"
    }
    # log_setup.py for processes; plangate_base/logs.py's library default, which anyone's replaces.
    assert structlog_configure == {"worker/log_setup.py", "plangate_base/logs.py"}
    callers = {
        (file, function) for file, function, _ in _calls("configure_logging") if function != "<module>"
    }
    assert callers == {("worker/cli/main.py", "main"), ("bench/__main__.py", "main")}, callers


def test_log_events_are_named_noun_dot_verb() -> None:
    names = [
        (file, call.lineno, call.args[0].value)
        for method in _LOG_METHODS
        for file, _, call in _calls(method)
        if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
        and isinstance(call.func, ast.Attribute) and "log" in ast.unparse(call.func.value).lower()
    ]  # fmt: skip
    assert len(names) > 40  # the scan sees the code's log calls
    assert [n for n in names if not _EVENT_NAME.match(n[2])] == []


def test_a_process_configuration_merges_the_job_context_into_every_line(tmp_path: Path) -> None:
    program = tmp_path / "entry.py"
    program.write_text(
        textwrap.dedent(
            """
            import asyncio

            from structlog.contextvars import bind_contextvars, bound_contextvars

            from plangate_base.logs import get_logger
            from worker.log_setup import configure_logging

            configure_logging("INFO", json=True)
            log = get_logger("worker.pipeline")


            async def job(job_id: str, tenant_id: str, ready: asyncio.Barrier) -> None:
                with bound_contextvars(job_id=job_id, agent_id="a1", tenant_id=tenant_id, phase="PREFLIGHT"):
                    await ready.wait()  # both jobs have bound their context before either logs
                    bind_contextvars(phase="PLAN")
                    log.info("job.step")
                    await ready.wait()


            async def main() -> None:
                ready = asyncio.Barrier(2)
                await asyncio.gather(job("j1", "t1", ready), job("j2", "t2", ready))
                log.info("worker.idle")


            asyncio.run(main())
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    steps = sorted(
        (e["job_id"], e["tenant_id"], e["agent_id"], e["phase"]) for e in lines if e["event"] == "job.step"
    )
    assert steps == [("j1", "t1", "a1", "PLAN"), ("j2", "t2", "a1", "PLAN")]
    [idle] = [e for e in lines if e["event"] == "worker.idle"]
    assert not {"job_id", "agent_id", "tenant_id", "phase"} & idle.keys()  # nothing left behind


def test_a_process_configuration_looks_up_no_callers_for_library_records(tmp_path: Path) -> None:
    """arq logs two lines per job through stdlib logging; no stack walk runs for them, and they still
    come out rendered, with the job's context."""
    program = tmp_path / "entry.py"
    program.write_text(
        textwrap.dedent(
            """
            import logging

            from structlog.contextvars import bound_contextvars

            from plangate_base.logs import get_logger
            from worker.log_setup import configure_logging

            get_logger("worker.pipeline")  # (the library default: structlog's stdlib logger class)
            configure_logging("INFO", json=True)
            seen = []


            class Keep(logging.Filter):
                def filter(self, record):
                    seen.append(record.funcName)
                    return True


            arq_log = logging.getLogger("arq.worker")
            arq_log.addFilter(Keep())
            with bound_contextvars(job_id="j1"):
                arq_log.info("%6.2fs → %s", 0.01, "j1:plan")
            assert seen == ["(unknown function)"], seen
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(line) for line in proc.stderr.splitlines()]
    assert line["event"] == "  0.01s → j1:plan" and line["job_id"] == "j1"
