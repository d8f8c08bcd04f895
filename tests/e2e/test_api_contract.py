"""Contract: schemathesis generates requests from the live API's /openapi.json (a bounded number per
operation) and checks every answer: never a 5xx, and status codes, content types, headers and bodies
as the document says."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.e2e.api_deployment import Deployment, call
from tests.eventually import eventually_sync

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 12
_UP_DEADLINE_S = 20.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """An API process and a worker (whose ledger writer makes the ledger file the audit route reads) on
    a prefix of its own, and an admin token for it."""
    deployment = Deployment(redis_base_url, tmp_path_factory.mktemp("api-contract"))
    try:
        deployment.start(workers=1)
        deployment.admin_token = deployment.token("admin")  # type: ignore[attr-defined]
        ledger = Path(deployment.env["PLANGATE_LEDGER_PATH"])
        eventually_sync(ledger.is_file, timeout_s=30, interval_s=0.1, what="the worker's ledger writer")
        eventually_sync(
            lambda: call(deployment.url + "/readyz").status == 200, timeout_s=30, interval_s=0.1, what="ready"
        )
        yield deployment
    finally:
        deployment.stop()


def test_every_answer_conforms_to_the_document(live_api: Deployment) -> None:
    """Each operation in turn (schemathesis's pytest plugin does not run on pytest 9, so the strategy
    of each operation drives hypothesis directly); every failure is collected, then reported at once."""
    api_schema = schemathesis.openapi.from_url(live_api.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.admin_token}"}
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_api.url, headers=headers, checks=CHECKS, timeout=30)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # every failing operation, not only the first
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)


def test_the_document_is_openapi_3_1_with_problem_answers(live_api: Deployment) -> None:
    with urllib.request.urlopen(live_api.url + "/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert spec["openapi"].startswith("3.1")
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert {"202", "401", "403", "409", "413", "422", "429", "503"} <= set(submit["responses"])
    assert "application/problem+json" in submit["responses"]["401"]["content"]


def test_linked_calls_conform_statefully(live_api: Deployment) -> None:
    """schemathesis's state machine follows the document's links (submit → get, cancel, ledger) with
    the ids the API answered, so those calls reach real jobs instead of 404s."""
    api_schema = schemathesis.openapi.from_url(live_api.url + "/openapi.json")
    # Only the document's own links (schemathesis would also guess some from field names, and then
    # take submit for a consumer of its own `handoff_from` jobs instead of where scenarios start).
    api_schema.config.phases.stateful.inference.algorithms = []
    headers = {"Authorization": f"Bearer {live_api.admin_token}"}
    agent_id, _ = live_api.agent()
    links = api_schema.raw_schema["paths"]["/v1/jobs"]["post"]["responses"]["202"]["links"]
    assert {"GetJob", "CancelJob", "GetJobLedger"} <= set(links)
    followed: list[str] = []

    class Linked(api_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), **headers}  # over any Authorization it generated
            if case.method == "POST" and case.path == "/v1/jobs":  # where a scenario starts: a real job
                case.body = {"agent_id": agent_id, "description": "Plan the stateful contract check"}

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": live_api.url, "timeout": 30}

        def after_call(self, response: object, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            followed.append(f"{case.method} {case.path} {response.status_code}")  # type: ignore[attr-defined]

        def validate_response(self, response: object, case: schemathesis.Case, **kwargs: object) -> None:
            case.validate_response(response, checks=CHECKS)  # type: ignore[arg-type]

    Linked.run(
        settings=settings(
            max_examples=EXAMPLES_PER_OPERATION,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    # a random job id is a 404: a 200 means the call followed a link from a submit
    assert "GET /v1/jobs/{job_id} 200" in followed, sorted(set(followed))
    assert {"POST /v1/jobs/{job_id}/cancel 200", "POST /v1/jobs/{job_id}/cancel 409"} & set(followed), (
        followed
    )
