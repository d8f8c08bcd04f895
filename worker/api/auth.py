"""Who is calling: the bearer token's principal, checked on every request (revoked at once), and a
per-token rate limit kept in Redis so it holds across every API process."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from governance.api_tokens import Principal, Scope
from governance.live_state import AgentStateStore
from governance.registry import AgentRegistry
from worker.admin import api_tokens
from worker.api.problems import ApiProblem
from worker.keys import Keys

bearer = HTTPBearer(auto_error=False, description="a plangate token: an agent's key, or an issued token")

# `plangate serve --no-auth` (the demo): every caller is this principal. Loudly logged at start.
OPEN_PRINCIPAL = Principal(token_id="open-access", scope=Scope.ADMIN, name="no-auth mode")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Authenticator:
    """Resolves the request's principal; raises 401 (no, unknown or revoked token) or 429."""

    def __init__(self, redis: Redis, keys: Keys, *, rate_per_s: int, open_access: bool) -> None:
        self._redis = redis
        self._keys = keys
        self._tokens = api_tokens(redis, keys)
        self._agents = AgentRegistry(redis, keys)
        self._states = AgentStateStore(redis, keys)
        self._rate_per_s = rate_per_s
        self._open = open_access

    async def principal(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None
    ) -> Principal:
        """The caller; its token is kept on `request.state.token` (it travels to the worker as the
        job's credential and is never logged or stored)."""
        if self._open:
            request.state.token = None
            return OPEN_PRINCIPAL
        if credentials is None or not credentials.credentials:
            raise ApiProblem(
                401, "unauthenticated", "a bearer token is required (Authorization: Bearer TOKEN)",
                headers=_CHALLENGE,
            )  # fmt: skip
        token = credentials.credentials
        principal = await self._tokens.lookup(token)
        if principal is None:
            raise ApiProblem(401, "unauthenticated", "unknown or revoked token", headers=_CHALLENGE)
        if principal.scope is Scope.AGENT:
            await self._agent_live(principal)
        await self._rate(principal)
        request.state.token = token
        return principal

    async def _agent_live(self, principal: Principal) -> None:
        assert principal.agent_id is not None
        agent = await self._agents.get(principal.agent_id)
        if agent is None:
            raise ApiProblem(
                401, "unauthenticated", "this token's agent no longer exists", headers=_CHALLENGE
            )
        if (await self._states.read(agent)).revoked:
            raise ApiProblem(401, "revoked", f"agent {agent.agent_id} is revoked", headers=_CHALLENGE)

    async def _rate(self, principal: Principal) -> None:
        if self._rate_per_s <= 0:
            return
        window = int(time.time())
        key = self._keys.api_rate(principal.token_id, window)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        if int(count) > self._rate_per_s:
            raise ApiProblem(
                429, "rate_limited", f"more than {self._rate_per_s} requests per second with this token",
                headers={"Retry-After": "1"},
            )  # fmt: skip


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The dependency every route takes its caller from (the app's Authenticator)."""
    auth: Authenticator = request.app.state.auth
    return await auth.principal(request, credentials)


Caller = Annotated[Principal, Depends(caller)]


def require(principal: Principal, *scopes: Scope) -> None:
    """403 unless `principal` has one of `scopes` (admin always has)."""
    if principal.scope is Scope.ADMIN or principal.scope in scopes:
        return
    names = ", ".join(s.value for s in scopes)
    raise ApiProblem(403, "forbidden", f"this needs a token with scope {names}, not {principal.scope.value}")
