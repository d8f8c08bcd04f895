"""The catalogue over HTTP with a real `plangate serve` and worker: any token reads and rates (once per
token), only an admin publishes, and the API refuses what the CLI refuses (immutability)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.templates import builtin_template
from tests.e2e.api_deployment import Deployment, call

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dep(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(redis_base_url, tmp_path_factory.mktemp("api-templates"))
    try:
        yield deployment.start(workers=1)
    finally:
        deployment.stop()


def test_read_for_any_token_publish_for_admins(dep: Deployment, tmp_path: Path) -> None:
    admin = dep.token("admin")
    _, key = dep.agent()
    base = f"{dep.url}/v1/templates"
    template = {
        **builtin_template("llm-planner").model_dump(mode="json"),
        "name": "api-planner",
        "summary": "A planner published over HTTP",
        "tags": ["http", "api"],
    }
    body = {"template": template, "allow_unsigned": True}
    assert call(base, "POST", token=key, body=body).status == 403
    published = call(base, "POST", token=admin, body=body)
    assert published.status == 201 and published.body["new"], published.body
    edited = {**body, "template": {**template, "summary": "Other content, same version"}}
    refused = call(base, "POST", token=admin, body=edited)
    assert refused.status == 400 and "immutable" in refused.body["detail"]
    unsigned = call(base, "POST", token=admin, body={"template": {**template, "version": "1.0.1"}})
    assert unsigned.status == 400 and "unsigned" in refused.body["detail"] + unsigned.body["detail"]

    listed = call(base, token=key)
    assert listed.status == 200 and {"api-planner", "llm-planner"} <= {t["name"] for t in listed.body}
    hits = call(f"{base}/search?q=http", token=key)
    assert hits.status == 200 and [h["name"] for h in hits.body] == ["api-planner"]
    shown = call(f"{base}/api-planner?range=%5E1", token=key)
    assert shown.status == 200 and shown.body["hash"] == published.body["hash"]
    assert call(f"{base}/no-such-template", token=key).status == 400
    assert call(base).status == 401

    rating = f"{base}/api-planner/versions/1.0.0/rating"
    assert call(rating, "PUT", token=key, body={"stars": 2}).status == 200
    again = call(rating, "PUT", token=key, body={"stars": 5, "comment": "better than I thought"})
    assert again.status == 200 and (again.body["count"], again.body["mean"]) == (1, 5.0)
    assert call(rating, "PUT", token=key, body={"stars": 6}).status == 422
