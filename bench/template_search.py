"""`python -m bench.template_search`: catalogue search over 10,000 published templates (target p50 <= 5 ms).

The templates are published the way `plangate templates publish` does (governance's model and hash, the
catalogue's rows and FTS5 index) into a fresh ledger file, their text drawn from a fixed vocabulary so
common words match thousands and rare ones a handful. Queries alternate between the catalogue's ranked
search (`ledger.catalogue.search`: bm25 with the column weights, the exact-name rule, the join to the
version rows, the filters) and the baseline measured in the same run: the bare FTS5 MATCH of the same
words with FTS5's own rank order and LIMIT, no join. The service's search (`TemplateCatalogue.search`:
the file opened, each hit's ratings and ledger figures) is timed too, for context.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.report import Row, median, percentile, render
from governance.templates import Template, builtin_template
from ledger import catalogue
from worker.template_catalogue import TemplateCatalogue, publish_sync

TARGET_P50_MS = 5.0
_WORDS = (
    "plan rollout database index migration storage backup restore network firewall kubernetes cluster "
    "upgrade patch audit compliance incident triage postmortem capacity forecast cost report inventory "
    "logs metrics tracing alert oncall runbook release canary schema replica failover dns certificate "
    "secret rotation vault terraform ansible review change freeze window latency queue cache cdn edge "
    "tenant quota billing invoice ledger search analytics warehouse pipeline etl stream kafka redis "
    "postgres mysql sqlite mongo elastic s3 bucket lifecycle retention archive gdpr privacy access iam"
).split()


def _template(i: int, rng: random.Random, base: dict) -> Template:
    words = rng.sample(_WORDS, 12)
    tier = rng.choice((0, 0, 0, 1, 1, 2))
    effects = list(base["governance"]["allowed_side_effects"])
    if rng.random() < 0.2:
        effects.append("open_ticket")
    return Template.model_validate(
        {
            **base,
            "name": f"{words[0]}-{words[1]}-{i}",
            "summary": f"Plans {words[2]} {words[3]} for {words[4]} teams",
            "description": " ".join(rng.choice(_WORDS) for _ in range(60)),
            "tags": words[5:9],
            "governance": {**base["governance"], "tier": tier, "allowed_side_effects": effects},
        }
    )


def populate(path: Path, count: int, seed: int = 7) -> float:
    """Publish `count` templates into a fresh ledger file; returns the seconds it took."""
    rng = random.Random(seed)
    base = builtin_template("llm-planner").model_dump(mode="json")
    started = time.perf_counter()
    with catalogue.opened(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # set-up only: what is measured is reading
        for i in range(count):
            publish_sync(conn, _template(i, rng, base), signer="", signature="", by="bench")
    return time.perf_counter() - started


def _queries(rng: random.Random, n: int) -> list[tuple[str, int | None, str | None]]:
    out: list[tuple[str, int | None, str | None]] = []
    for _ in range(n):
        words = " ".join(rng.sample(_WORDS, rng.choice((1, 1, 2))))
        tier = rng.choice((None, None, None, 1))
        effect = rng.choice((None, None, None, "open_ticket"))
        out.append((words, tier, effect))
    return out


def _baseline(conn: sqlite3.Connection, words: str) -> int:
    rows = conn.execute(
        "SELECT rowid FROM template_search WHERE template_search MATCH ? ORDER BY rank LIMIT 20",
        (catalogue.match_expression(words),),
    ).fetchall()
    return len(rows)


def measure(path: Path, queries: int, seed: int = 11) -> dict[str, list[float]]:
    """Milliseconds per query: the ranked search and the bare-MATCH baseline, alternating."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"search": [], "baseline": [], "hits": []}
    with catalogue.opened(path) as conn:
        for words, tier, effect in _queries(rng, 20):  # warm the page cache
            catalogue.search(conn, words, tier=tier, side_effect=effect)
        for words, tier, effect in _queries(rng, queries):
            t0 = time.perf_counter()
            hits = catalogue.search(conn, words, tier=tier, side_effect=effect)
            t1 = time.perf_counter()
            _baseline(conn, words)
            t2 = time.perf_counter()
            times["search"].append((t1 - t0) * 1000)
            times["baseline"].append((t2 - t1) * 1000)
            times["hits"].append(float(len(hits)))
    return times


async def measure_service(path: Path, queries: int, seed: int = 13) -> list[float]:
    """Milliseconds per `TemplateCatalogue.search` (file opened, ratings and figures of every hit)."""
    rng = random.Random(seed)
    service = TemplateCatalogue(path)
    out = []
    for words, tier, effect in _queries(rng, queries):
        t0 = time.perf_counter()
        await service.search(words, tier=tier, side_effect=effect)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    """Populate, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--service-queries", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        setup_s = populate(path, args.templates)
        times = measure(path, args.queries)
        service = asyncio.run(measure_service(path, args.service_queries))
    section = f"template search ({args.templates:,} templates, {args.queries:,} queries)"
    p50 = median(times["search"])
    base = median(times["baseline"])
    hits = times["hits"]
    p90, p99 = percentile(times["search"], 90), percentile(times["search"], 99)
    rows = [
        Row(section, "publish all (set-up, synchronous=OFF)", f"{setup_s:.1f} s"),
        Row(section, "hits per query: median / p90", f"{median(hits):.0f} / {percentile(hits, 90):.0f}"),
        Row(section, "ranked search p50", f"{p50:.2f} ms", f"<= {TARGET_P50_MS} ms", p50 <= TARGET_P50_MS),
        Row(section, "ranked search p90 / p99", f"{p90:.2f} / {p99:.2f} ms"),
        Row(section, "baseline (bare MATCH, rank, LIMIT 20) p50", f"{base:.2f} ms"),
        Row(section, "ranked / baseline (p50)", f"{p50 / base:.2f}"),
        Row(section, "service search with ratings and figures p50", f"{median(service):.2f} ms"),
    ]
    print(render(rows))


if __name__ == "__main__":
    main()
