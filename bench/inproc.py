"""Benchmarks measured inside this process: the streaming loop per chunk, and the ledger writer's rate."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

from bench import ledger_baseline
from bench.infra import Bench
from bench.report import median
from bench.workload import plan_request
from governance.models import SEED_AGENT, PlanRequest
from plangate_base import codec
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, Decision, EventKind
from worker.heap import freeze_startup_objects
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.llm import sse
from worker.llm.modes import request_options
from worker.llm.planner import LLMPlanner
from worker.llm.stream import Progress
from worker.llm_stub.server import answer_text
from worker.prompt import build_messages
from worker.redis_conn import text_client
from worker.settings import Settings
from worker.worker_app import start_ledger_writer, stop_ledger_writer

CHUNK_COUNTS = (40, 400)


async def _sdk_call(
    client: openai.AsyncOpenAI, messages: list[dict[str, Any]], options: dict[str, Any]
) -> str:
    """The openai client's default streaming loop (what bench.bare_arq runs)."""
    stream = await client.chat.completions.create(
        model="scripted",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=2048,
        **options,
    )
    parts = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
    return "".join(parts)


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Process CPU seconds per call, over `calls` sequential calls."""
    cpu0 = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - cpu0) / calls


async def streaming(bench: Bench, calls: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """CPU µs per streamed chunk: the openai SDK's loop and plangate's reader, side by side, on the same
    answer split into 40 and 400 chunks. `marginal` is (cost at 400 - cost at 40) / 360: the cost of one
    more chunk, without the request's fixed cost."""
    messages = build_messages(SEED_AGENT, PlanRequest.model_validate(plan_request(0)))
    calls_of: dict[tuple[str, int], Callable[[], Awaitable[Any]]] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    for chunks in CHUNK_COUNTS:
        url = bench.start_stub(chunks=chunks)
        options = request_options(url, "json_schema")
        sdk = openai.AsyncOpenAI(base_url=url, api_key="bench-key-not-secret", max_retries=0)
        planner = LLMPlanner(Settings(llm_base_url=url, llm_api_key="bench-key-not-secret", model="scripted"))
        closers += [sdk.close, planner.aclose]

        def plangate_call(planner: LLMPlanner = planner) -> Awaitable[Any]:
            return planner.stream_once(messages, "scripted", "json_schema", Progress(lambda _: None))

        async def stdlib_call(call: Callable[[], Awaitable[Any]] = plangate_call) -> Any:
            fast, sse.load_event = sse.load_event, json.loads
            try:
                return await call()
            finally:
                sse.load_event = fast

        calls_of[("sdk", chunks)] = lambda sdk=sdk, options=options: _sdk_call(sdk, messages, options)
        calls_of[("plangate", chunks)] = plangate_call
        if sse.load_event is not json.loads:
            calls_of[("plangate_stdlib_json", chunks)] = stdlib_call
    try:
        for call in calls_of.values():
            for _ in range(warmup):
                await call()
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls_of}
        for _ in range(repeats):
            for key, call in calls_of.items():
                samples[key].append(await _cpu_per_call(call, calls))
    finally:
        for close in closers:
            await close()
    out: dict[str, float] = {}
    for variant in sorted({v for v, _ in calls_of}):
        per_call = {c: median(samples[(variant, c)]) for c in CHUNK_COUNTS}
        for chunks in CHUNK_COUNTS:
            out[f"streaming.{variant}.us_per_chunk_{chunks}"] = per_call[chunks] / chunks * 1e6
        low, high = CHUNK_COUNTS
        out[f"streaming.{variant}.marginal_us"] = (per_call[high] - per_call[low]) / (high - low) * 1e6
    out["streaming.ratio"] = out["streaming.plangate.marginal_us"] / out["streaming.sdk.marginal_us"]
    out["streaming.content_bytes"] = float(len(answer_text(messages, "scripted")))
    return out


async def ledger_repeated(bench: Bench, events: int, repeats: int) -> dict[str, float]:
    """`ledger` for both mixes, alternating, `repeats` times each; the medians (and each run's rate). After
    each drain, the same rows inserted with plain executemany (bench/ledger_baseline.py): the writer's
    physical limit, measured in the same run."""
    rates: dict[str, list[float]] = {"jobs": [], "done": []}
    plain: dict[str, list[float]] = {"jobs": [], "done": []}
    plain_all: dict[str, list[float]] = {"jobs": [], "done": []}
    batch = Settings().ledger_batch_size
    for index in range(repeats):
        for mix, runs in rates.items():
            rate, ledger_file = await ledger(bench, events, mix)
            rows = ledger_baseline.written_rows(ledger_file)
            target = ledger_file.with_name(f"plain-{index}-{ledger_file.name}")
            plain[mix].append(ledger_baseline.plain_insert_rate(rows, target, batch))
            tables = ledger_baseline.written_tables(ledger_file)
            every = ledger_file.with_name(f"plain-all-{index}-{ledger_file.name}")
            plain_all[mix].append(ledger_baseline.plain_insert_all_rate(tables, every, batch))
            runs.append(rate)
    out = {
        "ledger.jobs_events_s": median(rates["jobs"]),
        "ledger.events_s": median(rates["done"]),
        **{f"ledger.{mix}_run{i}": rate for mix, runs in rates.items() for i, rate in enumerate(runs)},
        "ledger.events": float(events),
    }
    for mix, key in (("jobs", "ledger.jobs_events_s"), ("done", "ledger.events_s")):
        out[f"ledger.{mix}_plain_rows_s"] = median(plain[mix])
        out[f"ledger.{mix}_plain_ratio"] = out[key] / out[f"ledger.{mix}_plain_rows_s"]
        out[f"ledger.{mix}_plain_all_rows_s"] = median(plain_all[mix])
        out[f"ledger.{mix}_plain_all_ratio"] = out[key] / out[f"ledger.{mix}_plain_all_rows_s"]
    return out


def backlog_event(number: int, mix: str, output: dict[str, Any]) -> dict[str, Any]:
    """Event `number` of a backlog: `done` = every event a terminal event with a full plan (the worst
    case); `jobs` = what the pipeline writes per job, its `submitted` event then its terminal event."""
    job_id = f"job-{number // 2 if mix == 'jobs' else number}"
    common = {"job_id": job_id, "agent_id": SEED_AGENT.agent_id, "tenant_id": "default"}
    if mix == "jobs" and number % 2 == 0:
        request = PlanRequest.model_validate(plan_request(number // 2))
        return ledger_event(
            EventKind.SUBMITTED, **common, payload=request.model_dump(mode="json", exclude_none=True)
        )
    return ledger_event(
        EventKind.DONE,
        **common,
        attempt=1,
        worker="bench",
        decision=Decision.EXECUTE.value,
        model="scripted",
        payload={"output": output},
    )


async def ledger(bench: Bench, events: int, mix: str = "done") -> tuple[float, Path]:
    """Events/s the ledger writer sustains draining a backlog of `events` events (see backlog_event), and
    the ledger file it wrote."""
    prefix = bench.prefix()
    ledger_file = bench.workdir / f"ledger-{prefix[:-1]}.db"
    settings = Settings(
        redis_url=bench.redis_url,
        key_prefix=prefix,
        ledger_path=ledger_file,
        ledger_signing_key=bench.workdir / "keys" / f"ledger-{prefix[:-1]}.key",
    )
    stream = Keys(prefix).ledger_stream()
    redis = text_client(bench.redis_url)
    output = json.loads(
        answer_text([{"role": "user", "content": "Plan a rollout, then a rollback"}], "scripted")
    )
    try:
        for start in range(0, events, 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for number in range(start, min(events, start + 1000)):
                    pipe.xadd(stream, {LEDGER_STREAM_FIELD: codec.dumps(backlog_event(number, mix, output))})
                await pipe.execute()
        freeze_startup_objects()  # as `plangate ledger serve` and `plangate worker` do once started
        writer, task = await start_ledger_writer(redis, settings)
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + 60 + events / 1000
        while writer.processed < events and time.monotonic() < deadline and not task.done():
            if first is None and writer.processed:
                first = (time.perf_counter(), writer.processed)
            await asyncio.sleep(0.005)
        end = time.perf_counter()
        done = writer.processed
        await stop_ledger_writer(writer, task)
    finally:
        await redis.aclose()
    if first is None or done <= first[1]:
        raise RuntimeError("the ledger writer did not write the backlog")
    return (done - first[1]) / (end - first[0]), ledger_file
