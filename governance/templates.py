"""Agent templates: a named, versioned bundle of a governance profile (the seed's AGENT_METADATA), the
planner's instructions and model preferences — and the pure decisions over them: the content hash that
identifies a published version, which version a range installs, whether a version may be published,
and whether an upgrade widens what an agent may do.

Plain data in, decision out; the catalogue (ledger/catalogue.py) stores the JSON, the worker glues.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from governance.capabilities import SEED_ALLOWED_SIDE_EFFECTS
from governance.models import AgentRecord, TemplateRef
from governance.semver import (
    SemverError,
    Version,
    is_exact,
    latest_of_major,
    max_satisfying,
    parse_range,
    parse_version,
)
from plangate_base.errors import PlangateError
from plangate_base.vocabulary import SEED_AGENT_ID

TEMPLATE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
TemplateName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=TEMPLATE_NAME_PATTERN)]
ParameterName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
BUILTIN_TEMPLATES = ("llm-planner",)
BUILTIN_SIGNER = "builtin"
"""The signer recorded for the templates shipped inside plangate (trusted by where they come from)."""
# Every agent fills these in itself; a template declares only its own parameters.
AGENT_PARAMETERS = ("agent_id", "role", "tier", "tenant_id")


class TemplateError(PlangateError):
    """A template that does not parse, or a decision over templates that refuses."""


class GovernanceProfile(BaseModel):
    """What an agent from this template may do: the seed's AGENT_METADATA fields."""

    model_config = ConfigDict(extra="forbid")

    role: str = "observer"
    tier: int = Field(default=0, ge=0, le=4)
    confidence_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    allowed_task_types: list[str] = Field(default_factory=list)
    allowed_side_effects: list[str] = Field(default_factory=lambda: list(SEED_ALLOWED_SIDE_EFFECTS))
    forbidden_actions: list[str] = Field(default_factory=list)
    lifted_forbidden: list[str] = Field(default_factory=list)


class Parameter(BaseModel):
    """A named parameter of the instructions (`$name` in the system prompt) an agent fills in."""

    model_config = ConfigDict(extra="forbid")

    name: ParameterName
    description: str = ""
    default: str | None = None


class Instructions(BaseModel):
    """The planner's system prompt, with `$name` parameters (string.Template syntax; `$$` is a dollar)."""

    model_config = ConfigDict(extra="forbid")

    system_prompt: str = Field(min_length=1, max_length=16_000)
    parameters: list[Parameter] = Field(default_factory=list)


class ModelPreferences(BaseModel):
    """Which model the template's planner prefers, its fallbacks, and its answer budget."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, ge=1)


class Template(BaseModel):
    """One version of a template, as published (immutable once published)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TemplateName
    version: str
    summary: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=16_000)
    tags: list[str] = Field(default_factory=list, max_length=32)
    author: str = Field(default="", max_length=200)
    changelog: str = Field(default="", max_length=1_000)
    governance: GovernanceProfile = Field(default_factory=GovernanceProfile)
    instructions: Instructions
    model: ModelPreferences = Field(default_factory=ModelPreferences)

    @field_validator("version")
    @classmethod
    def _semantic(cls, value: str) -> str:
        try:
            return str(parse_version(value))
        except SemverError as exc:
            raise ValueError(str(exc)) from None

    @property
    def semver(self) -> Version:
        """The parsed version."""
        return parse_version(self.version)

    def content_hash(self) -> str:
        """`sha256:` over the canonical JSON of every field: what a published version is identified by."""
        return content_hash(self.model_dump(mode="json"))

    def search_text(self) -> dict[str, str]:
        """The columns the catalogue's full-text index reads."""
        return {
            "name": self.name.replace("-", " ") + " " + self.name,
            "summary": self.summary,
            "description": self.description,
            "tags": " ".join(self.tags),
        }


def canonical_json(data: Any) -> bytes:
    """The bytes a hash and a signature are computed over: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(data: Any) -> str:
    """`sha256:HEX` of the canonical JSON of `data`."""
    return "sha256:" + hashlib.sha256(canonical_json(data)).hexdigest()


def parse_template(data: dict[str, Any], source: str = "template") -> Template:
    """A template from its TOML or JSON object; TemplateError naming what is wrong."""
    try:
        return Template.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise TemplateError(f"invalid template in {source}: {problems}") from None


def load_template_text(text: str, source: str) -> Template:
    """Parse a template file's text: JSON when it starts with `{`, otherwise TOML."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"cannot parse {source}: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{source}: a template is one object")
    data.pop("signature", None)  # a signed file carries its signature beside the content
    return parse_template(data, source)


def builtin_template(name: str) -> Template:
    """A template shipped with plangate (governance/template_NAME.toml)."""
    file = resources.files("governance").joinpath(f"template_{name.replace('-', '_')}.toml")
    return load_template_text(file.read_text(encoding="utf-8"), f"built-in template {name}")


# --- which version -------------------------------------------------------------------------


def resolve(versions: dict[str, bool], spec: str) -> str | None:
    """The version a range installs among `versions` (version -> yanked): the highest match that is not
    yanked; an exact range also finds a yanked version (it stays resolvable for agents already on it)."""
    try:
        wanted = parse_range(spec)
    except SemverError as exc:
        raise TemplateError(str(exc)) from None
    parsed = {parse_version(v): v for v in versions}
    exact = [v for v in parsed if wanted.matches(v, include_prerelease=True)] if is_exact(spec) else []
    if exact:
        return parsed[exact[0]]
    live = [v for v, text in parsed.items() if not versions[text]]
    best = max_satisfying(live, wanted)
    return None if best is None else parsed[best]


def publish_problem(existing: dict[str, str], template: Template) -> str | None:
    """Why `template` may not be published given `existing` (version -> content hash), or None.

    The same content again is fine (publishing is idempotent); different content under a published
    version is refused (published versions are immutable); a version not greater than the latest of
    its major line is refused."""
    digest = template.content_hash()
    if template.version in existing:
        if existing[template.version] == digest:
            return None
        return (
            f"{template.name}@{template.version} is published already with other content "
            f"({existing[template.version]}); a published version is immutable: publish a new version"
        )
    new = template.semver
    latest = latest_of_major([parse_version(v) for v in existing], new.major)
    if latest is not None and new <= latest:
        return (
            f"{template.name}@{template.version} is not greater than {latest}, the latest of its major "
            f"line {new.major}"
        )
    return None


# --- agents from templates -----------------------------------------------------------------


def render_instructions(template: Template, agent_fields: dict[str, Any], values: dict[str, str]) -> str:
    """The system prompt with its parameters filled in: the agent's own (`$agent_id`, `$role`, `$tier`,
    `$tenant_id`), then the given values, then the template's defaults. TemplateError names any missing."""
    declared = {p.name: p for p in template.instructions.parameters}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise TemplateError(f"{template.name} has no parameter {', '.join(unknown)}")
    filled: dict[str, str] = {k: str(agent_fields[k]) for k in AGENT_PARAMETERS if k in agent_fields}
    for name, parameter in declared.items():
        value = values.get(name, parameter.default)
        if value is None:
            what = parameter.description or "no default"
            raise TemplateError(f"{template.name} needs parameter {name} ({what})")
        filled[name] = value
    try:
        return string.Template(template.instructions.system_prompt).substitute(filled)
    except (KeyError, ValueError) as exc:
        problem = f"{template.name}: its system prompt names an undeclared parameter {exc}"
        raise TemplateError(problem) from None


def agent_from_template(
    template: Template,
    *,
    agent_id: str,
    tenant_id: str = "default",
    parameters: dict[str, str] | None = None,
    keyless: bool = False,
    signer: str = "",
) -> AgentRecord:
    """The agent record an install writes: the template's profile, and the version (and hash) it came from."""
    profile = template.governance.model_dump()
    fields = {"agent_id": agent_id, "tenant_id": tenant_id, **profile}
    values = dict(parameters or {})
    ref = TemplateRef(
        name=template.name,
        version=template.version,
        hash=template.content_hash(),
        instructions=render_instructions(template, fields, values),
        parameters=values,
        model=template.model.model,
        signer=signer,
    )
    return AgentRecord.model_validate({**fields, "keyless": keyless, "template": ref.model_dump()})


def seed_agent() -> AgentRecord:
    """The default agent out of the box: the seed's LLM Planner, an instance of the built-in template (its
    profile is governance.models.SEED_AGENT's, and its instructions render the prompt it always had)."""
    return agent_from_template(builtin_template("llm-planner"), agent_id=SEED_AGENT_ID, signer=BUILTIN_SIGNER)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two versions of a profile; `widens` when the agent may do more after it."""

    field: str
    old: Any
    new: Any
    widens: bool
    text: str


def _names(record: GovernanceProfile | AgentRecord, what: str) -> list[str]:
    return list(getattr(record, what))


def profile_diff(old: GovernanceProfile | AgentRecord, new: GovernanceProfile | AgentRecord) -> list[Change]:
    """What changes between two profiles, each marked whether it widens what the agent may do: new side
    effects, a lower confidence threshold, a higher tier, a lifted or dropped forbidden action, more task
    types (or none listed, which means the tier's default)."""
    changes: list[Change] = []
    if new.tier != old.tier:
        up = new.tier > old.tier
        changes.append(Change("tier", old.tier, new.tier, up, f"tier {old.tier} -> {new.tier}"))
    if new.confidence_threshold != old.confidence_threshold:
        lower = new.confidence_threshold < old.confidence_threshold
        changes.append(
            Change(
                "confidence_threshold",
                old.confidence_threshold,
                new.confidence_threshold,
                lower,
                f"confidence threshold {old.confidence_threshold} -> {new.confidence_threshold}"
                + (" (fewer plans escalate)" if lower else ""),
            )
        )
    if new.role != old.role:
        changes.append(Change("role", old.role, new.role, False, f"role {old.role} -> {new.role}"))
    for what, more_is_wider in (
        ("allowed_side_effects", True),
        ("allowed_task_types", True),
        ("lifted_forbidden", True),
        ("forbidden_actions", False),
    ):
        before, after = _names(old, what), _names(new, what)
        added, removed = [n for n in after if n not in before], [n for n in before if n not in after]
        label = what.replace("_", " ")
        if added:
            widens = more_is_wider
            changes.append(Change(what, removed, added, widens, f"{label}: + {', '.join(added)}"))
        if removed:
            widens = not more_is_wider or (what == "allowed_task_types" and not after)
            changes.append(Change(what, removed, [], widens, f"{label}: - {', '.join(removed)}"))
    return changes


def template_diff(old: Template, new: Template) -> list[Change]:
    """The profile diff of two versions plus what else changed (instructions, model), never widening."""
    changes = profile_diff(old.governance, new.governance)
    if old.instructions != new.instructions:
        changes.append(Change("instructions", "", "", False, "instructions changed"))
    if old.model != new.model:
        changes.append(Change("model", old.model.model, new.model.model, False, "model preferences changed"))
    return changes


def widens(changes: list[Change]) -> bool:
    """Whether any change lets the agent do more (an upgrade then needs explicit confirmation)."""
    return any(c.widens for c in changes)


__all__ = [
    "BUILTIN_TEMPLATES",
    "Change",
    "GovernanceProfile",
    "Instructions",
    "ModelPreferences",
    "Parameter",
    "Template",
    "TemplateError",
    "TemplateRef",
    "agent_from_template",
    "builtin_template",
    "content_hash",
    "load_template_text",
    "profile_diff",
    "publish_problem",
    "resolve",
    "template_diff",
    "widens",
]
