"""Benchmarks that run real worker processes: overhead against the peers (bare arq, SAQ, streaq) on the
40-chunk call and on a 1-chunk one (the queue's own cost), scale, pickup latency, memory."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from bench import peer_saq, peer_streaq
from bench.infra import Bench, cpu_seconds, job_times, rss_mib, wait_queue_empty
from bench.report import median, percentile
from bench.workload import (
    BareSubmitter,
    client_for,
    plan_request,
    submit_at_rate,
    submit_many,
    submit_peer_many,
)
from worker.keys import Keys

_LAG_SAMPLE_S = 0.25

# The systems of the overhead section, in the order of its first repeat; each later repeat starts one
# further along (rotation), so no system always runs first, in the freshest state of the machine.
SYSTEMS = ("bare", "saq", "streaq", "plangate")
PEERS = SYSTEMS[:-1]
LABELS = {"bare": "bare arq + openai SDK", "saq": "SAQ + raw SSE", "streaq": "streaq + raw SSE"}
# The peers' worker module and submitter, by name.
PEER_MODULES: dict[str, tuple[Any, Any]] = {
    "saq": (peer_saq, peer_saq.SaqSubmitter),
    "streaq": (peer_streaq, peer_streaq.StreaqSubmitter),
}
# The endpoint's chunk count of each load: the 40-chunk call, and a 1-chunk answer (the queue's own cost).
LOADS = {"c40": 40, "c1": 1}


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


async def peer_throughput(bench: Bench, system: str, llm_url: str, jobs: int, concurrency: int) -> Throughput:
    """N peer jobs (the same call, bench/peer_call.py) through one SAQ or streaq worker."""
    module, submitter_class = PEER_MODULES[system]
    queue = f"{bench.prefix()}{system}"
    bench.key_patterns += module.key_patterns(queue)
    proc = await bench.start_peer_worker(module.__name__, queue, llm_url, concurrency)
    submitter = await submitter_class.connect(bench.redis_url, queue)
    try:
        await asyncio.sleep(0.5)
        cpu0, t0, side0 = cpu_seconds(proc.pid), time.time(), bench.side_cpu(llm_url)
        await submit_peer_many(submitter.enqueue, jobs, llm_url)
        deadline = time.monotonic() + 60 + jobs / 10
        while await submitter.remaining():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system}: {await submitter.remaining()} jobs left")
            await asyncio.sleep(0.02)
        t1 = time.time()
        cpu1 = cpu_seconds(proc.pid)
        if failed := await submitter.unsuccessful():
            raise RuntimeError(f"{system}: {failed} of {jobs} jobs did not end with an answer")
        return _throughput(bench, llm_url, jobs, t1 - t0, cpu1 - cpu0, side0)
    finally:
        await submitter.aclose()
        bench.procs.stop(proc)


async def _system_throughput(
    bench: Bench, system: str, llm_url: str, jobs: int, concurrency: int
) -> Throughput:
    if system == "plangate":
        return await plangate_throughput(bench, llm_url, jobs, concurrency)
    if system == "bare":
        return await bare_throughput(bench, llm_url, jobs, concurrency)
    return await peer_throughput(bench, system, llm_url, jobs, concurrency)


def _load_numbers(load: str, runs: dict[str, list[Throughput]]) -> dict[str, float]:
    """Medians of each system under one load, and plangate against the best peer on each count."""
    out: dict[str, float] = {}
    for system, samples in runs.items():
        for name, values in (
            ("jobs_s", [r.jobs_s for r in samples]),
            ("cpu_ms", [r.cpu_ms_per_job for r in samples]),
            ("stub_cpu_ms", [r.stub_cpu_ms for r in samples]),
            ("redis_cpu_ms", [r.redis_cpu_ms for r in samples]),
        ):
            out[f"peers.{load}.{system}.{name}"] = median(values)
    fastest = max(PEERS, key=lambda p: out[f"peers.{load}.{p}.jobs_s"])
    cheapest = min(PEERS, key=lambda p: out[f"peers.{load}.{p}.cpu_ms"])
    out[f"peers.{load}.fastest"] = float(PEERS.index(fastest))
    out[f"peers.{load}.cheapest"] = float(PEERS.index(cheapest))
    mine = f"peers.{load}.plangate"
    out[f"peers.{load}.jobs_ratio"] = out[f"{mine}.jobs_s"] / out[f"peers.{load}.{fastest}.jobs_s"]
    out[f"peers.{load}.cpu_ratio"] = out[f"{mine}.cpu_ms"] / out[f"peers.{load}.{cheapest}.cpu_ms"]
    return out


async def overhead(
    bench: Bench, jobs: int, concurrency: int, repeats: int, loads: tuple[str, ...] = tuple(LOADS)
) -> dict[str, float]:
    """The full pipeline and the three peers under each load, `repeats` times each in a rotating order;
    medians, and ratios against the best peer (and, for continuity, against bare arq at 40 chunks)."""
    out: dict[str, float] = {}
    for load in loads:
        llm_url = bench.start_stub(chunks=LOADS[load])
        runs: dict[str, list[Throughput]] = {system: [] for system in SYSTEMS}
        for index in range(repeats):
            shift = index % len(SYSTEMS)
            for system in SYSTEMS[shift:] + SYSTEMS[:shift]:
                runs[system].append(await _system_throughput(bench, system, llm_url, jobs, concurrency))
        out |= _load_numbers(load, runs)
    if "c40" in loads:
        full, bare = "peers.c40.plangate", "peers.c40.bare"
        out |= {
            "overhead.plangate_jobs_s": out[f"{full}.jobs_s"],
            "overhead.bare_jobs_s": out[f"{bare}.jobs_s"],
            "overhead.jobs_ratio": out[f"{full}.jobs_s"] / out[f"{bare}.jobs_s"],
            "overhead.plangate_cpu_ms": out[f"{full}.cpu_ms"],
            "overhead.bare_cpu_ms": out[f"{bare}.cpu_ms"],
            "overhead.cpu_ratio": out[f"{full}.cpu_ms"] / out[f"{bare}.cpu_ms"],
        }
    return out


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
