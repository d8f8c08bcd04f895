"""`python -m bench`: run the benchmarks and print the table (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import cli_startup, fair_runs, inproc, webhook_latency, worker_runs
from bench.infra import Bench
from bench.report import Row, as_json, render
from worker.log_setup import configure_logging

SECTIONS = ("overhead", "streaming", "scale", "pickup", "ledger", "memory", "startup", "webhooks", "fair")


@dataclass(frozen=True)
class Plan:
    """The sizes of one session (full or quick)."""

    jobs: int = 2000
    concurrency: int = 50
    repeats: int = 3
    stream_calls: int = 100
    stream_warmup: int = 5
    scale_workers: tuple[int, ...] = (1, 2, 4)
    scale_concurrency: int = 100
    first_token_s: float = 0.2
    stream_s: float = 2.0
    scale_duration_s: float = 12.0
    scale_repeats: int = 2
    probes: int = 30
    load_s: float = 5.0
    idle_window_s: float = 5.0
    ledger_events: int = 30_000  # per drain; `repeats` drains of each mix, alternating
    in_flight: int = 500
    memory_stream_s: float = 8.0
    startup_runs: int = 15
    webhook_modes: tuple[str, ...] = (webhook_latency.IN_WORKER, webhook_latency.OWN_PROCESS)
    loads: tuple[str, ...] = ("c40", "c1")  # the overhead section's endpoints: 40 chunks, and 1 (ceiling)


QUICK = Plan(
    jobs=200,
    repeats=1,
    stream_calls=8,
    stream_warmup=2,
    scale_workers=(1, 2),
    scale_concurrency=20,
    first_token_s=0.1,
    stream_s=0.5,
    scale_duration_s=3.0,
    scale_repeats=1,
    probes=6,
    load_s=1.5,
    idle_window_s=2.0,
    ledger_events=5_000,
    in_flight=100,
    memory_stream_s=1.5,
    startup_runs=2,
    webhook_modes=(webhook_latency.IN_WORKER,),
    loads=("c40",),
)


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _peer_rows(n: dict[str, float], plan: Plan, load: str, chunks: int) -> list[Row]:
    """One load of the overhead section: each system's jobs/s and CPU per job, plangate against the best
    peer (and, at 40 chunks, against bare arq as before)."""
    what = "40 chunks, no latency" if chunks == 40 else f"{chunks} chunk: the queue's own cost"
    section = f"{'overhead' if chunks == 40 else 'ceiling'} ({plan.jobs} jobs, C={plan.concurrency}, {what})"
    rows: list[Row] = []
    for system in worker_runs.SYSTEMS:
        key = f"peers.{load}.{system}"
        label = worker_runs.LABELS.get(system, "plangate pipeline")
        value = (
            f"{n[f'{key}.jobs_s']:.0f} jobs/s; {_ms(n[f'{key}.cpu_ms'])} "
            f"(endpoint {n[f'{key}.stub_cpu_ms']:.1f}, Redis {n[f'{key}.redis_cpu_ms']:.1f} ms)"
        )
        rows.append(Row(section, f"{label}: jobs/s; worker CPU per job", value))
    fastest = worker_runs.PEERS[int(n[f"peers.{load}.fastest"])]
    cheapest = worker_runs.PEERS[int(n[f"peers.{load}.cheapest"])]
    jobs_ratio, cpu_ratio = n[f"peers.{load}.jobs_ratio"], n[f"peers.{load}.cpu_ratio"]
    cpu = n[f"peers.{load}.plangate.cpu_ms"]
    targets = chunks == 40
    rows += [
        Row(
            section,
            f"plangate jobs/s of the fastest peer ({worker_runs.LABELS[fastest]})",
            f"{jobs_ratio:.2f}",
            ">= 0.9" if targets else "",
            jobs_ratio >= 0.9 if targets else None,
        ),
        Row(
            section,
            f"plangate CPU per job of the cheapest peer ({worker_runs.LABELS[cheapest]})",
            f"{cpu_ratio:.2f}",
            "<= 1.2" if targets else "",
            cpu_ratio <= 1.2 if targets else None,
        ),
    ]
    if targets:
        rows.append(Row(section, "plangate worker CPU per job", _ms(cpu), "<= 5 ms", cpu <= 5.0))
        jobs, cpu_bare = n["overhead.jobs_ratio"], n["overhead.cpu_ratio"]
        rows.append(Row(section, "plangate / bare arq: jobs/s", f"{jobs:.2f}", ">= 0.85", jobs >= 0.85))
        rows.append(
            Row(section, "plangate / bare arq: CPU per job", f"{cpu_bare:.2f}", "<= 1.2", cpu_bare <= 1.2)
        )
    return rows


def _rows(n: dict[str, float], plan: Plan) -> list[Row]:
    rows: list[Row] = []
    for load, chunks in worker_runs.LOADS.items():
        if f"peers.{load}.jobs_ratio" in n:
            rows += _peer_rows(n, plan, load, chunks)
    if "streaming.ratio" in n:
        section = "streaming (CPU µs per chunk)"
        names = {
            "sdk": "openai SDK loop",
            "plangate": "plangate reader",
            "plangate_stdlib_json": "plangate, stdlib json",
        }
        for variant, label in names.items():
            if f"streaming.{variant}.marginal_us" not in n:
                continue
            per = ", ".join(
                f"{n[f'streaming.{variant}.us_per_chunk_{c}']:.1f} @{c}" for c in inproc.CHUNK_COUNTS
            )
            rows.append(Row(section, f"{label}: per chunk (all-in)", per))
            rows.append(
                Row(
                    section, f"{label}: marginal per chunk", f"{n[f'streaming.{variant}.marginal_us']:.1f} µs"
                )
            )
        ratio = n["streaming.ratio"]
        rows.append(Row(section, "plangate / SDK (marginal)", f"{ratio:.2f}", "<= 0.33", ratio <= 1 / 3))
    counts = [w for w in plan.scale_workers if f"scale.w{w}.ratio" in n]
    if counts:
        latency = plan.first_token_s + plan.stream_s
        section = (
            f"scale (C={plan.scale_concurrency}, {plan.first_token_s:g} s TTFT + {plan.stream_s:g} s stream)"
        )
        for w in counts:
            ratio = n[f"scale.w{w}.ratio"]
            value = f"{n[f'scale.w{w}.jobs_s']:.1f} of {n[f'scale.w{w}.ideal_jobs_s']:.1f} = {ratio:.2f}"
            target, met = (">= 0.8", ratio >= 0.8) if w <= 2 else ("", None)
            rows.append(Row(section, f"W={w}: jobs/s of ideal W·C/{latency:g}s", value, target, met))
            waits = f"{_ms(n[f'scale.w{w}.wait_p50_ms'])} / {_ms(n[f'scale.w{w}.wait_p99_ms'])}"
            rows.append(Row(section, f"W={w}: queue wait p50 / p99", waits))
            rows.append(
                Row(
                    section,
                    f"W={w}: run time (PREFLIGHT to RECORD) p50",
                    _ms(n[f"scale.w{w}.service_p50_ms"]),
                )
            )
        if 1 in counts and 2 in counts:
            speedup = n["scale.w2.jobs_s"] / n["scale.w1.jobs_s"]
            rows.append(Row(section, "speed-up 1 -> 2 workers", f"{speedup:.2f}", ">= 1.8", speedup >= 1.8))
    if "pickup.idle_p50_ms" in n:
        section = "pickup (submit -> PREFLIGHT)"
        p50 = n["pickup.idle_p50_ms"]
        rows.append(Row(section, "idle worker p50", _ms(p50), "<= 20 ms", p50 <= 20))
        rows.append(Row(section, "idle worker p99", _ms(n["pickup.idle_p99_ms"])))
        load = f"{_ms(n['pickup.load_p50_ms'])} / {_ms(n['pickup.load_p99_ms'])}"
        rows.append(Row(section, f"under load ({n['pickup.load_rate']:.0f} jobs/s) p50 / p99", load))
        if "pickup.idle_redis_cmds_s" in n:
            cmds = n["pickup.idle_redis_cmds_s"]
            rows.append(
                Row(section, "Redis commands/s of an idle worker", f"{cmds:.1f}", "<= 20", cmds <= 20)
            )
    if "ledger.events_s" in n:
        drains = f"{n['ledger.events']:.0f} events a drain, median of"
        for mix, key, label in (
            ("jobs", "ledger.jobs_events_s", "writer events/s, the pipeline's mix (submitted + terminal)"),
            ("done", "ledger.events_s", "writer events/s, every event a terminal event with a full plan"),
        ):
            runs = sorted(v for k, v in n.items() if k.startswith(f"ledger.{mix}_run"))
            each = ", ".join(f"{r:.0f}" for r in runs)
            value = f"{n[key]:.0f} ({drains} {each})" if runs else f"{n[key]:.0f}"
            rows.append(Row("ledger", label, value, ">= 10000", n[key] >= 10_000))
            if f"ledger.{mix}_plain_rows_s" in n:
                plain, ratio = n[f"ledger.{mix}_plain_rows_s"], n[f"ledger.{mix}_plain_ratio"]
                rows.append(
                    Row(
                        "ledger",
                        f"{mix} mix: writer of plain executemany of its events alone ({plain:.0f} rows/s)",
                        f"{ratio:.2f}",
                    )
                )
            if f"ledger.{mix}_plain_all_rows_s" in n:
                every, ratio = n[f"ledger.{mix}_plain_all_rows_s"], n[f"ledger.{mix}_plain_all_ratio"]
                rows.append(
                    Row(
                        "ledger",
                        f"{mix} mix: writer of plain executemany of the rows of every table it fills "
                        f"(events, read models, tree: {every:.0f} events/s)",
                        f"{ratio:.2f}",
                        ">= 0.6",
                        ratio >= 0.6,
                    )
                )
    if counts:  # the lag is sampled during the scale runs
        for w in counts:
            first, second = n[f"scale.w{w}.lag_first_half"], n[f"scale.w{w}.lag_second_half"]
            grows = second > 2 * first + 100
            value = f"max {n[f'scale.w{w}.lag_max']:.0f}; 1st half {first:.0f}, 2nd half {second:.0f}"
            rows.append(
                Row("ledger", f"lag (entries) in the scale run, W={w}", value, "no growth", not grows)
            )
    if "memory.peak_mib" in n:
        section = "memory (worker RSS)"
        rows.append(Row(section, "idle", f"{n['memory.idle_mib']:.0f} MiB"))
        peak = n["memory.peak_mib"]
        label = f"{n['memory.in_flight']:.0f} jobs in flight (of {plan.in_flight})"
        target, met = ("<= 120 MiB", peak <= 120) if plan.in_flight >= 500 else ("", None)
        rows.append(Row(section, label, f"{peak:.0f} MiB", target, met))
    if "startup.help_s" in n:
        rows += cli_startup.rows(n)
    if "webhooks.plain_jobs_s" in n:
        rows += webhook_latency.rows(n, plan.first_token_s + plan.stream_s)
    if "fair.flood.fair_p99_ms" in n:
        rows += fair_runs.rows(n, fair_runs.plan_of(plan == QUICK))
    return rows


class _SectionTimer:
    """Says on stderr how long each section took (where a slow quick run spends its time)."""

    def __init__(self) -> None:
        self._current: tuple[str, float] | None = None

    def start(self, section: str) -> None:
        self.stop()
        self._current = (section, time.monotonic())

    def stop(self) -> None:
        if self._current is not None:
            section, started = self._current
            print(f"bench: {section} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        self._current = None


def plan_of(args: argparse.Namespace) -> Plan:
    """The sizes the command line asks for."""
    plan: Plan = QUICK if args.quick else Plan()
    if args.jobs:
        plan = Plan(**{**plan.__dict__, "jobs": args.jobs})
    if args.concurrency:
        plan = Plan(**{**plan.__dict__, "concurrency": args.concurrency})
    if args.repeats:
        plan = Plan(**{**plan.__dict__, "repeats": args.repeats, "scale_repeats": args.repeats})
    return plan


async def run(args: argparse.Namespace) -> dict[str, float]:
    """Run the chosen sections; the raw numbers."""
    plan = plan_of(args)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    bench = Bench.open(args.redis_url)
    n: dict[str, float] = {}
    timer = _SectionTimer()
    try:
        # First, while this process is fresh: the drain measures the writer as `plangate ledger serve`
        # runs it, a process doing nothing else (the in-worker writer shows as the scale runs' lag).
        if "ledger" in only:
            timer.start("ledger")
            n |= await inproc.ledger_repeated(bench, plan.ledger_events, plan.repeats)
        if "overhead" in only:
            timer.start("overhead")
            n |= await worker_runs.overhead(bench, plan.jobs, plan.concurrency, plan.repeats, plan.loads)
        if "streaming" in only:
            timer.start("streaming")
            n |= await inproc.streaming(bench, plan.stream_calls, max(3, plan.repeats), plan.stream_warmup)
        if "scale" in only:
            timer.start("scale")
            n |= await worker_runs.scale(
                bench,
                list(args.workers or plan.scale_workers),
                plan.scale_concurrency,
                plan.first_token_s,
                plan.stream_s,
                plan.scale_duration_s,
                plan.scale_repeats,
            )
        if "pickup" in only:
            timer.start("pickup")
            rate = 0.5 * n.get("overhead.plangate_jobs_s", 80.0)
            n |= await worker_runs.pickup(
                bench, plan.probes, rate, plan.load_s, plan.concurrency, plan.idle_window_s
            )
        if "memory" in only:
            timer.start("memory")
            n |= await worker_runs.memory(bench, plan.in_flight, plan.first_token_s, plan.memory_stream_s)
        if "startup" in only:
            timer.start("startup")
            n |= await cli_startup.startup(bench, plan.startup_runs)
        if "webhooks" in only:
            timer.start("webhooks")
            n |= await webhook_latency.webhooks(
                bench,
                1,
                plan.scale_concurrency,
                plan.first_token_s,
                plan.stream_s,
                plan.scale_duration_s,
                plan.scale_repeats,
                plan.webhook_modes,
            )
        if "fair" in only:
            timer.start("fair")
            n |= await fair_runs.fair_section(bench, fair_runs.plan_of(args.quick))
    finally:
        timer.stop()
        await bench.close()
    return n


def main() -> None:
    """Parse the command line, run, print the table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "small sizes, about 70 s on 2 cores (what CI runs): no ceiling runs, no informational fair runs"
        ),
    )
    parser.add_argument(
        "--redis-url", help="use this Redis (give it a db index of its own); default: start one"
    )
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--jobs", type=int, help="jobs per overhead run (default 2000, quick 300)")
    parser.add_argument(
        "--concurrency", type=int, help="jobs per worker in the overhead and pickup runs (default 50)"
    )
    parser.add_argument("--repeats", type=int, help="repeats of the overhead and scale runs")
    parser.add_argument(
        "--workers",
        type=lambda text: tuple(int(w) for w in text.split(",")),
        help="comma-separated worker counts of the scale section (default 1,2,4; quick 1,2)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows and raw numbers here")
    args = parser.parse_args()
    configure_logging("WARNING")
    started = time.monotonic()
    numbers = asyncio.run(run(args))
    plan = plan_of(args)
    command = "python -m bench " + shlex.join(sys.argv[1:])
    header = (
        f"`{command.strip()}` — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.monotonic() - started:.0f} s"
    )
    rows = _rows(numbers, plan)
    print(render(rows, header))
    if args.json:
        args.json.write_text(json.dumps(as_json(rows, numbers), indent=2))


if __name__ == "__main__":
    main()
