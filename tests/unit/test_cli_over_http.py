"""The HTTP path of the CLI spells the terminal states' exit codes without the enum: they must agree."""

from __future__ import annotations

from worker.cli.main import EXIT_OF_STATE
from worker.cli.over_http import EXIT_OF_STATE_NAME


def test_the_exit_codes_by_state_name_are_the_cli_s_own() -> None:
    assert EXIT_OF_STATE_NAME == {state.value: code for state, code in EXIT_OF_STATE.items()}
