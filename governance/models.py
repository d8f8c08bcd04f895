"""The request a producer submits, the output a planner returns, and an agent's record.

Pydantic v2 models; plain data that policy functions decide over. The limits here are
enforced before anything is enqueued (the client validates at submit).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from governance.capabilities import SEED_ALLOWED_SIDE_EFFECTS, SEED_FORBIDDEN_ACTIONS, declared_word
from governance.webhook_policy import WebhookUrl
from plangate_base.vocabulary import SEED_AGENT_ID, Decision, Priority

MAX_DESCRIPTION_CHARS = 8_000
MAX_CONSTRAINTS = 50
MAX_CONSTRAINT_CHARS = 1_000
MAX_SIDE_EFFECTS = 50
MAX_CONTEXT_BYTES = 64 * 1024
MAX_CONTEXT_DEPTH = 32
MAX_LOCKS = 16
MAX_WAIT_LOCK_S = 3_600.0
MAX_DELAY_S = 7 * 86_400.0
MAX_WEIGHT = 1_000.0


# No `:` in identifiers: it separates the parts of Redis key names (worker/keys.py), so an id with
# one could name another record's key (agent `victim:key` would read agent `victim`'s key hash).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.@-]+$"
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)
]
LOCK_PATTERN = r"^[A-Za-z0-9_.:@/-]+$"
LockName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=LOCK_PATTERN)
]
TaskTypeName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
ShortText = Annotated[str, StringConstraints(max_length=MAX_CONSTRAINT_CHARS)]


def _no_control_chars(value: str) -> str:
    # Newlines and tabs are text; other C0 controls and NUL are not.
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise ValueError("must not contain control characters")
    return value


def _nesting_depth(value: Any, stop_after: int = MAX_CONTEXT_DEPTH + 1) -> int:
    """How deeply lists and objects nest (iterative: a JSON bomb must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest >= stop_after:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class TenantRecord(BaseModel):
    """A tenant: who owns agents and projects, and the quotas all its workers share."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier
    name: str = ""
    projects: list[Identifier] = Field(default_factory=list)
    max_concurrent: int | None = Field(default=None, ge=1)
    jobs_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)
    cost_per_day_usd: float | None = Field(default=None, gt=0)
    # Its share of job starts when workers are saturated, against the other tenants with queued work.
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)


DEFAULT_TENANT = TenantRecord(tenant_id="default", name="default tenant")


class AgentState(BaseModel):
    """An agent's live governance state (what workers read at PREFLIGHT and while running)."""

    revoked: bool = False
    revoked_reason: str = ""
    suspended: bool = False
    recent_errors: int = 0
    phase: str = ""
    job_id: str = ""
    heartbeat_at: str = ""


class PlanRequest(BaseModel):
    """A planning job as a producer submits it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: Identifier
    tenant_id: Identifier = "default"
    task_type: TaskTypeName = "plan"
    description: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION_CHARS)]
    constraints: list[ShortText] = Field(default_factory=list, max_length=MAX_CONSTRAINTS)
    context: dict[str, Any] | None = None
    side_effects: list[Identifier] = Field(default_factory=list, max_length=MAX_SIDE_EFFECTS)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    deadline: datetime | None = None
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    locks: list[LockName] = Field(default_factory=list, max_length=MAX_LOCKS)
    wait_lock_s: float = Field(default=0.0, ge=0.0, le=MAX_WAIT_LOCK_S)
    handoff_from: Identifier | None = None
    retry_of: Identifier | None = None
    project_id: Identifier | None = None
    # Where to POST the job's events (signed; its host must be on the tenant's webhook allow list).
    callback_url: WebhookUrl | None = None
    priority: Priority | None = None  # None: normal
    # Start no earlier than `not_before`, or `delay_s` after submit (one of the two).
    not_before: datetime | None = None
    delay_s: float | None = Field(default=None, ge=0.0, le=MAX_DELAY_S)
    # The agent's key when its agent requires one; checked by the worker, never stored or shown.
    agent_key: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_start_time(self) -> PlanRequest:
        if self.not_before is not None and self.delay_s is not None:
            raise ValueError("give not_before or delay_s, not both")
        return self

    @field_validator("description")
    @classmethod
    def _description_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return _no_control_chars(value)

    @field_validator("constraints")
    @classmethod
    def _constraints_text(cls, value: list[str]) -> list[str]:
        return [_no_control_chars(c) for c in value]

    @field_validator("context")
    @classmethod
    def _context_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        depth = _nesting_depth(value)
        if depth > MAX_CONTEXT_DEPTH:
            raise ValueError(f"is nested {depth} levels deep; the limit is {MAX_CONTEXT_DEPTH}")
        try:
            size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON-serializable ({exc})") from exc
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"is {size} bytes serialized; the limit is {MAX_CONTEXT_BYTES}")
        return value


class PlanStep(BaseModel):
    """One ordered step of a plan: what to do, which actions it needs, what could go wrong."""

    model_config = ConfigDict(extra="ignore")

    step: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4_000)
    actions: list[str] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)


class PlanDraft(BaseModel):
    """What the LLM must return: the decision-bearing part of the Foundation Document."""

    model_config = ConfigDict(extra="ignore")

    action: str = Field(min_length=1, max_length=300)
    decision: Decision
    confidence: float = Field(ge=0.0, le=1.0)
    assumptions: list[str] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list)
    side_effects: list[str] = Field(default_factory=list)
    notes_for_humans: str = ""
    plan: list[PlanStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps_in_order(self) -> PlanDraft:
        numbers = [s.step for s in self.plan]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"plan steps must be numbered 1..n in order, got {numbers}")
        return self


class AgentOutput(PlanDraft):
    """The seed's Foundation Document: a draft stamped with who produced it, when, and how."""

    agent_id: str
    version: str
    timestamp: str
    metadata: dict[str, Any] = Field(default_factory=dict)


def _normalized_names(names: list[str], what: str) -> list[str]:
    """Names in their comparable form, each once, in the order given; a name that does not
    normalise to a vocabulary-shaped word is refused."""
    out: list[str] = []
    for name in names:
        word = declared_word(name)
        if word is None:
            raise ValueError(f"{what} {name!r} is not a vocabulary word (lower snake case, e.g. read_docs)")
        if word not in out:
            out.append(word)
    return out


class TemplateRef(BaseModel):
    """Which template version an agent was installed from, and what the install rendered from it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    hash: str
    # The template's system prompt with the agent's parameters filled in (the PLAN phase's instructions).
    instructions: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    signer: str = ""


class AgentRecord(BaseModel):
    """An agent's governance metadata (the seed's AGENT_METADATA), deny-by-default.

    `allowed_side_effects` is the only vocabulary its plans may use (default: the seed's read and
    plan capabilities). The seed's forbidden actions apply to every agent, whatever its tier, plus
    any in `forbidden_actions`; an operator lifts a seed item for one agent only by naming it in
    `lifted_forbidden`, which `plangate agents show` shows and the ledger records.
    """

    model_config = ConfigDict(extra="forbid")

    agent_id: Identifier
    tenant_id: Identifier = "default"
    role: str = "observer"
    tier: int = Field(default=0, ge=0, le=4)
    confidence_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    allowed_side_effects: list[str] = Field(default_factory=lambda: list(SEED_ALLOWED_SIDE_EFFECTS))
    forbidden_actions: list[str] = Field(default_factory=list)
    lifted_forbidden: list[str] = Field(default_factory=list)
    # Task types a tier >= 1 agent may plan for; empty means its tier's default. Tier 0 is fixed.
    allowed_task_types: list[str] = Field(default_factory=list)
    # Error budget: this many failed jobs that were the agent's doing within the window suspend it.
    error_budget_limit: int = Field(default=5, ge=1)
    error_budget_window_s: int = Field(default=3_600, ge=1)
    # Jobs need no key while none is issued: anyone who can submit may claim this agent. Off by
    # default; an operator turns it on for an agent explicitly (the demo does, and says so).
    keyless: bool = False
    # The template version the agent was installed from (None: configured by hand).
    template: TemplateRef | None = None

    @model_validator(mode="after")
    def _deny_by_default(self) -> AgentRecord:
        self.allowed_side_effects = _normalized_names(self.allowed_side_effects, "allowed side effect")
        lifted = _normalized_names(self.lifted_forbidden, "lifted forbidden action")
        given = _normalized_names(self.forbidden_actions, "forbidden action")
        forbidden = [a for a in (*SEED_FORBIDDEN_ACTIONS, *given) if a not in lifted]
        self.lifted_forbidden = lifted
        self.forbidden_actions = list(dict.fromkeys(forbidden))
        return self


class ReviewerRecord(BaseModel):
    """A human who may approve or reject one tenant's escalated plans (authenticated by a key)."""

    model_config = ConfigDict(extra="forbid")

    reviewer_id: Identifier
    tenant_id: Identifier = "default"
    name: str = Field(default="", max_length=200)


SEED_AGENT = AgentRecord(agent_id=SEED_AGENT_ID, role="observer", tier=0, confidence_threshold=0.7)
