"""Agents from templates: install an agent from a template version, upgrade it (or every agent on a
template) to another version after showing what changes — a change that widens what the agent may do
needs explicit confirmation — and record each install and upgrade in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from governance.models import AgentRecord
from governance.templates import Change, TemplateError, agent_from_template, profile_diff, widens
from plangate_base.vocabulary import EventKind
from worker.admin import AgentAdmin
from worker.errors import BadRequest
from worker.keys import Keys
from worker.template_catalogue import Resolved, TemplateCatalogue, split_spec


class ConfirmationNeeded(BadRequest):
    """An upgrade widens what the agent may do and was not confirmed (`--yes`)."""


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A planned move of one agent to another template version: the records before and after, the diff."""

    agent_id: str
    before: AgentRecord
    after: AgentRecord
    target: Resolved
    changes: list[Change]

    @property
    def widens(self) -> bool:
        """Whether the agent may do more after it."""
        return widens(self.changes)

    def shown(self) -> dict[str, Any]:
        """The plan as data (what `--json` prints and the ledger event carries)."""
        assert self.before.template is not None
        return {
            "agent_id": self.agent_id,
            "template": self.target.row.name,
            "from_version": self.before.template.version,
            "to_version": self.target.row.version,
            "widens": self.widens,
            "changes": [{"field": c.field, "widens": c.widens, "change": c.text} for c in self.changes],
        }


def _carried(before: AgentRecord | None) -> dict[str, Any]:
    """What an install keeps of the agent it replaces: its key policy and error budget."""
    if before is None:
        return {}
    return {
        "keyless": before.keyless,
        "error_budget_limit": before.error_budget_limit,
        "error_budget_window_s": before.error_budget_window_s,
    }


class TemplateInstaller:
    """Writes agent records from template versions (through AgentAdmin, which records each change)."""

    def __init__(self, redis: Redis, keys: Keys, catalogue: TemplateCatalogue) -> None:
        self.admin = AgentAdmin(redis, keys)
        self.catalogue = catalogue

    async def install(
        self,
        agent_id: str,
        spec: str,
        *,
        tenant_id: str,
        by: str,
        parameters: dict[str, str] | None = None,
        allow_unsigned: bool = False,
        keyless: bool = False,
    ) -> tuple[AgentRecord, bool]:
        """Write the agent from the version `spec` selects (not a yanked one); returns the record and
        whether anything changed. The signature is checked against the trusted publisher keys."""
        found = await self.catalogue.resolve(spec, for_install=True)
        signer = await self.catalogue.check_installable(found, allow_unsigned=allow_unsigned)
        before = await self.admin.agents.get(agent_id)
        if before is not None and before.template is not None:
            on = before.template
            if (on.name, on.version) != (found.row.name, found.row.version):
                # Another version could widen what it may do: that goes through the diff and --yes.
                raise BadRequest(
                    f"agent {agent_id} is on {on.name}@{on.version}; move it with "
                    f"`plangate agents upgrade {agent_id} --to {found.row.version}`"
                )
        try:
            record = agent_from_template(
                found.template, agent_id=agent_id, tenant_id=tenant_id, parameters=parameters, signer=signer
            )
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc
        record = record.model_copy(update={**_carried(before), **({"keyless": True} if keyless else {})})
        details = {
            "template": found.row.name,
            "version": found.row.version,
            "hash": found.row.hash,
            "signer": signer,
        }
        changed = await self.admin.save_agent(
            record, by=by, kind=EventKind.TEMPLATE_INSTALLED, details=details
        )
        return record, changed

    async def reuse(self, agent_id: str, spec: str) -> AgentRecord | None:
        """The agent when it exists on the template `spec` names, at a version the range selects (yanked
        or not): what an idempotent bootstrap keeps as it is."""
        from governance.semver import parse_range, parse_version

        agent = await self.admin.agents.get(agent_id)
        name, wanted = split_spec(spec)
        if agent is None or agent.template is None or agent.template.name != name:
            return None
        version = parse_version(agent.template.version)
        return agent if parse_range(wanted).matches(version, include_prerelease=bool(version.pre)) else None

    async def plan_upgrade(self, agent_id: str, to: str) -> Upgrade:
        """What moving the agent to the version `to` (a version or a range of its template) changes."""
        before = await self.admin.agents.get(agent_id)
        if before is None:
            raise BadRequest(f"no agent with id {agent_id!r}")
        if before.template is None:
            raise BadRequest(f"agent {agent_id} was not installed from a template (`agents add --template`)")
        name = before.template.name
        wanted = split_spec(to)[1] if "@" in to else to
        target = await self.catalogue.resolve(f"{name}@{wanted}", for_install=True)
        try:
            after = agent_from_template(
                target.template,
                agent_id=agent_id,
                tenant_id=before.tenant_id,
                parameters=before.template.parameters,
                signer=before.template.signer,
            )
        except TemplateError as exc:
            raise BadRequest(str(exc)) from exc
        after = after.model_copy(update=_carried(before))
        changes = profile_diff(before, after)
        assert after.template is not None
        if after.template.instructions != before.template.instructions:
            changes.append(Change("instructions", "", "", False, "instructions changed"))
        return Upgrade(agent_id, before, after, target, changes)

    async def agents_on(self, template: str) -> list[str]:
        """The agents installed from a template (any version)."""
        agents = await self.admin.agents.list()
        return [a.agent_id for a in agents if a.template and a.template.name == template]

    async def apply(self, upgrade: Upgrade, *, yes: bool, by: str, allow_unsigned: bool = False) -> bool:
        """Write the upgraded record; ConfirmationNeeded when it widens and `yes` is not given."""
        if upgrade.widens and not yes:
            widening = "; ".join(c.text for c in upgrade.changes if c.widens)
            raise ConfirmationNeeded(
                f"upgrading {upgrade.agent_id} to {upgrade.target.row.name}@{upgrade.target.row.version} "
                f"widens what it may do ({widening}); confirm with --yes"
            )
        signer = await self.catalogue.check_installable(upgrade.target, allow_unsigned=allow_unsigned)
        after = upgrade.after
        assert after.template is not None
        after = after.model_copy(update={"template": after.template.model_copy(update={"signer": signer})})
        details = {**upgrade.shown(), "hash": upgrade.target.row.hash, "signer": signer, "confirmed": yes}
        return await self.admin.save_agent(after, by=by, kind=EventKind.TEMPLATE_UPGRADED, details=details)
