"""`import plangate`: every public name resolves to the object its home module defines, and importing the
package itself loads none of the packages behind it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import plangate


@pytest.mark.parametrize("name", plangate.__all__)
def test_each_public_name_is_its_home_modules_object(name: str) -> None:
    home = importlib.import_module(plangate._HOMES[name])
    assert getattr(plangate, name) is getattr(home, name)


def test_all_lists_every_name_the_package_serves() -> None:
    assert sorted(plangate.__all__) == sorted(set(plangate._HOMES) - {"__version__"})
    assert plangate.__version__ == importlib.import_module("worker").__version__
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = plangate.Nothing  # type: ignore[attr-defined]


def test_one_except_catches_the_errors_of_every_package() -> None:
    for error in (plangate.LedgerNotFound("/nowhere"), plangate.RegistryError("x"), plangate.BadRequest("y")):
        with pytest.raises(plangate.PlangateError):
            raise error


def _modules_after(program: str) -> set[str]:
    code = f"import json, sys\n{program}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_import_plangate_loads_nothing_behind_it() -> None:
    modules = _modules_after("import plangate")
    behind = ("worker", "governance", "ledger", "redis", "pydantic", "arq", "openai", "orjson", "structlog")
    assert sorted(m for m in modules if m.split(".", 1)[0] in behind) == []


def test_the_client_comes_without_the_worker_or_the_llm_client() -> None:
    modules = _modules_after("from plangate import PlanClient, PlanRequest, Settings")
    assert "worker.client" in modules
    worker_side = ("arq", "openai", "worker.pipeline", "worker.llm.planner")
    assert sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in worker_side)) == []
