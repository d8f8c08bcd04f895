"""How library code logs in a host program: through the application's logging when it has some, never
over a structlog configuration it made, and not at all on stdout when it has none."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(tmp_path: Path, program: str) -> subprocess.CompletedProcess[str]:
    """Run `program` in a fresh interpreter; the ledger file it may create is `argv[1]`."""
    path = tmp_path / "host.py"
    path.write_text(textwrap.dedent(program))
    proc = subprocess.run(
        [sys.executable, str(path), str(tmp_path / "ledger.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_without_logging_configured_info_lines_print_nothing(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        """
        import sys

        from ledger.migrations import migrate_file

        migrate_file(sys.argv[1])  # logs ledger.migrated at INFO, once per migration
        """,
    )
    assert proc.stdout == "" and proc.stderr == ""


def test_without_logging_configured_warnings_reach_stderr_redacted(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        """
        from plangate_base.logs import get_logger

        log = get_logger("ledger.host")
        log.info("not_shown")
        log.warning("disk_nearly_full", api_key="sk-not-for-the-log-0123456789")
        """,
    )
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == ["disk_nearly_full api_key=***"]


def test_an_application_logging_config_receives_the_library_lines(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        """
        import logging
        import sys

        logging.basicConfig(level="INFO", stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

        from ledger.migrations import migrate_file

        migrate_file(sys.argv[1])
        """,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) >= 4
    assert all(line.startswith("INFO ledger.migrations: ledger.migrated ") for line in lines), lines
    assert "name=initial" in lines[0] and proc.stderr == ""


def test_a_structlog_configuration_made_before_import_is_kept(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        """
        import sys

        import structlog

        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
        before = structlog.get_config()

        from ledger.migrations import migrate_file

        migrate_file(sys.argv[1])
        assert structlog.get_config() == before
        """,
    )
    assert proc.stdout == ""
    assert proc.stderr.count('"event": "ledger.migrated"') >= 4


def test_library_modules_get_their_loggers_through_the_library_default() -> None:
    # structlog.get_logger alone would leave structlog's own default in place: print to stdout.
    root = Path(__file__).resolve().parents[2]
    direct = [
        str(path.relative_to(root))
        for package in ("worker", "governance", "ledger")
        for path in sorted((root / package).rglob("*.py"))
        if "structlog.get_logger(" in path.read_text(encoding="utf-8")
    ]
    assert direct == []
