"""Benchmarks that run real worker processes: overhead against bare arq, scale, pickup latency, memory."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from bench.infra import Bench, cpu_seconds, job_times, rss_mib, wait_queue_empty
from bench.report import median, percentile
from bench.workload import BareSubmitter, client_for, plan_request, submit_at_rate, submit_many
from worker.keys import Keys

_LAG_SAMPLE_S = 0.25


@dataclass(frozen=True)
class Throughput:
    """One run of N jobs: jobs per second (first submit to last finish) and worker CPU per job."""

    jobs_s: float
    cpu_ms_per_job: float
    stub_cpu_ms: float = 0.0  # the endpoint's and Redis's CPU per job: they share the machine
    redis_cpu_ms: float = 0.0


def _throughput(
    bench: Bench, llm_url: str, jobs: int, span: float, cpu: float, side0: tuple[float, float]
) -> Throughput:
    stub1, redis1 = bench.side_cpu(llm_url)
    per_job = 1000 / jobs
    return Throughput(jobs / span, cpu * per_job, (stub1 - side0[0]) * per_job, (redis1 - side0[1]) * per_job)


async def _wait_ledger_drained(bench: Bench, prefix: str, timeout: float = 60.0) -> None:
    redis = bench.redis()
    try:
        deadline = time.monotonic() + timeout
        while await redis.xlen(Keys(prefix).ledger_stream()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


async def plangate_throughput(bench: Bench, llm_url: str, jobs: int, concurrency: int) -> Throughput:
    """N jobs through one `plangate worker` (full pipeline, ledger writer included)."""
    prefix = bench.prefix()
    [proc] = await bench.start_workers(1, prefix, llm_url, concurrency)
    client = client_for(bench.redis_url, prefix)
    redis = bench.redis()
    try:
        await asyncio.sleep(0.5)  # let start-up settle before the CPU sample
        cpu0, t0, side0 = cpu_seconds(proc.pid), time.time(), bench.side_cpu(llm_url)
        ids = await submit_many(client, jobs)
        t1 = await wait_queue_empty(redis, Keys(prefix).queue(), timeout=60 + jobs / 10)
        await _wait_ledger_drained(bench, prefix)
        cpu1 = cpu_seconds(proc.pid)
        states = [row["state"] for row in await job_times(redis, prefix, ids)]
        if states.count("done") != jobs:
            raise RuntimeError(f"not every job ended done: {sorted(set(states))}")
        return _throughput(bench, llm_url, jobs, t1 - t0, cpu1 - cpu0, side0)
    finally:
        await client.aclose()
        await redis.aclose()
        bench.procs.stop(proc)


async def bare_throughput(bench: Bench, llm_url: str, jobs: int, concurrency: int) -> Throughput:
    """N baseline jobs through one bare arq worker."""
    queue = f"{bench.prefix()}bare-queue"
    proc = await bench.start_bare_worker(queue, llm_url, concurrency)
    submitter = await BareSubmitter.connect(bench.redis_url, queue, llm_url)
    redis = bench.redis()
    try:
        await asyncio.sleep(0.5)
        cpu0, t0, side0 = cpu_seconds(proc.pid), time.time(), bench.side_cpu(llm_url)
        ids = await submitter.submit_many(jobs)
        bench.arq_ids.extend(ids)
        t1 = await wait_queue_empty(redis, queue, timeout=60 + jobs / 10)
        cpu1 = cpu_seconds(proc.pid)
        return _throughput(bench, llm_url, jobs, t1 - t0, cpu1 - cpu0, side0)
    finally:
        await submitter.aclose()
        await redis.aclose()
        bench.procs.stop(proc)


async def overhead(bench: Bench, jobs: int, concurrency: int, repeats: int) -> dict[str, float]:
    """Full pipeline against bare arq, alternating, `repeats` times each; medians and ratios."""
    llm_url = bench.start_stub(chunks=40)
    full: list[Throughput] = []
    bare: list[Throughput] = []
    for index in range(repeats):
        order = (bare, full) if index % 2 == 0 else (full, bare)
        for runs in order:
            run = bare_throughput if runs is bare else plangate_throughput
            runs.append(await run(bench, llm_url, jobs, concurrency))
    full_jobs, bare_jobs = median([r.jobs_s for r in full]), median([r.jobs_s for r in bare])
    full_cpu, bare_cpu = median([r.cpu_ms_per_job for r in full]), median([r.cpu_ms_per_job for r in bare])
    return {
        "overhead.plangate_jobs_s": full_jobs,
        "overhead.bare_jobs_s": bare_jobs,
        "overhead.jobs_ratio": full_jobs / bare_jobs,
        "overhead.plangate_cpu_ms": full_cpu,
        "overhead.bare_cpu_ms": bare_cpu,
        "overhead.cpu_ratio": full_cpu / bare_cpu,
        "overhead.plangate_stub_cpu_ms": median([r.stub_cpu_ms for r in full]),
        "overhead.bare_stub_cpu_ms": median([r.stub_cpu_ms for r in bare]),
        "overhead.plangate_redis_cpu_ms": median([r.redis_cpu_ms for r in full]),
        "overhead.bare_redis_cpu_ms": median([r.redis_cpu_ms for r in bare]),
    }


async def _sample_lag(
    bench: Bench, prefix: str, samples: list[tuple[float, int]], stop: asyncio.Event
) -> None:
    redis = bench.redis()
    try:
        while not stop.is_set():
            samples.append((time.time(), await redis.xlen(Keys(prefix).ledger_stream())))
            await asyncio.sleep(_LAG_SAMPLE_S)
    finally:
        await redis.aclose()


async def scale_once(
    bench: Bench, llm_url: str, workers: int, concurrency: int, latency: float, duration: float
) -> dict[str, float]:
    """Offer W*C/latency jobs/s for `duration` s; achieved jobs/s, queue wait, ledger lag."""
    prefix = bench.prefix()
    procs = await bench.start_workers(workers, prefix, llm_url, concurrency)
    client = client_for(bench.redis_url, prefix)
    redis = bench.redis()
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_lag(bench, prefix, samples, stop))
    ideal = workers * concurrency / latency
    try:
        t0 = time.time()
        submitted = await submit_at_rate(client, ideal, duration)
        await wait_queue_empty(redis, Keys(prefix).queue(), timeout=3 * duration + 60)
        stop.set()
        await sampler
        rows = await job_times(redis, prefix, [job_id for job_id, _ in submitted])
    finally:
        stop.set()
        await client.aclose()
        await redis.aclose()
        for proc in procs:
            bench.procs.stop(proc)
    # Steady state: the jobs that finished after the first wave could, until submitting stopped.
    start, end = t0 + latency + 0.5, t0 + duration
    finished = [r["finished_at"] for r in rows if r["finished_at"]]
    achieved = sum(start <= f <= end for f in finished) / max(0.5, end - start)
    waits = [r["started_at"] - r["submitted_at"] for r in rows if r["started_at"] and r["submitted_at"]]
    service = [r["finished_at"] - r["started_at"] for r in rows if r["finished_at"] and r["started_at"]]
    half = t0 + duration / 2
    first = max((lag for t, lag in samples if t0 <= t < half), default=0)
    second = max((lag for t, lag in samples if half <= t <= end), default=0)
    return {
        "jobs_s": achieved,
        "ideal_jobs_s": ideal,
        "ratio": achieved / ideal,
        "wait_p50_ms": percentile(waits, 50) * 1000,
        "wait_p99_ms": percentile(waits, 99) * 1000,
        "service_p50_ms": percentile(service, 50) * 1000,
        "lag_max": float(max((lag for _, lag in samples), default=0)),
        "lag_first_half": float(first),
        "lag_second_half": float(second),
        "ok_jobs": float(sum(r["state"] == "done" for r in rows)),
        "jobs": float(len(rows)),
    }


async def scale(
    bench: Bench,
    counts: list[int],
    concurrency: int,
    first_token: float,
    stream: float,
    duration: float,
    repeats: int,
) -> dict[str, float]:
    """scale_once for each worker count, `repeats` times; medians."""
    llm_url = bench.start_stub(chunks=40, first_token_s=first_token, stream_s=stream)
    out: dict[str, float] = {}
    for workers in counts:
        runs = [
            await scale_once(bench, llm_url, workers, concurrency, first_token + stream, duration)
            for _ in range(repeats)
        ]
        for name in runs[0]:
            out[f"scale.w{workers}.{name}"] = median([r[name] for r in runs])
    return out


async def _redis_commands(bench: Bench) -> int:
    redis = bench.redis()
    try:
        return int((await redis.info("stats"))["total_commands_processed"])
    finally:
        await redis.aclose()


async def pickup(
    bench: Bench, probes: int, load_rate: float, load_s: float, concurrency: int, idle_window_s: float
) -> dict[str, float]:
    """Submit -> PREFLIGHT start on an idle worker (one job at a time, at random phases of arq's poll) and
    under an open-loop load; plus Redis commands/s of the idle worker (own Redis server only)."""
    llm_url = bench.start_stub(chunks=40)
    prefix = bench.prefix()
    [proc] = await bench.start_workers(1, prefix, llm_url, concurrency)
    client = client_for(bench.redis_url, prefix)
    redis = bench.redis()
    out: dict[str, float] = {}
    try:
        await asyncio.sleep(1.0)
        if bench.own_redis:
            before = await _redis_commands(bench)
            await asyncio.sleep(idle_window_s)
            after = await _redis_commands(bench)
            out["pickup.idle_redis_cmds_s"] = (after - before - 1) / idle_window_s
        idle: list[float] = []
        for number in range(probes):
            await asyncio.sleep(random.uniform(0.05, 0.55))
            job_id = await client.submit(plan_request(number))
            await client.wait(job_id, timeout=30)
            [row] = await job_times(redis, prefix, [job_id])
            idle.append(row["started_at"] - row["submitted_at"])
        submitted = await submit_at_rate(client, load_rate, load_s)
        await wait_queue_empty(redis, Keys(prefix).queue(), timeout=60 + load_s)
        rows = await job_times(redis, prefix, [job_id for job_id, _ in submitted])
        loaded = [r["started_at"] - r["submitted_at"] for r in rows if r["started_at"]]
    finally:
        await client.aclose()
        await redis.aclose()
        bench.procs.stop(proc)
    out.update(
        {
            "pickup.idle_p50_ms": percentile(idle, 50) * 1000,
            "pickup.idle_p99_ms": percentile(idle, 99) * 1000,
            "pickup.load_rate": load_rate,
            "pickup.load_p50_ms": percentile(loaded, 50) * 1000,
            "pickup.load_p99_ms": percentile(loaded, 99) * 1000,
        }
    )
    return out


async def memory(bench: Bench, in_flight: int, first_token: float, stream: float) -> dict[str, Any]:
    """Worker RSS idle, and its peak with `in_flight` jobs streaming at once (concurrency = in_flight)."""
    llm_url = bench.start_stub(chunks=40, first_token_s=first_token, stream_s=stream)
    prefix = bench.prefix()
    [proc] = await bench.start_workers(1, prefix, llm_url, in_flight)
    client = client_for(bench.redis_url, prefix)
    redis = bench.redis()
    try:
        await asyncio.sleep(1.0)
        idle = rss_mib(proc.pid)
        await submit_many(client, in_flight)
        peak, most = idle, 0
        deadline = time.monotonic() + first_token + stream
        while time.monotonic() < deadline:
            running = int(await redis.zcard(Keys(prefix).running()))
            most = max(most, running)
            peak = max(peak, rss_mib(proc.pid))
            await asyncio.sleep(0.1)
        await wait_queue_empty(redis, Keys(prefix).queue(), timeout=60 + stream)
    finally:
        await client.aclose()
        await redis.aclose()
        bench.procs.stop(proc)
    return {"memory.idle_mib": idle, "memory.peak_mib": peak, "memory.in_flight": float(most)}
