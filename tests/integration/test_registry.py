"""The agent registry in a real Redis, the TOML agents file, and the worker loading it."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from governance.models import SEED_AGENT, AgentRecord
from governance.registry import AgentRegistry, RegistryError, load_agents_file
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_put_get_list(redis: Redis, settings: Settings) -> None:
    registry = AgentRegistry(redis, Keys(settings.key_prefix))
    assert await registry.get("nobody") is None
    assert await registry.get(SEED_AGENT.agent_id) == SEED_AGENT  # out of the box
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
        '[[agents]]\nagent_id = "capacity-planner"\ntier = 0\nconfidence_threshold = 0.8\n\n'
        '[[agents]]\nagent_id = "ops-1"\ntier = 1\nrole = "operator"\nallowed_side_effects = ["read_logs"]\n'
    )
    records = load_agents_file(path)
    assert [r.agent_id for r in records] == ["capacity-planner", "ops-1"]
    assert records[0].forbidden_actions == SEED_AGENT.forbidden_actions  # tier 0 gets the seed lists
    assert records[1].forbidden_actions == []
    path.write_text('[[agents]]\nagent_id = "x"\ntier = "high"\n')
    with pytest.raises(RegistryError, match="invalid agent"):
        load_agents_file(path)
    path.write_text("not toml = = =")
    with pytest.raises(RegistryError, match="cannot read"):
        load_agents_file(path)
