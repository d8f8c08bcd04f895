"""`python -m bench.template_search`: catalogue search over 10,000 published templates (target p50 <= 5 ms).

The templates are published the way `plangate templates publish` does (governance's model and hash, the
catalogue's rows and FTS5 index) into a fresh ledger file, twice: text from a Zipf-distributed vocabulary
of 4,000 words, and the dense worst case (100 words, each in about half the templates). Queries of one or
two domain words alternate between the catalogue's ranked search (`ledger.catalogue.search`: the
heading's matches first, then the description's, bm25 with the column weights, the exact-name rule, the
join to the version rows, the filters) and the baseline measured in the same run: the bare FTS5 MATCH of
the same words with FTS5's own rank order and LIMIT, no join. The service's search
(`TemplateCatalogue.search`: the file opened, each hit's ratings and ledger figures) is timed too.
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


def _vocabulary(size: int = 4_000, seed: int = 3) -> list[str]:
    """A vocabulary as large as a real catalogue's, most common first: made-up words, with the domain
    words (what operators search for) at random ranks among them."""
    rng = random.Random(seed)
    made_up: set[str] = set()
    while len(made_up) < size - len(_WORDS):
        made_up.add("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 10))))
    words = sorted(made_up - set(_WORDS))
    rng.shuffle(words)
    for word in _WORDS:
        words.insert(rng.randrange(len(words) + 1), word)
    return words


class Zipf:
    """Words drawn with Zipf's law (the k-th most common word 1/k as often as the first), as in real text."""

    def __init__(self, words: list[str], rng: random.Random) -> None:
        self.words = words
        self.weights = [1 / (k + 1) for k in range(len(words))]
        self.rng = rng

    def draw(self, n: int) -> list[str]:
        """`n` words."""
        return self.rng.choices(self.words, self.weights, k=n)


def _template(i: int, rng: random.Random, base: dict, zipf: Zipf | None = None) -> Template:
    words = zipf.draw(12) if zipf else rng.sample(_WORDS, 12)
    tier = rng.choice((0, 0, 0, 1, 1, 2))
    effects = list(base["governance"]["allowed_side_effects"])
    if rng.random() < 0.2:
        effects.append("open_ticket")
    return Template.model_validate(
        {
            **base,
            "name": f"{words[0]}-{words[1]}-{i}",
            "summary": f"Plans {words[2]} {words[3]} for {words[4]} teams",
            "description": " ".join(zipf.draw(60) if zipf else (rng.choice(_WORDS) for _ in range(60))),
            "tags": words[5:9],
            "governance": {**base["governance"], "tier": tier, "allowed_side_effects": effects},
        }
    )


def populate(path: Path, count: int, *, dense: bool, seed: int = 7) -> float:
    """Publish `count` templates into a fresh ledger file; returns the seconds it took. `dense`: every
    template's text drawn uniformly from 100 domain words (each word in about half the templates, the
    worst case); otherwise from a Zipf-distributed vocabulary of 4,000 words (the domain words at random
    ranks, so some are common and some rare)."""
    rng = random.Random(seed)
    zipf = None if dense else Zipf(_vocabulary(), rng)
    base = builtin_template("llm-planner").model_dump(mode="json")
    started = time.perf_counter()
    with catalogue.opened(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # set-up only: what is measured is reading
        for i in range(count):
            publish_sync(conn, _template(i, rng, base, zipf), signer="", signature="", by="bench")
    return time.perf_counter() - started


def _queries(rng: random.Random, n: int) -> list[tuple[str, int | None, str | None]]:
    """Queries of one or two domain words, each word as likely as any other (their frequency in the
    templates is what differs: in the dense corpus each is in about half of them)."""
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


def measure(path: Path, queries: int, *, dense: bool, seed: int = 11) -> dict[str, list[float]]:
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


async def measure_service(path: Path, queries: int, *, dense: bool, seed: int = 13) -> list[float]:
    """Milliseconds per `TemplateCatalogue.search` (file opened, ratings and figures of every hit)."""
    rng = random.Random(seed)
    service = TemplateCatalogue(path)
    out = []
    for words, tier, effect in _queries(rng, queries):
        t0 = time.perf_counter()
        await service.search(words, tier=tier, side_effect=effect)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _rows(
    section: str, setup_s: float, times: dict[str, list[float]], service: list[float], *, target: bool
) -> list[Row]:
    """The table rows of one corpus (`target`: whether the p50 target applies to it)."""
    p50, base = median(times["search"]), median(times["baseline"])
    p90, p99 = percentile(times["search"], 90), percentile(times["search"], 99)
    hits = times["hits"]
    goal = (f"<= {TARGET_P50_MS} ms", p50 <= TARGET_P50_MS) if target else ("", None)
    return [
        Row(section, "publish all (set-up, synchronous=OFF)", f"{setup_s:.1f} s"),
        Row(section, "hits per query: median / p90", f"{median(hits):.0f} / {percentile(hits, 90):.0f}"),
        Row(section, "ranked search p50", f"{p50:.2f} ms", *goal),
        Row(section, "ranked search p90 / p99", f"{p90:.2f} / {p99:.2f} ms"),
        Row(section, "baseline (bare MATCH, rank, LIMIT 20) p50", f"{base:.2f} ms"),
        Row(section, "ranked / baseline (p50)", f"{p50 / base:.2f}"),
        Row(section, "service search with ratings and figures p50", f"{median(service):.2f} ms"),
    ]


def main() -> None:
    """Populate, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--service-queries", type=int, default=100)
    args = parser.parse_args()
    rows: list[Row] = []
    for dense in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ledger.db"
            setup_s = populate(path, args.templates, dense=dense)
            times = measure(path, args.queries, dense=dense)
            service = asyncio.run(measure_service(path, args.service_queries, dense=dense))
        corpus = "dense: 100 words, each in ~half" if dense else "Zipf: 4,000 words"
        section = f"search, {args.templates:,} templates ({corpus}), {args.queries:,} queries"
        rows += _rows(section, setup_s, times, service, target=True)
    print(render(rows))


if __name__ == "__main__":
    main()
