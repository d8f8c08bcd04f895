"""Limits at the edge, before a body reaches a route: its size (413) and its JSON nesting depth (413)."""

from __future__ import annotations

from typing import Any

from worker.api.problems import problem

MAX_BODY_BYTES = 1024 * 1024  # a PlanRequest's context may be 256 KiB; a batch holds several
MAX_JSON_DEPTH = 32
_DRAIN_LIMIT = 16 * 1024 * 1024  # a body this far over the limit is not read to its end


def json_depth(body: bytes) -> int:
    """How deeply `body`'s arrays and objects nest (a linear scan that skips strings; no parsing)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return body.count(b"[") + body.count(b"{")  # (at most that deep; counted in C, the common case)
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class BodyLimits:
    """ASGI middleware: a body over `max_bytes` (declared or sent) or nested deeper than `max_depth`
    is answered 413 without reaching the app."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send, f"the body is {int(declared)} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send, "the body is larger")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth(body) > self.max_depth:
            response = problem(413, "too_deep", f"the JSON body nests deeper than {self.max_depth} levels")
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any, what: str) -> None:
        # Read (and drop) what the client still sends, up to a bound, so that it gets to read the answer
        # instead of a connection reset mid-upload; past the bound the connection is closed.
        drained = 0
        while drained < _DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = problem(413, "too_large", f"{what}; the limit is {self.max_bytes} bytes")
        await response(scope, receive, send)


def replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that hands on `body`, already read, as one message, then what `receive` gets."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
