"""The template catalogue on a real ledger file: bm25 ranking (a name beats a description mention), the
filters, immutability, the major-line rule, yanking, ratings, and signatures (a tampered file is refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from governance.templates import Template, builtin_template
from worker.errors import BadRequest
from worker.template_catalogue import TemplateCatalogue
from worker.template_signing import SignatureRefused, UntrustedSignature, new_key_pair, sign

pytestmark = pytest.mark.asyncio


def make(name: str, version: str = "1.0.0", **fields: Any) -> Template:
    """A template built the way a file is read: the built-in's fields with some replaced."""
    base = builtin_template("llm-planner").model_dump()
    governance = {**base["governance"], **fields.pop("governance", {})}
    fields = {**base, "name": name, "version": version, **fields, "governance": governance}
    return Template.model_validate(fields)


async def put(cat: TemplateCatalogue, template: Template) -> None:
    """Publish without a signature (the signature tests sign)."""
    await cat.publish(template, None, by="t", allow_unsigned=True)


@pytest.fixture
def cat(tmp_path: Path) -> TemplateCatalogue:
    return TemplateCatalogue(tmp_path / "ledger.db")


async def test_the_builtin_is_there_from_the_start(cat: TemplateCatalogue) -> None:
    listed = await cat.listing()
    assert [(t["name"], t["version"], t["signer"]) for t in listed] == [("llm-planner", "1.0.0", "builtin")]


async def test_an_exact_name_beats_a_description_mention(cat: TemplateCatalogue) -> None:
    for i in range(8):  # a corpus where "rollout" is a rare word, as bm25 expects
        await put(cat, make(f"filler-{i}", summary=f"Filler {i}"))
    about = "Unlike a rollout planner, it triages."
    await put(cat, make("incident-triage", summary="Triage incidents", description=about))
    await put(cat, make("rollout", summary="Plans rollouts", tags=["deploy"]))
    hits = await cat.search("rollout")
    assert [h["name"] for h in hits] == ["rollout", "incident-triage"]
    assert hits[0]["score"] < hits[1]["score"]  # bm25: lower is better
    assert [h["name"] for h in await cat.search("triage")] == ["incident-triage"]
    assert [h["name"] for h in await cat.search("deploy")] == ["rollout"]  # tags are searched


async def test_filters_by_tier_and_side_effect(cat: TemplateCatalogue) -> None:
    seed = list(builtin_template("llm-planner").governance.allowed_side_effects)
    wider = {"tier": 1, "allowed_side_effects": [*seed, "open_ticket"]}
    await put(cat, make("ticket-planner", summary="A planner that files tickets", governance=wider))
    assert {h["name"] for h in await cat.search("planner")} == {"ticket-planner", "llm-planner"}
    assert [h["name"] for h in await cat.search("planner", tier=1)] == ["ticket-planner"]
    assert [h["name"] for h in await cat.search("planner", tier=0)] == ["llm-planner"]
    assert [h["name"] for h in await cat.search("planner", side_effect="open_ticket")] == ["ticket-planner"]


async def test_a_published_version_is_immutable(cat: TemplateCatalogue) -> None:
    first = make("rollout", summary="Plans rollouts")
    row, new = await cat.publish(first, None, by="t", allow_unsigned=True)
    assert new and row.hash == first.content_hash()
    _, again = await cat.publish(first, None, by="t", allow_unsigned=True)
    assert not again  # the same content: nothing happens
    with pytest.raises(BadRequest, match="immutable"):
        await put(cat, make("rollout", summary="Plans rollouts, better"))
    await put(cat, make("rollout", "1.1.0", summary="Plans rollouts"))
    with pytest.raises(BadRequest, match=r"not greater than 1\.1\.0"):
        await put(cat, make("rollout", "1.0.5", summary="Plans rollouts"))
    shown = await cat.show("rollout@1.0.0")
    assert shown["hash"] == first.content_hash() and shown["template"]["summary"] == "Plans rollouts"


async def test_yank_hides_from_new_installs_but_stays_resolvable(cat: TemplateCatalogue) -> None:
    for version in ("1.0.0", "1.1.0"):
        await put(cat, make("rollout", version, summary="Plans rollouts"))
    await cat.yank("rollout", "1.1.0", reason="bad prompt")
    assert (await cat.resolve("rollout@^1")).row.version == "1.0.0"
    assert (await cat.resolve("rollout@1.1.0", for_install=False)).row.yanked
    with pytest.raises(BadRequest, match="yanked"):
        await cat.resolve("rollout@1.1.0", for_install=True)
    assert [h["version"] for h in await cat.search("rollout")] == ["1.0.0"]
    await cat.yank("rollout", "1.1.0", reason="", undo=True)
    assert (await cat.resolve("rollout@^1")).row.version == "1.1.0"


async def test_one_rating_per_rater(cat: TemplateCatalogue) -> None:
    await cat.rate("llm-planner@1.0.0", rater="ann", stars=2, comment="too cautious")
    await cat.rate("llm-planner@1.0.0", rater="ann", stars=4, comment="fine after all")
    rated = await cat.rate("llm-planner@^1", rater="bob", stars=5, comment="")
    assert (rated["count"], rated["mean"], rated["stars"]["4"], rated["stars"]["2"]) == (2, 4.5, 1, 0)
    assert [c["comment"] for c in rated["comments"]] == ["fine after all"]


async def test_signatures_from_trusted_keys_only(cat: TemplateCatalogue) -> None:
    private, public = new_key_pair()
    template = make("rollout", summary="Plans rollouts")
    signature = sign(template, private, "acme-ops")
    with pytest.raises(UntrustedSignature):
        await cat.publish(template, signature, by="t")  # no admin trusts the key yet
    with pytest.raises(UntrustedSignature, match="unsigned"):
        await cat.publish(template, None, by="t")
    await cat.trust("acme-ops", public, by="admin")
    tampered = make("rollout", summary="Plans rollouts", governance={"tier": 3})
    with pytest.raises(SignatureRefused, match="tampered"):
        await cat.publish(tampered, signature, by="t", allow_unsigned=True)  # never allowed
    row, _ = await cat.publish(template, signature, by="t")
    assert row.signer == "acme-ops"
    found = await cat.resolve("rollout@1.0.0")
    assert await cat.check_installable(found, allow_unsigned=False) == "acme-ops"
    other_private, _ = new_key_pair()
    fix = make("rollout", "1.0.1", summary="Plans rollouts")
    forged = sign(fix, other_private, "acme-ops")  # another key, claiming to be the trusted one
    forged = type(forged)(signature.key_id, forged.publisher, forged.hash, forged.signature)
    with pytest.raises(SignatureRefused, match="does not verify"):
        await cat.publish(fix, forged, by="t", allow_unsigned=True)
