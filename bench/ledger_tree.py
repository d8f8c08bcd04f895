"""The Merkle tree's cost and the proofs' size, for issue 16 (`python -m bench.ledger_tree`).

1. Writer throughput with the tree on and off: the store's write path (decode the stream entries, chain
   rows, projections, search rows, the tree, COMMIT: what the ledger writer does per batch of 1,000),
   draining the same backlog of full `done` events into fresh files, alternating on/off, medians.
   `--baseline-src DIR` adds the code in DIR (e.g. the main branch's checkout, without the tree, the guard
   or the payload digest) as a third variant, run in a subprocess with DIR first on sys.path.
2. A large ledger (`--rows`, default 1,000,000 small rows, written in batches through the same path, with
   its checkpoint signed as the writer does), then `prove` for one job and `verify-bundle` of its bundle:
   the median time to check the bundle with the public key alone, and the proof's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DRAIN_EVENTS = 20_000
BATCH = 1_000


def drain_rate(variant: str, events: int) -> tuple[float, float]:
    """(events per wall-clock second, events per CPU second) of the store's write path draining `events`
    done events into a fresh file. The insert runs in this thread, so the CPU rate leaves out the waits
    for other processes on a shared machine (and the fsyncs)."""
    import inspect

    from ledger.sqlite_store import insert_batch_sync

    has_tree = "merkle" in inspect.signature(insert_batch_sync).parameters
    assert has_tree == (variant != "baseline"), f"{variant} imported the wrong code"
    from bench.inproc import backlog_event
    from ledger import migrations
    from ledger.events import decode_entry
    from ledger.sqlite_store import connect_writer
    from plangate_base import codec
    from plangate_base.vocabulary import LEDGER_STREAM_FIELD
    from worker.llm_stub.server import answer_text

    output = json.loads(
        answer_text([{"role": "user", "content": "Plan a rollout, then a rollback"}], "scripted")
    )
    raws = [codec.dumps(backlog_event(n, "done", output)) for n in range(events)]
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "ledger.db"
        migrations.migrate_file(path)
        conn = connect_writer(path)
        insert = _inserter(variant)
        start, cpu = time.perf_counter(), time.process_time()
        for first in range(0, events, BATCH):
            batch = [
                decode_entry(f"{n}-0", {LEDGER_STREAM_FIELD: raws[n]})[0] for n in range(first, first + BATCH)
            ]
            insert(conn, batch)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        conn.close()
    return events / elapsed, events / cpu


def _inserter(variant: str) -> Callable[[sqlite3.Connection, list[dict[str, Any]]], int]:
    """A variant's batch insert: the store's own path, with the tree on or off (or the baseline's code)."""
    from ledger.sqlite_store import insert_batch_sync

    if variant == "baseline":
        return insert_batch_sync
    merkle = variant == "tree_on"
    return lambda conn, batch: insert_batch_sync(conn, batch, merkle=merkle)


def run_variant(variant: str, events: int, baseline_src: str | None) -> tuple[float, float]:
    """One drain in a fresh interpreter (the baseline's with its own code first on the path)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (baseline_src if variant == "baseline" else None, here) if p
    )
    # Run as a script from a scratch directory: neither the script's directory nor the working directory
    # holds a `ledger` package, so the one on PYTHONPATH (the baseline's, or this checkout's) is imported.
    script = [sys.executable, str(Path(__file__).resolve()), "--drain", variant, "--events", str(events)]
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(script, env=env, cwd=scratch, capture_output=True, text=True, check=True)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


async def build_large(path: Path, rows: int, key: Ed25519PrivateKey) -> None:
    """`rows` small rows (a submitted and a done event per job, short payloads) and a signed checkpoint."""
    from ledger import migrations
    from ledger.anchors import Anchorer
    from ledger.sqlite_store import LedgerStore, connect_writer, insert_batch_sync
    from plangate_base.vocabulary import EventKind
    from worker.ledger_events import ledger_event

    migrations.migrate_file(path)
    conn = connect_writer(path)
    conn.execute("PRAGMA synchronous = NORMAL")  # (building the fixture only: the writer's is FULL)
    for first in range(0, rows, 5_000):
        batch = []
        for n in range(first, min(rows, first + 5_000)):
            kind = EventKind.SUBMITTED if n % 2 == 0 else EventKind.DONE
            batch.append(
                ledger_event(
                    kind, job_id=f"job-{n // 2}", agent_id="agent-a", tenant_id="t", payload={"n": n}
                )
            )
        insert_batch_sync(conn, batch)
    conn.close()
    store = await LedgerStore.open(path)
    try:
        await Anchorer(store, key).maybe(force=True)
    finally:
        await store.close()


def bundle_figures(path: Path, key: Ed25519PrivateKey, job: str, repeats: int) -> dict[str, float]:
    from ledger.bundle_check import verify_bundle
    from ledger.proofs import prove_job
    from plangate_base import codec

    start = time.perf_counter()
    bundle = prove_job(path, job)
    prove_s = time.perf_counter() - start
    text = codec.dumps(bundle)
    public = key.public_key()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = verify_bundle(codec.loads(text), public)
        times.append(time.perf_counter() - start)
        assert report.ok, report.problem
    proof_bytes = [len(e["proof"]) * 32 for e in bundle["rows"]]
    cli_s = _cli_verify_bundle_s(text, key, repeats=5)
    return {
        "cli_verify_bundle_cpu_s_median": cli_s[0],
        "cli_python_pass_cpu_s_median": cli_s[1],
        "rows_in_bundle": len(bundle["rows"]),
        "proof_hashes_per_row": len(bundle["rows"][0]["proof"]),
        "proof_bytes_per_row_raw": proof_bytes[0],
        "proof_bytes_per_row_base64_json": len(codec.dumps(bundle["rows"][0]["proof"])),
        "bundle_bytes": len(text),
        "prove_ms": prove_s * 1000,
        "verify_bundle_ms_median": statistics.median(times) * 1000,
    }


def _cli_verify_bundle_s(text: str, key: Ed25519PrivateKey, repeats: int) -> tuple[float, float]:
    """CPU seconds (user + system, of the finished child) of `plangate ledger verify-bundle` as an auditor
    runs it (a fresh interpreter, no settings, no Redis), and of `python -c pass` for the interpreter's own
    start, medians: on a shared machine the wall clock mostly measures the other processes."""
    import resource

    from ledger.signing import public_pem

    with tempfile.TemporaryDirectory() as scratch:
        bundle, pem = Path(scratch) / "job.json", Path(scratch) / "ledger.pub"
        bundle.write_text(text)
        pem.write_bytes(public_pem(key.public_key()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
        cmd = [
            sys.executable,
            "-m",
            "worker.cli",
            "ledger",
            "verify-bundle",
            str(bundle),
            "--public-key",
            str(pem),
        ]
        runs: dict[str, list[float]] = {"cli": [], "pass": []}
        for _ in range(repeats):
            for name, args in (("cli", cmd), ("pass", [sys.executable, "-c", "pass"])):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(args, env=env, check=True, capture_output=True, cwd=scratch)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                runs[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(runs["cli"]), statistics.median(runs["pass"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=DRAIN_EVENTS, help="events per drain")
    parser.add_argument("--repeats", type=int, default=3, help="drains per variant (alternating)")
    parser.add_argument("--baseline-src", help="a checkout of the code before the tree, as a third variant")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large ledger (0: skip)")
    parser.add_argument("--workdir", help="where the large ledger goes (default a temporary directory)")
    parser.add_argument("--drain", choices=("tree_on", "tree_off", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:  # one drain, in the subprocess run_variant starts
        print(*drain_rate(args.drain, args.events))
        return
    variants = ["tree_on", "tree_off"] + (["baseline"] if args.baseline_src else [])
    rates: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            rates[variant].append(run_variant(variant, args.events, args.baseline_src))
    result: dict[str, object] = {}
    for variant, runs in rates.items():
        result[f"{variant}_events_s"] = statistics.median(r[0] for r in runs)
        result[f"{variant}_events_cpu_s"] = statistics.median(r[1] for r in runs)
    for other in [v for v in variants if v != "tree_on"]:
        for unit in ("events_s", "events_cpu_s"):
            on, off = result[f"tree_on_{unit}"], result[f"{other}_{unit}"]
            result[f"tree_on_over_{other}_{unit}"] = on / off  # type: ignore[operator]
    result["runs"] = rates
    print(json.dumps(result), flush=True)
    if args.rows:
        with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
            path = Path(workdir) / "large.db"
            key = Ed25519PrivateKey.generate()
            start = time.perf_counter()
            asyncio.run(build_large(path, args.rows, key))
            built_s = time.perf_counter() - start
            figures = bundle_figures(path, key, f"job-{args.rows // 4}", repeats=20)
            figures.update(rows=args.rows, build_s=built_s, file_mb=path.stat().st_size / 2**20)
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
