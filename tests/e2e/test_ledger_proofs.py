"""What an auditor runs on their own machine: a job's record proven against a signed checkpoint, and a later
checkpoint proven to extend an earlier one, checked with the public key alone (no ledger, no Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.signed_note import unverified_checkpoint, verifier_key
from tests.e2e.conftest import plangate_cmd
from tests.e2e.test_ledger_cli import wait_recorded

pytestmark = pytest.mark.e2e


def plangate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def auditor_env(tmp_path: Path) -> dict[str, str]:
    """An auditor's machine: no plangate settings at all, and nothing it could reach."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(PLANGATE_REDIS_URL="redis://127.0.0.1:1/0", PLANGATE_LEDGER_PATH=str(tmp_path / "absent.db"))
    return env


def run_jobs(
    env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]], count: int
) -> list[str]:
    """Run `count` jobs through a worker, then stop it (the writer signs its final head at shutdown)."""
    [worker] = start_workers(1)
    jobs = []
    for n in range(count):
        done = plangate(env, "submit", "--description", f"Patch the bastion hosts ({n})", "--wait", "--json")
        assert done.returncode == 0, done.stderr
        jobs.append(json.loads(done.stdout)["job_id"])
    for job_id in jobs:
        wait_recorded(env, job_id)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    return jobs


def test_an_auditor_checks_a_job_and_the_log_growing_offline(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]], tmp_path: Path
) -> None:
    jobs = run_jobs(e2e_env, start_workers, 2)
    note = plangate(e2e_env, "ledger", "checkpoint")
    assert note.returncode == 0, note.stderr
    checkpoint = unverified_checkpoint(note.stdout)
    sink = Path(e2e_env["PLANGATE_LEDGER_CHECKPOINT_SINK"]).read_text()
    assert sink == note.stdout  # the writer published the same note off the machine
    vkey = plangate(e2e_env, "ledger", "checkpoint", "--verifier-key").stdout.strip()
    assert vkey.startswith(f"{checkpoint.origin}+")
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    (auditor / "ledger.vkey").write_text(vkey + "\n")
    pem = Path(e2e_env["PLANGATE_LEDGER_TRUSTED_KEY"])

    bundle = auditor / "job.json"
    proved = plangate(e2e_env, "ledger", "prove", jobs[0], "-o", str(bundle))
    assert proved.returncode == 0, proved.stderr
    offline = auditor_env(tmp_path)
    for key in (auditor / "ledger.vkey", pem):
        checked = plangate(offline, "ledger", "verify-bundle", str(bundle), "--public-key", str(key))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"rows of job {jobs[0]} are in the signed tree of {checkpoint.size} rows" in checked.stdout
        assert "submitted" in checked.stdout and "done" in checked.stdout
    # The same check importing the ledger package alone (no settings, no Redis client): what an auditor
    # installs nothing else for.
    audit = [sys.executable, "-m", "ledger.audit", str(bundle), "--public-key", str(auditor / "ledger.vkey")]
    alone = subprocess.run(audit, env=offline, capture_output=True, text=True, timeout=60, cwd=auditor)
    assert alone.returncode == 0 and f"rows of job {jobs[0]} in the signed tree" in alone.stdout, alone

    # An edited row, a row of another job, a checkpoint signed by another key: each refused.
    data = json.loads(bundle.read_text())
    edited = json.loads(json.dumps(data))
    edited["rows"][-1]["row"]["decision"] = "SKIP"
    moved = json.loads(json.dumps(data))
    moved["rows"][0]["leaf_index"] += 1
    for name, tampered in (("edited", edited), ("moved", moved)):
        path = auditor / f"{name}.json"
        path.write_text(json.dumps(tampered))
        bad = plangate(
            offline, "ledger", "verify-bundle", str(path), "--public-key", str(auditor / "ledger.vkey")
        )
        assert bad.returncode == 1 and bad.stdout.startswith("BAD:"), (name, bad.stdout)
    # a key of the same name that is not the ledger's
    other = verifier_key(checkpoint.origin, Ed25519PrivateKey.generate().public_key())
    (auditor / "other.vkey").write_text(other + "\n")
    wrong = plangate(
        offline, "ledger", "verify-bundle", str(bundle), "--public-key", str(auditor / "other.vkey")
    )
    assert wrong.returncode == 1 and "not signed by the trusted key" in wrong.stdout, wrong.stdout

    # The log grows; the later checkpoint is proven to extend the one the auditor kept.
    old = auditor / "old.checkpoint"
    old.write_text(note.stdout)
    run_jobs(e2e_env, start_workers, 1)
    consistency = auditor / "consistency.json"
    proved = plangate(e2e_env, "ledger", "prove-consistency", str(old), "-o", str(consistency))
    assert proved.returncode == 0, proved.stderr
    checked = plangate(offline, "ledger", "verify-bundle", str(consistency), "--public-key", str(pem))
    assert checked.returncode == 0, checked.stdout
    assert f"extends the signed tree of {checkpoint.size} rows" in checked.stdout
    forged = json.loads(consistency.read_text())
    forged["proof"] = forged["proof"][1:]
    consistency.write_text(json.dumps(forged))
    bad = plangate(offline, "ledger", "verify-bundle", str(consistency), "--public-key", str(pem))
    assert bad.returncode == 1 and "does not extend" in bad.stdout, bad.stdout
