"""The scripted LLM endpoint as a benchmark process, with a latency profile and a chunk count."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from worker.llm_stub.server import StubServer


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stub = StubServer(
        port=args.port,
        chunks=args.chunks,
        first_token_seconds=args.first_token,
        stream_seconds=args.stream,
    )
    async with stub:
        await stop.wait()


def main() -> None:
    """`python -m bench.stub_main --port P [--chunks N] [--first-token S] [--stream S]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.stub_main")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=40, help="content deltas per answer")
    parser.add_argument("--first-token", type=float, default=0.0, help="seconds before the first delta")
    parser.add_argument("--stream", type=float, default=0.0, help="seconds from the first delta to the last")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
