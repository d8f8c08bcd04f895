"""`python -m bench.api_load`: what the HTTP API costs over a direct Redis submit, and many SSE watchers.

Side by side in one run, on one Redis: `PlanClient.submit` straight to Redis, and `POST /v1/jobs` to one
`plangate serve` process (a tenant token, so each request is authenticated as a real one is; the rate
limit off). Latency is sequential submits (p50/p99); throughput is `--concurrency` submitters at once.
Then `--watchers` SSE streams on one API process, one per queued job, all ended by cancelling the jobs:
every watcher must see its terminal event; the API's peak RSS and its CPU per delivered event are
reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

from bench.infra import Bench, cpu_seconds
from bench.report import Row, median, percentile, render
from governance.api_tokens import Scope
from worker.admin import AgentAdmin
from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings

SUBMITS_PER_S_TARGET = 1500.0
ADDED_P50_MS_TARGET = 3.0
WATCHERS_RSS_MIB_TARGET = 150.0
_REQUEST = {"agent_id": "llm-planner-001", "description": "a job for the API benchmark"}


def _rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _timed(calls: int, submit: object) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await submit()  # type: ignore[operator]
        latencies.append(time.perf_counter() - started)
    return latencies


async def _throughput(total: int, concurrency: int, submit: object) -> float:
    remaining = total

    async def one() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await submit()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def measure(bench: Bench, calls: int, total: int, concurrency: int, watchers: int) -> dict[str, float]:
    prefix = bench.prefix()
    await bench.keyless_seed_agent(prefix)
    redis = bench.redis()
    admin = AgentAdmin(redis, Keys(prefix))
    token, _ = await admin.issue_token(Scope.TENANT, tenant_id="default", name="bench", by="bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=bench.redis_url, PLANGATE_KEY_PREFIX=prefix, PLANGATE_API_RATE_LIMIT_PER_S="0"
    )
    url, api_pid = await asyncio.to_thread(bench.start_api, [sys.executable, "-m", "worker.cli"], env)
    n: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=max(concurrency, watchers) + 10)
    try:
        async with (
            PlanClient.connect(Settings(redis_url=bench.redis_url, key_prefix=prefix)) as direct,
            aiohttp.ClientSession(connector=connector, headers=headers) as http,
        ):

            async def via_api() -> None:
                async with http.post(url + "/v1/jobs", json=_REQUEST) as answer:
                    if answer.status != 202:
                        raise RuntimeError(f"submit answered {answer.status}: {await answer.text()}")
                    await answer.read()

            async def via_redis() -> None:
                await direct.submit(_REQUEST)

            await _timed(20, via_api)  # warm-up of both paths (connections, first imports)
            await _timed(20, via_redis)
            direct_lat, api_lat = [], []
            for _ in range(3):  # interleaved rounds, so both see the same machine
                direct_lat += await _timed(calls // 3, via_redis)
                api_lat += await _timed(calls // 3, via_api)
            n["api.direct_p50_ms"] = median(direct_lat) * 1000
            n["api.direct_p99_ms"] = percentile(direct_lat, 99) * 1000
            n["api.p50_ms"] = median(api_lat) * 1000
            n["api.p99_ms"] = percentile(api_lat, 99) * 1000
            n["api.added_p50_ms"] = n["api.p50_ms"] - n["api.direct_p50_ms"]
            direct_rates, api_rates, api_cpu = [], [], []
            for _ in range(2):
                direct_rates.append(await _throughput(total, concurrency, via_redis))
                cpu_before = cpu_seconds(api_pid)
                api_rates.append(await _throughput(total, concurrency, via_api))
                api_cpu.append((cpu_seconds(api_pid) - cpu_before) / total)
            n["api.cpu_ms_per_submit"] = median(api_cpu) * 1000
            n["api.direct_submits_s"] = median(direct_rates)
            n["api.submits_s"] = median(api_rates)
            n["api.submits_ratio"] = n["api.submits_s"] / n["api.direct_submits_s"]

            jobs = [await direct.submit(_REQUEST) for _ in range(watchers)]
            ended = 0

            async def watch(job_id: str, ready: asyncio.Event) -> None:
                nonlocal ended
                async with http.get(f"{url}/v1/jobs/{job_id}/events") as stream:
                    ready.set()
                    async for line in stream.content:
                        if line.startswith(b"event: terminal"):
                            ended += 1

            readies = [asyncio.Event() for _ in jobs]
            tasks = [asyncio.create_task(watch(j, r)) for j, r in zip(jobs, readies, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
            cpu_before = cpu_seconds(api_pid)
            for job_id in jobs:
                await direct.cancel(job_id)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            n["api.watchers"] = float(watchers)
            n["api.watchers_missed"] = float(watchers - ended)
            n["api.watchers_cpu_ms_per_event"] = (cpu_seconds(api_pid) - cpu_before) / max(ended, 1) * 1000
            n["api.rss_peak_mib"] = _rss_peak_mib(api_pid)
    finally:
        await redis.aclose()
    n["api.calls"], n["api.total"], n["api.concurrency"] = float(calls), float(total), float(concurrency)
    return n


def rows(n: dict[str, float]) -> list[Row]:
    """The API section of the table."""
    sizes = f"{n['api.calls']:.0f} sequential, C={n['api.concurrency']:.0f}"
    section = f"api (one `plangate serve`, tenant token; {sizes})"
    added = n["api.added_p50_ms"]
    return [
        Row(
            section,
            "direct PlanClient.submit: p50 / p99",
            f"{n['api.direct_p50_ms']:.2f} / {n['api.direct_p99_ms']:.2f} ms",
        ),
        Row(section, "POST /v1/jobs: p50 / p99", f"{n['api.p50_ms']:.2f} / {n['api.p99_ms']:.2f} ms"),
        Row(
            section,
            "POST /v1/jobs: p50 over direct",
            f"+{added:.2f} ms",
            f"<= +{ADDED_P50_MS_TARGET:.0f} ms",
            added <= ADDED_P50_MS_TARGET,
        ),
        Row(section, "direct submits/s", f"{n['api.direct_submits_s']:.0f}"),
        Row(section, "API process CPU per submit", f"{n['api.cpu_ms_per_submit']:.2f} ms"),
        Row(
            section,
            "POST /v1/jobs submits/s (of direct)",
            f"{n['api.submits_s']:.0f} ({n['api.submits_ratio']:.2f} x)",
            f">= {SUBMITS_PER_S_TARGET:.0f}",
            n["api.submits_s"] >= SUBMITS_PER_S_TARGET,
        ),
        Row(
            section,
            f"{n['api.watchers']:.0f} SSE watchers: missed terminal events",
            f"{n['api.watchers_missed']:.0f}",
            "0",
            n["api.watchers_missed"] == 0,
        ),
        Row(
            section,
            "SSE watchers: API peak RSS",
            f"{n['api.rss_peak_mib']:.0f} MiB",
            f"<= {WATCHERS_RSS_MIB_TARGET:.0f} MiB",
            n["api.rss_peak_mib"] <= WATCHERS_RSS_MIB_TARGET,
        ),
        Row(
            section,
            "SSE watchers: API CPU per terminal event",
            f"{n['api.watchers_cpu_ms_per_event']:.2f} ms",
        ),
    ]


async def _run(args: argparse.Namespace) -> dict[str, float]:
    bench = Bench.open(args.redis_url)
    try:
        return await measure(bench, args.calls, args.total, args.concurrency, args.watchers)
    finally:
        await bench.close()


def main() -> None:
    """Measure, print the rows (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__)
    parser.add_argument("--calls", type=int, default=600, help="sequential submits per path (default 600)")
    parser.add_argument("--total", type=int, default=3000, help="submits per throughput round (default 3000)")
    parser.add_argument("--concurrency", type=int, default=32, help="submitters at once (default 32)")
    parser.add_argument("--watchers", type=int, default=1000, help="SSE streams at once (default 1000)")
    parser.add_argument("--redis-url", help="use this Redis (a db index of its own); default: start one")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    # The load generator runs on uvloop, as `plangate serve` does: on the default loop the submitting
    # side would cost nearly as much CPU as the API it measures, on a machine of two cores.
    numbers = uvloop.run(_run(args))
    command = (
        f"`python -m bench.api_load --calls {args.calls} --total {args.total} --watchers {args.watchers}`"
    )
    print(render(rows(numbers), command))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
