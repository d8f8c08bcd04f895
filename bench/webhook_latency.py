"""Webhook delivery under the scale run's load: the job's terminal record -> a receiver on loopback, and
the pipeline's throughput with every job delivered against the same run without webhooks, alternating.

The receiver runs in this process (aiohttp); the lag of one delivery is its arrival time minus the
job's `finished_at` (the terminal record, the worker's clock: the same machine). Also on its own:
`python -m bench.webhook_latency [--workers 1] [--duration 12] [--repeats 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from aiohttp import web

from bench.infra import Bench, epoch_of, free_port, job_times, wait_queue_empty
from bench.report import Row, median, percentile
from bench.workload import client_for, submit_at_rate
from governance.webhook_policy import WebhookPolicy
from plangate_base.vocabulary import WebhookEvent
from worker.keys import Keys
from worker.webhooks.store import WebhookStore

TENANT = "default"  # the seed agent's, which the workload submits for


async def _start_receiver(
    arrivals: list[tuple[float, dict[str, Any]]], arrived: asyncio.Event
) -> tuple[web.AppRunner, int]:
    async def hook(request: web.Request) -> web.Response:
        at = time.time()
        arrivals.append((at, await request.json()))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _next_arrival(arrived: asyncio.Event) -> None:
    arrived.clear()
    try:
        await asyncio.wait_for(arrived.wait(), timeout=1.0)
    except TimeoutError:
        pass


IN_WORKER, OWN_PROCESS = "in_worker", "own_process"


async def webhook_once(
    bench: Bench,
    llm_url: str,
    workers: int,
    concurrency: int,
    latency: float,
    duration: float,
    deliverer: str | None,
) -> dict[str, float]:
    """One scale run (W·C/latency jobs/s offered for `duration` s). With a `deliverer` (IN_WORKER: the
    workers' own; OWN_PROCESS: `plangate webhooks run`), every job's terminal event goes to an endpoint
    on loopback."""
    hooked = deliverer is not None
    prefix = bench.prefix()
    redis = bench.redis()
    arrivals: list[tuple[float, dict[str, Any]]] = []
    arrived = asyncio.Event()
    runner, port = await _start_receiver(arrivals, arrived)
    procs = []
    client = client_for(bench.redis_url, prefix)
    try:
        if hooked:
            store = WebhookStore(redis, Keys(prefix))
            await store.set_policy(TENANT, WebhookPolicy(hosts=["127.0.0.1"], allow_private=True))
            await store.add_endpoint(
                TENANT, f"http://127.0.0.1:{port}/hook", [WebhookEvent.JOB_TERMINAL], by="bench"
            )
        in_worker = "true" if deliverer == IN_WORKER else "false"
        procs = await bench.start_workers(workers, prefix, llm_url, concurrency, webhooks_in_worker=in_worker)
        if deliverer == OWN_PROCESS:
            env = bench.worker_env(prefix, llm_url, concurrency, metrics_port="0")
            argv = [sys.executable, "-m", "worker.cli", "webhooks", "run"]
            procs.append(bench.procs.start(f"webhooks-{prefix.rstrip(':')}", argv, env))
        ideal = workers * concurrency / latency
        t0 = time.time()
        submitted = await submit_at_rate(client, ideal, duration)
        await wait_queue_empty(redis, Keys(prefix).queue(), timeout=3 * duration + 60)
        deadline = time.monotonic() + 60
        while hooked and len(arrivals) < len(submitted) and time.monotonic() < deadline:
            await _next_arrival(arrived)
        rows = await job_times(redis, prefix, [job_id for job_id, _ in submitted])
    finally:
        await client.aclose()
        await redis.aclose()
        for proc in procs:
            bench.procs.stop(proc)
        await runner.cleanup()
    start, end = t0 + latency + 0.5, t0 + duration
    finished = [r["finished_at"] for r in rows if r["finished_at"]]
    achieved = sum(start <= f <= end for f in finished) / max(0.5, end - start)
    lags = [at - epoch_of(body["data"]["finished_at"]) for at, body in arrivals]
    waits = [r["started_at"] - r["submitted_at"] for r in rows if r["started_at"] and r["submitted_at"]]
    out = {
        "jobs_s": achieved,
        "ideal_jobs_s": ideal,
        "jobs": float(len(rows)),
        "wait_p50_ms": percentile(waits, 50) * 1000,
        "wait_p99_ms": percentile(waits, 99) * 1000,
    }
    if hooked:
        out |= {
            "delivered": float(len({body["data"]["job_id"] for _, body in arrivals})),
            "lag_p50_ms": percentile(lags, 50) * 1000 if lags else float("nan"),
            "lag_p99_ms": percentile(lags, 99) * 1000 if lags else float("nan"),
        }
    return out


async def webhooks(
    bench: Bench,
    workers: int,
    concurrency: int,
    first_token: float,
    stream: float,
    duration: float,
    repeats: int,
    modes: tuple[str, ...] = (IN_WORKER, OWN_PROCESS),
) -> dict[str, float]:
    """`repeats` rounds of runs, alternating: without webhooks, then with the deliverer in the worker and
    (in `modes`) in its own process; medians."""
    llm_url = bench.start_stub(chunks=40, first_token_s=first_token, stream_s=stream)
    latency = first_token + stream
    runs: dict[str | None, list[dict[str, float]]] = {None: [], **{mode: [] for mode in modes}}
    for _ in range(repeats):
        for mode, done in runs.items():
            done.append(await webhook_once(bench, llm_url, workers, concurrency, latency, duration, mode))
    out = {
        "webhooks.plain_jobs_s": median([r["jobs_s"] for r in runs[None]]),
        "webhooks.plain_wait_p50_ms": median([r["wait_p50_ms"] for r in runs[None]]),
        "webhooks.plain_wait_p99_ms": median([r["wait_p99_ms"] for r in runs[None]]),
    }
    for mode in modes:
        for name in runs[mode][0]:
            out[f"webhooks.{mode}.{name}"] = median([r[name] for r in runs[mode]])
        out[f"webhooks.{mode}.jobs_ratio"] = out[f"webhooks.{mode}.jobs_s"] / out["webhooks.plain_jobs_s"]
    out["webhooks.workers"] = float(workers)
    out["webhooks.concurrency"] = float(concurrency)
    return out


def rows(n: dict[str, float], latency: float) -> list[Row]:
    """The section's rows of the table."""
    section = f"webhooks (W=1, C={n['webhooks.concurrency']:.0f}, the scale run's load, {latency:g} s jobs)"
    waits = f"{n['webhooks.plain_wait_p50_ms']:.1f} ms / {n['webhooks.plain_wait_p99_ms']:.1f} ms"
    out = [
        Row(section, "jobs/s without webhooks", f"{n['webhooks.plain_jobs_s']:.1f}"),
        Row(section, "without webhooks: queue wait p50 / p99 (the machine's noise)", waits),
    ]
    for mode, label in ((IN_WORKER, "deliverer in the worker"), (OWN_PROCESS, "deliverer process")):
        if f"webhooks.{mode}.lag_p50_ms" not in n:
            continue
        p50, p99 = n[f"webhooks.{mode}.lag_p50_ms"], n[f"webhooks.{mode}.lag_p99_ms"]
        delivered = f"{n[f'webhooks.{mode}.delivered']:.0f} of {n[f'webhooks.{mode}.jobs']:.0f} jobs"
        out += [
            Row(section, f"{label}: terminal record -> receiver p50", f"{p50:.1f} ms", "<= 50 ms", p50 <= 50),
            Row(
                section, f"{label}: terminal record -> receiver p99", f"{p99:.1f} ms", "<= 250 ms", p99 <= 250
            ),
            Row(section, f"{label}: delivered", delivered),
            Row(section, f"{label}: jobs/s of the run without", f"{n[f'webhooks.{mode}.jobs_ratio']:.2f}"),
        ]
    return out


def main() -> None:
    """Run the section alone and print its numbers."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_latency", description=__doc__)
    parser.add_argument("--redis-url", help="use this Redis (a db index of its own); default: start one")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    async def run() -> dict[str, float]:
        bench = Bench.open(args.redis_url)
        try:
            return await webhooks(
                bench, args.workers, args.concurrency, 0.2, 2.0, args.duration, args.repeats
            )
        finally:
            await bench.close()

    for name, value in asyncio.run(run()).items():
        print(f"{name}\t{value:.2f}")


if __name__ == "__main__":
    main()
