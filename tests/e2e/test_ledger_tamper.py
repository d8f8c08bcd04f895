"""The insider's attacks on the ledger file, each caught by the verify an operator is told to run:
`plangate ledger verify` with the trusted public key (PLANGATE_LEDGER_TRUSTED_KEY, the operator's copy)
and the checkpoint sink (PLANGATE_LEDGER_CHECKPOINT_SINK, off the machine). The ledger is written and
signed by the writer's own code; the attacker uses the ledger's code too (the store, the tree, the signer)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import chain, tree_store
from ledger.anchors import Anchorer, FileSink
from ledger.projection_check import replay
from ledger.signing import load_or_create_key, public_pem
from ledger.sqlite_store import LedgerStore, connect_writer, insert_batch_sync
from tests.e2e.conftest import plangate_cmd
from tests.e2e.test_ledger_cli import job_events
from tests.eventually import eventually_sync
from tests.unit.ledger_events import make_event
from worker.keys import Keys
from worker.redis_conn import text_client

pytestmark = pytest.mark.e2e

INTERVAL_S = 0.2  # the writer's anchor interval: an unsigned row older than 3 x this (+1 s) is not its own


class Deployment:
    """A ledger file, the writer's key apart from it, the operator's copy of the public key, the sink."""

    def __init__(self, tmp_path: Path, redis_url: str, key_prefix: str) -> None:
        self.path = tmp_path / "data" / "ledger.db"
        self.key_path = tmp_path / "keys" / "ledger.key"
        self.trusted = tmp_path / "auditor" / "ledger.pub"
        self.sink = tmp_path / "offsite" / "checkpoint"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
        self.env.update(
            PLANGATE_REDIS_URL=redis_url,
            PLANGATE_KEY_PREFIX=key_prefix,
            PLANGATE_LEDGER_PATH=str(self.path),
            PLANGATE_LEDGER_SIGNING_KEY=str(self.key_path),
            PLANGATE_LEDGER_TRUSTED_KEY=str(self.trusted),
            PLANGATE_LEDGER_CHECKPOINT_SINK=str(self.sink),
            PLANGATE_LEDGER_ANCHOR_INTERVAL_S=str(INTERVAL_S),
        )
        self.key = load_or_create_key(self.key_path)
        self.trusted.parent.mkdir(parents=True)
        self.trusted.write_bytes(public_pem(self.key.public_key()))

    async def write(self, jobs: range) -> None:
        """Record jobs and sign the head, as the active writer does (checkpoint to the file and the sink)."""
        store = await LedgerStore.open(self.path)
        try:
            for n in jobs:
                await store.insert_events(job_events(f"job-{n}", f"Job {n}", "Drain the pool"))
            await Anchorer(store, self.key, sinks=[FileSink(self.sink)]).maybe(force=True)
        finally:
            await store.close()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`plangate ledger ARGS` in this deployment's environment."""
        cmd = plangate_cmd("ledger", *args)
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)

    def verify(self, *args: str, trusted: bool = True) -> subprocess.CompletedProcess[str]:
        """`plangate ledger verify ARGS` (without the operator's trusted key when not `trusted`)."""
        env = (
            self.env if trusted else {k: v for k, v in self.env.items() if k != "PLANGATE_LEDGER_TRUSTED_KEY"}
        )
        cmd = plangate_cmd("ledger", "verify", *args)
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def deployment(tmp_path: Path, redis_url: str, key_prefix: str) -> Deployment:
    dep = Deployment(tmp_path, redis_url, key_prefix)
    await dep.write(range(0, 5))
    await dep.write(range(5, 10))  # two checkpoints, the sink holds the second (20 rows)
    return dep


def attacker(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    return conn


def rebuild_tree(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    tree_store.build(conn)
    conn.execute("COMMIT")


def rebuild_read_models(conn: sqlite3.Connection) -> None:
    """And the jobs table and search index, from the rows left (with the writer's projection code)."""
    conn.execute("BEGIN")
    conn.execute("DELETE FROM jobs")
    conn.execute("DELETE FROM job_search")
    replay(conn, conn)
    conn.execute("COMMIT")


def rehash_from(conn: sqlite3.Connection, seq: int, decision: str) -> None:
    """Edit one row, then re-seal every row after it so that the chain is consistent again."""
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
    conn.row_factory = None
    prev = chain.GENESIS_HASH
    for row in rows:
        if row["seq"] == seq:
            row["decision"] = decision
        chain.seal(row, prev)
        conn.execute(
            "UPDATE events SET decision = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
            (row["decision"], row["prev_hash"], row["row_hash"], row["seq"]),
        )
        prev = row["row_hash"]


async def resign(dep: Deployment, key: Ed25519PrivateKey) -> None:
    """Replace the file's anchors and checkpoints with ones signed by `key` (the sink is off the machine)."""
    with attacker(dep.path) as conn:
        conn.execute("DELETE FROM anchors")
        conn.execute("DELETE FROM tree_checkpoints")
    store = await LedgerStore.open(dep.path)
    try:
        await Anchorer(store, key).maybe(force=True)
    finally:
        await store.close()


def swap_key(dep: Deployment) -> Ed25519PrivateKey:
    """A new key written over the signing key (and its .pub) on the machine."""
    key = Ed25519PrivateKey.generate()
    dep.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    Path(f"{dep.key_path}.pub").write_bytes(public_pem(key.public_key()))
    return key


def test_the_untouched_ledger_verifies(deployment: Deployment) -> None:
    ok = deployment.verify()
    assert ok.returncode == 0 and "ok: 20 rows" in ok.stdout and "checkpoint: 20 rows signed" in ok.stdout, ok
    assert "warning" not in ok.stdout


def test_verify_needs_a_trusted_key(deployment: Deployment) -> None:
    refused = deployment.verify(trusted=False)
    assert refused.returncode == 2 and "no trusted public key" in refused.stderr, refused
    local = deployment.verify("--trust-local-key", trusted=False)
    assert local.returncode == 0 and "WARNING: trusting the public key found on this machine" in local.stderr


async def test_a_forged_tail_append_is_caught(deployment: Deployment) -> None:
    conn = connect_writer(deployment.path)
    try:  # the store's own code: right hashes, right tree
        insert_batch_sync(conn, [make_event("review_approved", payload={"reviewer": "mallory"})])
    finally:
        conn.close()
    caught: list[subprocess.CompletedProcess[str]] = []

    def unsigned() -> bool:  # never signed: once older than the writer's interval it is not the writer's
        caught[:] = [deployment.verify()]
        return caught[0].returncode == 1

    eventually_sync(unsigned, timeout_s=30, interval_s=0.2, what="verify to fail on the unsigned row")
    assert "BAD: unsigned at row 21" in caught[0].stdout, caught[0].stdout


async def test_a_key_swapped_beside_the_file_is_refused(deployment: Deployment) -> None:
    with attacker(deployment.path) as conn:
        rehash_from(conn, 3, "SKIP")
        rebuild_tree(conn)
    await resign(deployment, swap_key(deployment))
    bad = deployment.verify()
    assert bad.returncode == 1 and "BAD: forged_anchor" in bad.stdout, bad.stdout
    # Trusting the machine's own key lets the file's signatures pass; the sink's checkpoint still tells.
    local = deployment.verify("--trust-local-key", trusted=False)
    assert local.returncode == 1 and "BAD: forged_anchor" in local.stdout, local.stdout


async def test_a_cut_tail_with_its_anchors_removed_is_caught(deployment: Deployment) -> None:
    with attacker(deployment.path) as conn:
        conn.execute("DELETE FROM events WHERE seq > 14")
        conn.execute("DELETE FROM anchors WHERE head_seq > 14")
        conn.execute("DELETE FROM tree_checkpoints WHERE tree_size > 14")
        rebuild_tree(conn)
        rebuild_read_models(conn)
    bad = deployment.verify("--no-redis")
    assert bad.returncode == 1 and "BAD: truncated at row 15" in bad.stdout, bad.stdout


async def test_a_rehashed_history_is_caught(deployment: Deployment) -> None:
    with attacker(deployment.path) as conn:
        rehash_from(conn, 4, "SKIP")  # job-1's done event
        rebuild_tree(conn)
        rebuild_read_models(conn)
        conn.execute("DELETE FROM anchors")
        conn.execute("DELETE FROM tree_checkpoints")
    bad = deployment.verify("--no-redis")
    assert bad.returncode == 1 and "BAD: rewritten" in bad.stdout, bad.stdout


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE jobs SET decision = 'ESCALATE' WHERE job_id = 'job-3'",
        "UPDATE jobs SET description = 'Nothing to see' WHERE job_id = 'job-4'",
        "INSERT INTO jobs (job_id, state) VALUES ('job-invented', 'done')",
        "DELETE FROM job_search WHERE job_id = 'job-2'",
    ],
    ids=["decision", "description", "invented_job", "search_row"],
)
def test_an_edited_read_model_is_caught(deployment: Deployment, edit: str) -> None:
    """`ledger show` reads the chained events, `ledger search` the jobs table and search index: verify
    recomputes both from the events."""
    with attacker(deployment.path) as conn:
        conn.execute(edit)
    bad = deployment.verify()
    assert bad.returncode == 1 and "BAD: projection" in bad.stdout and "read model" in bad.stdout, bad.stdout


def put_back(source: Path, path: Path) -> None:
    """Put `source` where the ledger file is (its WAL and shared memory gone with the old file)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, path)


@pytest.mark.parametrize("how", ["older_copy", "other_ledger"])
async def test_a_replaced_file_is_caught(deployment: Deployment, tmp_path: Path, how: str) -> None:
    other = tmp_path / "other.db"
    if how == "older_copy":  # a copy taken at the first checkpoint, put back later
        shutil.copy(deployment.path, other)
        await deployment.write(range(10, 12))
        put_back(other, deployment.path)
    else:  # a ledger of its own, signed with a key of its own
        store = await LedgerStore.open(other)
        try:
            await store.insert_events(job_events("job-x", "Something else", "Drain the pool"))
            await Anchorer(store, Ed25519PrivateKey.generate()).maybe(force=True)
        finally:
            await store.close()
        put_back(other, deployment.path)
    bad = deployment.verify("--no-redis")
    problem = "truncated" if how == "older_copy" else "forged_anchor"
    assert bad.returncode == 1 and f"BAD: {problem}" in bad.stdout, bad.stdout


async def test_an_operator_attests_a_head_by_hand(deployment: Deployment) -> None:
    """Rows nobody signed (a writer that crashed with Redis's data lost) fail verify until the operator,
    having looked, signs the head with `ledger checkpoint --sign`; the sink gets that checkpoint too."""
    store = await LedgerStore.open(deployment.path)
    try:
        await store.insert_events(job_events("job-late", "Late", "Drain the pool"))
    finally:
        await store.close()
    caught: list[subprocess.CompletedProcess[str]] = []

    def unsigned() -> bool:
        caught[:] = [deployment.verify()]
        return caught[0].returncode == 1

    eventually_sync(unsigned, timeout_s=30, interval_s=0.2, what="verify to fail on the unsigned rows")
    assert "BAD: unsigned at row 21" in caught[0].stdout, caught[0].stdout
    signed = deployment.run("checkpoint", "--sign")
    assert signed.returncode == 0 and signed.stdout.splitlines()[1] == "22", signed
    assert deployment.sink.read_text() == signed.stdout
    ok = deployment.verify()
    assert ok.returncode == 0 and "checkpoint: 22 rows signed" in ok.stdout, ok.stdout


async def test_a_cut_tail_that_only_redis_remembers_is_caught_by_verify_and_by_the_doctor(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    # The writer also publishes its anchor, checkpoint and head in Redis. With the file's tail cut, its
    # anchors and checkpoints removed and the sink's note gone too, only Redis still knows the head: the
    # CLI's verify and the doctor's ledger.chain check (one set-up, worker/ledger_verification.py) both
    # read it; the doctor read the sink alone before.
    dep = Deployment(tmp_path, redis_url, key_prefix)
    keys = Keys(key_prefix)
    async with text_client(redis_url) as redis:
        store = await LedgerStore.open(dep.path)
        try:
            for n in range(10):
                await store.insert_events(job_events(f"job-{n}", f"Job {n}", "Drain the pool"))
            anchorer = Anchorer(
                store, dep.key, redis, keys.ledger_anchor(), checkpoint_key=keys.ledger_checkpoint()
            )
            await anchorer.maybe(force=True)
        finally:
            await store.close()
    with attacker(dep.path) as conn:
        conn.execute("DELETE FROM events WHERE seq > 14")
        conn.execute("DELETE FROM anchors")
        conn.execute("DELETE FROM tree_checkpoints")
        rebuild_tree(conn)
        rebuild_read_models(conn)
    dep.sink.unlink(missing_ok=True)
    assert dep.verify("--no-redis").returncode == 1  # no signed checkpoint at all in the file
    bad = dep.verify()
    assert bad.returncode == 1 and "BAD:" in bad.stdout, bad.stdout
    doctor = await asyncio.to_thread(
        subprocess.run,
        plangate_cmd("doctor", "--json"),
        env=dep.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1 and checks["ledger.chain"]["status"] == "fail", checks["ledger.chain"]
    assert checks["ledger.chain"]["why"].split(" at row ")[0] == bad.stdout.split("BAD: ")[1].split(" ")[0]
