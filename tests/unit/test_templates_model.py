"""Templates: the content hash, the publish rule (immutability, greater than its major line), resolving
with yanked versions, rendering the instructions, and which upgrades widen what an agent may do."""

from __future__ import annotations

from typing import Any

import pytest

from governance.models import SEED_AGENT
from governance.templates import (
    Template,
    TemplateError,
    agent_from_template,
    builtin_template,
    load_template_text,
    profile_diff,
    publish_problem,
    resolve,
    template_diff,
    widens,
)
from worker.prompt import system_prompt


def _template(**overrides: Any) -> Template:
    base = builtin_template("llm-planner").model_dump()
    governance = {**base["governance"], **overrides.pop("governance", {})}
    return Template.model_validate({**base, **overrides, "governance": governance})


def test_the_builtin_is_the_seeds_planner() -> None:
    t = builtin_template("llm-planner")
    assert (t.name, t.version, t.governance.tier) == ("llm-planner", "1.0.0", 0)
    assert t.governance.role == "observer"
    assert t.governance.confidence_threshold == SEED_AGENT.confidence_threshold
    assert t.governance.allowed_side_effects == SEED_AGENT.allowed_side_effects


def test_an_agent_from_the_builtin_gets_todays_default_prompt() -> None:
    agent = agent_from_template(builtin_template("llm-planner"), agent_id=SEED_AGENT.agent_id)
    assert agent.template is not None
    assert agent.template.hash == builtin_template("llm-planner").content_hash()
    assert system_prompt(agent) == system_prompt(SEED_AGENT)
    assert agent.model_dump(exclude={"template"}) == SEED_AGENT.model_dump(exclude={"template"})


def test_the_hash_covers_every_field_and_ignores_key_order() -> None:
    t = _template()
    assert _template().content_hash() == t.content_hash()
    assert _template(summary=t.summary + ".").content_hash() != t.content_hash()
    assert _template(governance={"tier": 1}).content_hash() != t.content_hash()
    as_json = load_template_text(t.model_dump_json(), "x.json")
    assert as_json.content_hash() == t.content_hash()


PUBLISH_CASES = [
    # (existing version -> same content?, new version, refused?)
    ({}, "1.0.0", False),
    ({"1.0.0": True}, "1.0.0", False),  # the same content again: idempotent
    ({"1.0.0": False}, "1.0.0", True),  # other content under a published version: immutable
    ({"1.2.0": False}, "1.1.0", True),  # not greater than the latest of its major line
    ({"1.2.0": False}, "1.2.1", False),
    ({"1.2.0": False, "2.0.0": False}, "1.3.0", False),  # a fix on an older major line
    ({"1.3.0-rc.1": False}, "1.3.0-rc.0", True),
    ({"1.3.0-rc.1": False}, "1.3.0", False),
    ({"1.3.0": False}, "1.3.0-rc.2", True),
]


@pytest.mark.parametrize(("existing", "version", "refused"), PUBLISH_CASES)
def test_publish_rule(existing: dict[str, bool], version: str, refused: bool) -> None:
    new = _template(version=version)
    hashes = {v: new.content_hash() if same else "sha256:other" for v, same in existing.items()}
    assert (publish_problem(hashes, new) is not None) is refused


RESOLVE_CASES = [
    # (range, versions -> yanked, selected)
    ("^1", {"1.0.0": False, "1.1.0": False, "2.0.0": False}, "1.1.0"),
    ("^1", {"1.0.0": False, "1.1.0": True}, "1.0.0"),  # a yanked version is hidden from new installs
    ("1.1.0", {"1.0.0": False, "1.1.0": True}, "1.1.0"),  # ...but an exact range still finds it
    ("^1", {"1.1.0": True}, None),
    ("^1.1.0-rc.0", {"1.1.0-rc.1": False, "1.0.0": False}, "1.1.0-rc.1"),
    ("~2", {"1.0.0": False}, None),
]


@pytest.mark.parametrize(("spec", "versions", "selected"), RESOLVE_CASES)
def test_resolve(spec: str, versions: dict[str, bool], selected: str | None) -> None:
    assert resolve(versions, spec) == selected


def test_instructions_fill_in_parameters() -> None:
    base = builtin_template("llm-planner").model_dump()
    base["instructions"] = {
        "system_prompt": "You are $agent_id planning for $team in tier $tier; costs in $$.",
        "parameters": [{"name": "team", "description": "the owning team"}],
    }
    t = Template.model_validate(base)
    agent = agent_from_template(t, agent_id="a1", parameters={"team": "storage"})
    assert agent.template is not None
    assert agent.template.instructions == "You are a1 planning for storage in tier 0; costs in $."
    assert system_prompt(agent).startswith("You are a1 planning for storage")
    with pytest.raises(TemplateError, match="needs parameter team"):
        agent_from_template(t, agent_id="a1")
    with pytest.raises(TemplateError, match="no parameter colour"):
        agent_from_template(t, agent_id="a1", parameters={"team": "x", "colour": "red"})


# (governance changes in the new version, widens?)
DIFF_CASES = [
    ({}, False),
    ({"allowed_side_effects": [*SEED_AGENT.allowed_side_effects, "open_ticket"]}, True),
    ({"allowed_side_effects": ["read_docs"]}, False),  # fewer side effects narrow
    ({"confidence_threshold": 0.5}, True),
    ({"confidence_threshold": 0.9}, False),
    ({"tier": 1}, True),
    ({"lifted_forbidden": ["ssh"]}, True),
    ({"forbidden_actions": ["open_ticket"]}, False),  # one more forbidden action narrows
    ({"allowed_task_types": ["plan", "analyze"]}, True),
    ({"role": "analyst"}, False),
]


@pytest.mark.parametrize(("change", "widening"), DIFF_CASES)
def test_upgrade_diff_marks_widening(change: dict[str, Any], widening: bool) -> None:
    old, new = _template(), _template(version="1.1.0", governance=change)
    changes = template_diff(old, new)
    assert widens(changes) is widening
    assert bool(changes) is bool(change)


def test_dropping_a_forbidden_action_from_the_agent_widens() -> None:
    narrow = _template(governance={"forbidden_actions": ["open_ticket"]})
    wide = _template(version="1.1.0")
    before = agent_from_template(narrow, agent_id="a", tenant_id="default")
    after = agent_from_template(wide, agent_id="a", tenant_id="default")
    changes = profile_diff(before, after)
    assert widens(changes) and [c.field for c in changes] == ["forbidden_actions"]
    assert not widens(profile_diff(after, before))
