"""One error root: every package's errors are PlangateErrors, so one `except` catches them all."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import worker.errors
from governance.registry import RegistryError, load_agents_file
from ledger.errors import LedgerError, LedgerNotFound, SchemaTooNew
from plangate_base.errors import PlangateError
from worker.errors import BadRequest, describe_validation_error


def test_the_worker_names_the_same_root() -> None:
    assert worker.errors.PlangateError is PlangateError
    assert issubclass(BadRequest, PlangateError)


@pytest.mark.parametrize("error", [LedgerNotFound("/nowhere/ledger.db"), SchemaTooNew(9, 1)])
def test_except_plangate_error_catches_a_ledger_error(error: LedgerError) -> None:
    with pytest.raises(PlangateError) as caught:
        raise error
    assert isinstance(caught.value, LedgerError)


def test_except_plangate_error_catches_a_registry_error(tmp_path: Path) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text("[[agent]\n", encoding="utf-8")  # not TOML
    with pytest.raises(PlangateError) as caught:
        load_agents_file(agents)
    assert type(caught.value) is RegistryError
    assert "cannot read agents file" in str(caught.value)


def test_a_validation_error_is_described_in_one_line() -> None:
    class Shape(BaseModel):
        name: str
        size: int

    with pytest.raises(ValidationError) as caught:
        Shape.model_validate({"size": "big"})
    text = describe_validation_error(caught.value, "shape")
    assert text.startswith("invalid shape: ")
    assert "name: Field required" in text
    assert "size: Input should be a valid integer" in text
    assert "\n" not in text
