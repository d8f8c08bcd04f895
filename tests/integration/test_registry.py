"""The agent registry in a real Redis, the TOML agents file, and the worker loading it."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from governance.models import SEED_AGENT, AgentRecord
from governance.registry import AgentRegistry, CapabilityVocabulary, RegistryError, load_agents_file
from plangate_base import codec
from plangate_base.vocabulary import EventKind
from worker.errors import BadRequest
from worker.keys import Keys
from worker.settings import Settings
from worker.worker_app import load_agents

pytestmark = pytest.mark.integration


async def test_put_get_list(redis: Redis, key_prefix: str) -> None:
    registry = AgentRegistry(redis, Keys(key_prefix))
    assert await registry.get("nobody") is None
    seed = await registry.get(SEED_AGENT.agent_id)  # out of the box: an instance of the built-in template
    assert seed is not None and seed.template is not None
    assert seed.model_dump(exclude={"template"}) == SEED_AGENT.model_dump(exclude={"template"})
    assert (seed.template.name, seed.template.version) == ("llm-planner", "1.0.0")
    assert not SEED_AGENT.keyless  # which needs a key like every agent
    analyst = AgentRecord(
        agent_id="analyst-7", tier=1, allowed_side_effects=["read_logs"], confidence_threshold=0.9
    )
    await registry.put(analyst)
    assert await registry.get("analyst-7") == analyst
    assert [a.agent_id for a in await registry.list()] == ["analyst-7", SEED_AGENT.agent_id]


async def test_a_corrupt_stored_record_is_a_typed_error(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    await redis.set(keys.agent("broken"), '{"agent_id": "broken", "tier": 99}')
    with pytest.raises(RegistryError, match="broken"):
        await AgentRegistry(redis, keys).get("broken")


def test_agents_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(
        '[vocabulary]\nadd = ["read_metrics", "Query_DB"]\n\n'
        '[[agents]]\nagent_id = "capacity-planner"\ntier = 0\nconfidence_threshold = 0.8\n\n'
        '[[agents]]\nagent_id = "ops-1"\ntier = 1\nrole = "operator"\n'
        'allowed_side_effects = ["read_metrics"]\n'
    )
    declared = load_agents_file(path)
    assert declared.vocabulary == ["read_metrics", "query_db"]
    assert [r.agent_id for r in declared.agents] == ["capacity-planner", "ops-1"]
    for record in declared.agents:  # every tier gets the seed's forbidden list
        assert record.forbidden_actions == SEED_AGENT.forbidden_actions
    path.write_text('[[agents]]\nagent_id = "x"\ntier = "high"\n')
    with pytest.raises(RegistryError, match="invalid agent"):
        load_agents_file(path)
    path.write_text('[vocabulary]\nadd = ["drop table"]\n')
    with pytest.raises(RegistryError, match="not a capability word"):
        load_agents_file(path)
    path.write_text("not toml = = =")
    with pytest.raises(RegistryError, match="cannot read"):
        load_agents_file(path)


async def test_the_worker_applies_the_agents_file_and_records_each_change_once(
    redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(
        '[vocabulary]\nadd = ["read_metrics"]\n\n'
        '[[agents]]\nagent_id = "metrics-reader"\nallowed_side_effects = ["read_metrics", "generate_plan"]\n'
    )
    configured = settings.model_copy(update={"agents_file": path})
    keys = Keys(settings.key_prefix)
    await load_agents(redis, configured)
    await load_agents(redis, configured)  # a second worker start changes nothing and records nothing
    stored = await AgentRegistry(redis, keys).get("metrics-reader")
    assert stored is not None and stored.allowed_side_effects == ["read_metrics", "generate_plan"]
    assert "read_metrics" in await CapabilityVocabulary(redis, keys).known()
    kinds = [codec.loads(f["e"])["kind"] for _, f in await redis.xrange(keys.ledger_stream())]
    assert kinds == [EventKind.VOCABULARY_EXTENDED, EventKind.AGENT_SAVED]
    # a file naming a word nobody added is refused with the vocabulary listed
    path.write_text('[[agents]]\nagent_id = "x"\nallowed_side_effects = ["drop_database"]\n')
    with pytest.raises(
        BadRequest, match=r"unknown allowed side effect: drop_database.*Known words:.*read_docs"
    ):
        await load_agents(redis, configured)
