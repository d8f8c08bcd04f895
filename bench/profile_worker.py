"""Where one `plangate worker`'s CPU goes per job: py-spy samples of the worker process while it runs N jobs
of the overhead section's load (40 chunks, or 1), turned into milliseconds per job, with the Redis
commands and round trips each job costs.

    .venv/bin/pip install py-spy   # not a project dependency: a profiling tool
    python -m bench.profile_worker --chunks 40 --jobs 2000
    python -m bench.profile_worker --chunks 1 --jobs 2000 --top 30
    python -m bench.profile_worker --system saq     # a peer's worker, measured the same way

The jobs are queued first, then the worker starts (its start-up is amortised over N); CPU per job is the
worker's user+system time from /proc over the drain, and a function's ms per job is its share of the
samples times that. Round trips are Redis's `total_reads_processed` (one per request or pipeline a client
sends), commands its `commandstats` (a Lua script's commands included), both on the benchmark's own Redis
server, minus this driver's polls (one round trip each, four a second).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.infra import Bench, cpu_seconds
from bench.worker_runs import PEER_MODULES
from bench.workload import client_for, submit_many, submit_peer_many
from worker.keys import Keys

_POLL_S = 0.25
_OWN_CODE = ("worker/", "governance/", "ledger/", "plangate_base/")


def _frame_name(frame: str) -> str:
    """`fn (path/to/module.py:12)` -> `fn (module path relative to site-packages or the repo)`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", "/wt-peers/", "/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def collapse(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed stack) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return own, inclusive, total


async def _redis_counters(bench: Bench) -> tuple[int, Counter[str]]:
    redis = bench.redis()
    try:
        reads = int((await redis.info("stats"))["total_reads_processed"])
        stats = await redis.info("commandstats")
        return reads, Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    finally:
        await redis.aclose()


async def _queue_jobs(bench: Bench, system: str, llm_url: str, jobs: int) -> Callable[[], Awaitable[int]]:
    """Queue `jobs` jobs for `system` (no worker runs yet); a poll of how many are left (1 round trip)."""
    prefix = bench.prefix()
    if system == "plangate":
        client = client_for(bench.redis_url, prefix)
        await bench.keyless_seed_agent(prefix)
        await submit_many(client, jobs)
        await client.aclose()
        redis = bench.redis()
        keys = Keys(prefix)

        async def left() -> int:  # the queue, then the ledger stream the in-worker writer drains
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.queue()).xlen(keys.ledger_stream())
                return sum(await pipe.execute())

        bench.on_close.append(redis.aclose)
        return left
    module, submitter_class = PEER_MODULES[system]
    queue = f"{prefix}{system}"
    bench.key_patterns += module.key_patterns(queue)
    submitter = await submitter_class.connect(bench.redis_url, queue)
    bench.on_close.append(submitter.aclose)
    await submit_peer_many(submitter.enqueue, jobs, llm_url)
    return submitter.remaining


async def profile(
    system: str, chunks: int, jobs: int, concurrency: int, rate: int, out: Path
) -> dict[str, object]:
    """Run one worker of `system` under py-spy on `jobs` queued jobs; the raw numbers."""
    bench = Bench.open(None)
    try:
        llm_url = bench.start_stub(chunks=chunks)
        left = await _queue_jobs(bench, system, llm_url, jobs)
        prefix = bench.prefixes[-1]
        reads0, commands0 = await _redis_counters(bench)
        if system == "plangate":
            [proc] = await bench.start_workers(1, prefix, llm_url, concurrency)
        else:
            module = PEER_MODULES[system][0].__name__
            proc = await bench.start_peer_worker(module, f"{prefix}{system}", llm_url, concurrency)
        cpu0, t0 = cpu_seconds(proc.pid), time.time()
        spy_binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [spy_binary, "record", "--pid", str(proc.pid), "--format", "raw", "--function"]
        spy = bench.procs.start("py-spy", [*argv, "--nonblocking", "--rate", str(rate), "--output", str(out)])
        polls = 1
        while await left():
            polls += 1
            await asyncio.sleep(_POLL_S)
        t1, cpu1 = time.time(), cpu_seconds(proc.pid)
        reads1, commands1 = await _redis_counters(bench)
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        spy.wait(timeout=30)
        bench.procs.stop(proc)
    finally:
        await bench.close()
    commands1.subtract(commands0)
    commands1.subtract({"info": 2})
    return {
        "cpu_ms": (cpu1 - cpu0) * 1000 / jobs,
        "jobs_s": jobs / (t1 - t0),
        "round_trips": (reads1 - reads0 - polls - 2) / jobs,
        "commands": {k: v / jobs for k, v in commands1.most_common() if v > 0},
    }


def report(numbers: dict[str, object], raw: Path, top: int, system: str, chunks: int, jobs: int) -> str:
    """The profile as Markdown: the totals, then the top functions by own and by inclusive time."""
    own, inclusive, total = collapse(raw)
    cpu = float(numbers["cpu_ms"])  # type: ignore[arg-type]
    per = cpu / max(1, total)
    commands = numbers["commands"]
    assert isinstance(commands, dict)
    lines = [
        f"### one {system} worker, {jobs} jobs, {chunks}-chunk answers, C=50: {cpu:.2f} ms CPU per job, "
        f"{numbers['jobs_s']:.0f} jobs/s (under py-spy), {total} samples",
        "",
        f"Redis per job: {numbers['round_trips']:.1f} round trips, {sum(commands.values()):.1f} commands ("
        + ", ".join(f"{k} {v:.2f}" for k, v in commands.items())
        + ")",
        "",
        "| own time: function | ms/job | % |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {n * per:.3f} | {100 * n / total:.1f} |" for name, n in own.most_common(top)]
    lines += ["", "| inclusive time, plangate's code: function | ms/job | % |", "|---|---|---|"]
    ours = [(name, n) for name, n in inclusive.most_common() if any(m in name for m in _OWN_CODE)]
    lines += [f"| {name} | {n * per:.3f} | {100 * n / total:.1f} |" for name, n in ours[:top]]
    return "\n".join(lines)


def main() -> None:
    """Parse the command line, profile, print the Markdown."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--system", choices=("plangate", *PEER_MODULES), default="plangate")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    raw = args.raw or Path(f"/tmp/plangate-profile-{args.system}-{args.chunks}.txt")
    numbers = asyncio.run(profile(args.system, args.chunks, args.jobs, args.concurrency, args.rate, raw))
    print(report(numbers, raw, args.top, args.system, args.chunks, args.jobs))


if __name__ == "__main__":
    main()
