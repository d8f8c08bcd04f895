"""The peers' arithmetic in bench/: the best peer on each count, and py-spy's stacks per function."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.profile_worker import collapse
from bench.worker_runs import PEERS, Throughput, _load_numbers


def test_plangate_is_compared_with_the_fastest_and_with_the_cheapest_peer() -> None:
    runs = {
        "bare": [Throughput(90.0, 10.0)],
        "saq": [Throughput(200.0, 2.0), Throughput(180.0, 1.6), Throughput(220.0, 1.8)],
        "streaq": [Throughput(100.0, 1.5)],
        "plangate": [Throughput(150.0, 6.0)],
    }
    n = _load_numbers("c40", runs)
    assert n["peers.c40.saq.jobs_s"] == 200.0  # the median of the repeats
    assert PEERS[int(n["peers.c40.fastest"])] == "saq"
    assert PEERS[int(n["peers.c40.cheapest"])] == "streaq"
    assert n["peers.c40.jobs_ratio"] == pytest.approx(150 / 200)
    assert n["peers.c40.cpu_ratio"] == pytest.approx(6.0 / 1.5)


def test_collapsed_stacks_give_own_and_inclusive_samples_per_function(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "run (/x/site-packages/asyncio/base_events.py:1);step (/x/wt-peers/worker/pipeline.py:10) 7\n"
        "run (/x/site-packages/asyncio/base_events.py:1);step (/x/wt-peers/worker/pipeline.py:10);"
        "loads (/x/site-packages/orjson/__init__.py:3) 3\n"
    )
    own, inclusive, total = collapse(raw)
    assert total == 10
    assert own["step (worker/pipeline.py)"] == 7
    assert own["loads (orjson/__init__.py)"] == 3
    assert inclusive["run (asyncio/base_events.py)"] == 10
    assert inclusive["step (worker/pipeline.py)"] == 10
