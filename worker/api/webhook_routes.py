"""The webhook routes of the API: a tenant's allow list (admins set it), its endpoints and callback
secret (admins, or the tenant's own token), and the dead letters. Secrets are in one answer only. The
tenant id `*` (DEPLOYMENT_WEBHOOKS) names the deployment's endpoints, for deployment-wide events (ledger
checkpoints): admins set its allow list, admins and auditors manage its endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from governance.api_tokens import Principal, Scope
from governance.webhook_policy import EndpointRecord, WebhookPolicy, WebhookUrl
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, WebhookEvent
from worker.api.auth import Caller, require
from worker.api.problems import ApiProblem
from worker.keys import Keys
from worker.webhooks.store import DeliveryRecord, WebhookStore

PREFIX = "/v1"


class NewEndpoint(BaseModel):
    """An endpoint to register: where, and for which event types."""

    url: WebhookUrl
    events: list[WebhookEvent] = Field(min_length=1)


class IssuedEndpoint(EndpointRecord):
    """A registered endpoint with its secret (`whsec_...`): in this answer only."""

    secret: str


class IssuedSecret(BaseModel):
    """A new signing secret: in this answer only."""

    secret: str


def _own_tenant(principal: Principal, tenant_id: str) -> None:
    """403 unless an admin token, or the tenant's own tenant token; the deployment's endpoints
    (DEPLOYMENT_WEBHOOKS: ledger checkpoints, which cover every tenant) admin and auditor tokens."""
    if principal.scope is Scope.ADMIN:
        return
    if tenant_id == DEPLOYMENT_WEBHOOKS:
        if principal.scope is Scope.AUDITOR:
            return
        detail = "the deployment's webhooks (ledger checkpoints) are managed by admins and auditors"
        raise ApiProblem(403, "forbidden", detail)
    if principal.scope is Scope.TENANT and principal.tenant_id == tenant_id:
        return
    raise ApiProblem(403, "forbidden", "a tenant's webhooks are managed by admins, or the tenant's own token")


def webhook_router(
    keys: Keys, problem_responses: Callable[..., dict[int | str, dict[str, Any]]]
) -> APIRouter:
    """The routes (the app's Redis client is `request.app.state.redis`), documenting the problem answers
    `problem_responses(*codes)` gives (the app's own, besides every route's)."""
    router = APIRouter(prefix=PREFIX, tags=["webhooks"])

    def store(request: Request) -> WebhookStore:
        return WebhookStore(request.app.state.redis, keys)

    @router.get(
        "/tenants/{tenant_id}/webhooks/policy",
        response_model=WebhookPolicy,
        responses=problem_responses(403),
        summary="Allow list",
    )
    async def get_policy(tenant_id: str, request: Request, principal: Caller) -> WebhookPolicy:
        """The hosts the tenant's webhooks may go to."""
        _own_tenant(principal, tenant_id)
        return await store(request).policy(tenant_id)

    @router.put(
        "/tenants/{tenant_id}/webhooks/policy",
        response_model=WebhookPolicy,
        responses=problem_responses(403),
        summary="Set allow list",
    )
    async def put_policy(
        tenant_id: str, body: WebhookPolicy, request: Request, principal: Caller
    ) -> WebhookPolicy:
        """Replace the tenant's allow list (admins only; `allow_private` lifts the SSRF guard for it)."""
        require(principal, Scope.ADMIN)
        await store(request).set_policy(tenant_id, body)
        return body

    @router.post(
        "/tenants/{tenant_id}/webhooks/callback-secret",
        response_model=IssuedSecret,
        status_code=201,
        responses=problem_responses(403),
        summary="Issue the callback secret",
    )
    async def callback_secret(tenant_id: str, request: Request, principal: Caller) -> IssuedSecret:
        """A new secret signing the tenant's per-job callbacks (`callback_url`); the old one stops."""
        _own_tenant(principal, tenant_id)
        return IssuedSecret(secret=await store(request).issue_callback_secret(tenant_id))

    @router.post(
        "/tenants/{tenant_id}/webhooks/endpoints",
        response_model=IssuedEndpoint,
        status_code=201,
        responses=problem_responses(403),
        summary="Register an endpoint",
    )
    async def add_endpoint(
        tenant_id: str, body: NewEndpoint, request: Request, principal: Caller
    ) -> IssuedEndpoint:
        """Its host must be on the tenant's allow list. The secret is in this answer only."""
        _own_tenant(principal, tenant_id)
        record, secret = await store(request).add_endpoint(
            tenant_id, body.url, body.events, by=f"api:{principal.token_id}"
        )
        return IssuedEndpoint(**record.model_dump(), secret=secret)

    @router.get(
        "/tenants/{tenant_id}/webhooks/endpoints",
        response_model=list[EndpointRecord],
        responses=problem_responses(403),
        summary="Endpoints",
    )
    async def list_endpoints(tenant_id: str, request: Request, principal: Caller) -> list[EndpointRecord]:
        """The tenant's endpoints (never their secrets)."""
        _own_tenant(principal, tenant_id)
        return await store(request).endpoints(tenant_id)

    @router.delete(
        "/tenants/{tenant_id}/webhooks/endpoints/{endpoint_id}",
        status_code=204,
        responses=problem_responses(403, 404),
        summary="Remove an endpoint",
    )
    async def remove_endpoint(
        tenant_id: str, endpoint_id: str, request: Request, principal: Caller
    ) -> Response:
        _own_tenant(principal, tenant_id)
        if not await store(request).remove_endpoint(tenant_id, endpoint_id):
            raise ApiProblem(404, "not_found", f"no webhook endpoint {endpoint_id!r}")
        return Response(status_code=204)

    @router.post(
        "/tenants/{tenant_id}/webhooks/endpoints/{endpoint_id}/secret",
        response_model=IssuedSecret,
        status_code=201,
        responses=problem_responses(403),
        summary="Rotate an endpoint's secret",
    )
    async def rotate_secret(
        tenant_id: str, endpoint_id: str, request: Request, principal: Caller
    ) -> IssuedSecret:
        _own_tenant(principal, tenant_id)
        return IssuedSecret(secret=await store(request).rotate_secret(tenant_id, endpoint_id))

    @router.get(
        "/webhooks/failed",
        response_model=list[DeliveryRecord],
        responses=problem_responses(403),
        summary="Dead deliveries",
    )
    async def failed(
        request: Request,
        principal: Caller,
        tenant_id: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[DeliveryRecord]:
        """Deliveries that gave up, newest first: admin and auditor tokens any tenant's, tenant tokens
        their own."""
        require(principal, Scope.ADMIN, Scope.AUDITOR, Scope.TENANT)
        if principal.scope is Scope.TENANT:
            tenant_id = principal.tenant_id
        return await store(request).dead(tenant_id=tenant_id, limit=limit)

    @router.post(
        "/webhooks/deliveries/{delivery_id}/redeliver",
        response_model=DeliveryRecord,
        responses=problem_responses(403, 404, 409),
        summary="Redeliver a dead delivery",
    )
    async def redeliver(delivery_id: str, request: Request, principal: Caller) -> DeliveryRecord:
        """A dead delivery due again now, with the same webhook-id (409 when it is not dead)."""
        require(principal, Scope.ADMIN, Scope.TENANT)
        hooks = store(request)
        record = await hooks.delivery(delivery_id)
        if record is None or (principal.scope is Scope.TENANT and record.tenant_id != principal.tenant_id):
            raise ApiProblem(404, "not_found", f"no webhook delivery {delivery_id!r}")
        if not await hooks.redeliver(delivery_id):
            raise ApiProblem(409, "conflict", f"delivery {delivery_id} is {record.state.value}, not dead")
        updated = await hooks.delivery(delivery_id)
        assert updated is not None
        return updated

    return router
