"""plangate's public import path: the names a program that submits and follows planning jobs needs.

    from plangate import PlanClient, PlanRequest, Settings

A thin facade over worker/, governance/, ledger/ and plangate_base/, where the names live. Each is
imported on first use, so `import plangate` costs next to nothing and brings in none of redis-py,
pydantic or the worker; `from plangate import PlanClient` loads the producer client, not arq or the
LLM client. Every error plangate raises on purpose is a PlangateError.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from governance.models import (
        AgentOutput,
        AgentRecord,
        PlanRequest,
        PlanStep,
        ReviewerRecord,
        TenantRecord,
    )
    from governance.registry import RegistryError
    from ledger.errors import LedgerError, LedgerNotFound
    from plangate_base.errors import PlangateError
    from plangate_base.vocabulary import (
        CancelReason,
        Decision,
        FailureCode,
        JobState,
        Phase,
        RefusalCode,
        ReviewDecision,
        TaskType,
    )
    from worker.client import PlanClient
    from worker.errors import (
        BadRequest,
        InvalidOutput,
        JobNotFound,
        LLMError,
        NotCancellable,
        NotReviewable,
        QueueUnavailable,
        Unauthenticated,
        WaitTimeout,
    )
    from worker.job_models import JobError, JobEvent, JobStatus, Refusal, Review
    from worker.settings import Settings

# Where each public name lives (the module that defines it).
_HOMES: dict[str, str] = {
    "PlanClient": "worker.client",
    "Settings": "worker.settings",
    # the request, the answer and the registry records
    "PlanRequest": "governance.models",
    "AgentOutput": "governance.models",
    "PlanStep": "governance.models",
    "AgentRecord": "governance.models",
    "TenantRecord": "governance.models",
    "ReviewerRecord": "governance.models",
    # what a job looks like while it runs and when it ended
    "JobStatus": "worker.job_models",
    "JobEvent": "worker.job_models",
    "JobError": "worker.job_models",
    "Refusal": "worker.job_models",
    "Review": "worker.job_models",
    # the words
    "JobState": "plangate_base.vocabulary",
    "Phase": "plangate_base.vocabulary",
    "Decision": "plangate_base.vocabulary",
    "RefusalCode": "plangate_base.vocabulary",
    "FailureCode": "plangate_base.vocabulary",
    "ReviewDecision": "plangate_base.vocabulary",
    "CancelReason": "plangate_base.vocabulary",
    "TaskType": "plangate_base.vocabulary",
    # the errors
    "PlangateError": "plangate_base.errors",
    "BadRequest": "worker.errors",
    "JobNotFound": "worker.errors",
    "Unauthenticated": "worker.errors",
    "NotCancellable": "worker.errors",
    "NotReviewable": "worker.errors",
    "QueueUnavailable": "worker.errors",
    "WaitTimeout": "worker.errors",
    "LLMError": "worker.errors",
    "InvalidOutput": "worker.errors",
    "LedgerError": "ledger.errors",
    "LedgerNotFound": "ledger.errors",
    "RegistryError": "governance.registry",
    "__version__": "worker",
}

__all__ = [
    "AgentOutput",
    "AgentRecord",
    "BadRequest",
    "CancelReason",
    "Decision",
    "FailureCode",
    "InvalidOutput",
    "JobError",
    "JobEvent",
    "JobNotFound",
    "JobState",
    "JobStatus",
    "LLMError",
    "LedgerError",
    "LedgerNotFound",
    "NotCancellable",
    "NotReviewable",
    "Phase",
    "PlanClient",
    "PlanRequest",
    "PlanStep",
    "PlangateError",
    "QueueUnavailable",
    "Refusal",
    "RefusalCode",
    "RegistryError",
    "Review",
    "ReviewDecision",
    "ReviewerRecord",
    "Settings",
    "TaskType",
    "TenantRecord",
    "Unauthenticated",
    "WaitTimeout",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
