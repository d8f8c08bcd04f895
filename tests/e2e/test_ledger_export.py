"""`plangate ledger export` for auditors and SIEMs: JSON lines or CloudEvents, up to the latest signed
checkpoint, which is written beside the export; every exported row can then be proven against it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ledger import chain
from ledger.signed_note import unverified_checkpoint
from ledger.sqlite_store import LedgerStore
from tests.e2e.conftest import plangate_cmd
from tests.e2e.test_ledger_cli import job_events
from tests.e2e.test_ledger_tamper import Deployment

pytestmark = pytest.mark.e2e


def run(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        plangate_cmd("ledger", *args), env=dep.env, capture_output=True, text=True, timeout=60
    )


def read_export(rows_file: Path, sink: Path) -> tuple[str, str, list[dict]]:
    """(the checkpoint beside the export, the one in the sink, the exported rows)."""
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    return Path(f"{rows_file}.checkpoint").read_text(), sink.read_text(), rows


async def test_export_stops_at_the_signed_checkpoint_it_writes_beside(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    dep = Deployment(tmp_path, redis_url, key_prefix)
    await dep.write(range(0, 4))  # 8 rows, signed
    store = await LedgerStore.open(dep.path)
    try:  # two more, not signed yet
        await store.insert_events(job_events("job-late", "Late", "Drain the pool"))
    finally:
        await store.close()

    rows_file, events_file = tmp_path / "rows.jsonl", tmp_path / "events.jsonl"
    done = run(dep, "export", "-o", str(rows_file))
    assert done.returncode == 0 and "exported 8 events" in done.stderr, done
    note, sunk, rows = read_export(rows_file, dep.sink)
    assert unverified_checkpoint(note).size == 8 and note == sunk
    assert [r["seq"] for r in rows] == list(range(1, 9))

    done = run(dep, "export", "--format", "cloudevents", "--kind", "done", "-o", str(events_file))
    assert done.returncode == 0 and "exported 4 events" in done.stderr, done
    _note, _sunk, events = read_export(events_file, dep.sink)
    first = events[0]
    assert first["specversion"] == "1.0" and first["type"] == "dev.plangate.ledger.done"
    assert first["subject"] == "job-0" and first["id"] == first["data"]["event_id"]
    assert first["time"] == first["data"]["created_at"]
    for event in events:  # each line carries the row, which still hashes to its row hash
        assert chain.row_hash(event["data"]) == event["plangaterowhash"] == event["data"]["row_hash"]
    bundle = tmp_path / "job-1.json"
    proved = run(dep, "prove", "job-1", "--checkpoint", f"{rows_file}.checkpoint", "-o", str(bundle))
    assert proved.returncode == 0, proved.stderr
    checked = run(dep, "verify-bundle", str(bundle), "--public-key", str(dep.trusted))
    assert checked.returncode == 0 and "in the signed tree of 8 rows" in checked.stdout, checked.stdout
