"""The baseline: a bare arq worker whose job makes the same streaming call with the plain openai
client (its default streaming loop) and returns the text. No governance, heartbeats or ledger."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import openai
from arq.connections import RedisSettings
from arq.worker import Worker, func

BARE_FUNCTION = "bare_plan"


async def bare_plan(
    ctx: dict[str, Any], model: str, messages: list[dict[str, Any]], options: dict[str, Any]
) -> str:
    """Stream one chat completion with the SDK's loop and return its text."""
    client: openai.AsyncOpenAI = ctx["client"]
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=2048,
        **options,
    )
    parts: list[str] = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
    return "".join(parts)


def build_bare_worker(redis_url: str, queue: str, llm_url: str, concurrency: int) -> Worker:
    """An arq Worker with arq's defaults (pickle, results kept) running `bare_plan`."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["client"] = openai.AsyncOpenAI(base_url=llm_url, api_key="bench-key-not-secret", max_retries=0)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await ctx["client"].close()

    return Worker(
        functions=[func(bare_plan, name=BARE_FUNCTION)],
        queue_name=queue,
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=concurrency,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )


def main() -> None:
    """`python -m bench.bare_arq --redis-url URL --queue Q --llm-url URL [--concurrency C]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_arq")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)  # what `arq` logs by default
    worker = build_bare_worker(args.redis_url, args.queue, args.llm_url, args.concurrency)
    worker.run()


if __name__ == "__main__":
    main()
