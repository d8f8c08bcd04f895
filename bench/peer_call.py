"""The peers' job (bench/peer_saq.py, bench/peer_streaq.py): the same streaming call plangate makes (the
messages, `response_format`, `stream_options`, `max_tokens`), made the fastest honest way: one aiohttp
session, the SSE body read line by line, each event parsed with orjson into a plain dict. No governance,
heartbeats, retries, caps or ledger: what an ungoverned modern queue's job would do."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

PEER_FUNCTION = "peer_plan"
MAX_TOKENS = 2048  # plangate's default (Settings.max_tokens), as bench/bare_arq.py sends
_API_KEY = "bench-key-not-secret"


def ready_key(queue: str) -> str:
    """The key a peer worker sets once it runs (the benchmark waits for it; under the run's prefix)."""
    return f"{queue}:ready"


class PeerCall:
    """One worker's HTTP session to the endpoint; `plan` streams one answer and returns its text."""

    def __init__(self, llm_url: str) -> None:
        self._url = llm_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {_API_KEY}", "Content-Type": "application/json"}
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def plan(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        """Stream one chat completion; the concatenated content deltas."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
        }
        body.update(options.get("extra_body", {}))
        if "response_format" in options:
            body["response_format"] = options["response_format"]
        parts: list[str] = []
        async with self._session.post(self._url, data=orjson.dumps(body), headers=self._headers) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                for choice in orjson.loads(data).get("choices") or ():
                    content = choice.get("delta", {}).get("content")
                    if content:
                        parts.append(content)
        return "".join(parts)

    async def aclose(self) -> None:
        """Close the session."""
        await self._session.close()
