"""Every bad Redis setting, through every command that talks to Redis: one line on stderr, exit code 3,
within seconds. The servers are real sockets on loopback: an HTTP server, one that accepts and never
answers, a TLS server, one that sends garbage, a closed port; and real redis-servers that refuse."""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import os
import signal
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync
from tests.redis_server import OwnRedis
from worker.cli.main import build_parser
from worker.ids import new_id

pytestmark = pytest.mark.e2e

# The handshake gives up after 2 s and a refused connection after its few retries; the rest is the
# interpreter starting on a loaded machine. Before the fix a silent server kept a command for 10+ minutes.
DEADLINE_S = 15.0
_PARALLEL = 10  # most of a run is waiting for the 2 s handshake timeout, not CPU

JOB = new_id()
# Every command that talks to Redis, with the arguments it needs.
REDIS_COMMANDS: dict[str, tuple[str, ...]] = {
    "submit": ("--description", "plan something"),
    "status": (JOB,),
    "wait": (JOB, "--timeout", "30"),
    "watch": (JOB,),
    "cancel": (JOB,),
    "worker": (),
    "agents add": ("some-agent",),
    "agents list": (),
    "agents show": ("some-agent",),
    "agents revoke": ("some-agent", "--reason", "drill"),
    "agents restore": ("some-agent",),
    "agents reset-budget": ("some-agent",),
    "agents issue-key": ("some-agent",),
    "locks list": (),
    "vocabulary add": ("read_metrics", "--reason", "drill"),
    "vocabulary list": (),
    "reviewers add": ("dana",),
    "reviewers list": (),
    "review list": ("--by", "ops"),
    "review approve": (JOB, "--by", "ops"),
    "review reject": (JOB, "--by", "ops"),
    "failed list": (),
    "failed retry": (JOB,),
    "health": (),
    "ledger serve": (),
    "ledger reconcile": (),
    "ledger redact": ("--job", JOB, "--reason", "drill", "--by", "ops"),
    "tenants add": ("acme",),
    "tenants list": (),
    "tenants show": ("acme",),
    "usage": ("--tenant", "acme", "--since", "2026-01-01"),
    "stats": (),
    "pause": ("--all", "--reason", "drill"),
    "resume": ("--all",),
    "bulk cancel": ("--dry-run",),
    "bulk retry": ("--dry-run",),
    "web": ("--port", "0"),
    "serve": ("--port", "0"),
    "mcp": (),
    "tokens issue": ("--scope", "admin"),
    "tokens list": (),
    "tokens revoke": ("some-token",),
    "webhooks allow": ("acme", "--host", "hooks.example.com"),
    "webhooks policy": ("acme",),
    "webhooks callback-secret": ("acme",),
    "webhooks add": ("acme", "https://hooks.example.com/h", "--event", "job.terminal"),
    "webhooks list": ("acme",),
    "webhooks remove": ("acme", "ep_0123456789abcdef"),
    "webhooks rotate-secret": ("acme", "ep_0123456789abcdef"),
    "webhooks failed": (),
    "webhooks redeliver": ("--all",),
    "webhooks run": (),
    "agents upgrade": ("some-agent", "--to", "^1"),
    "bootstrap": ("--tenant", "acme", "--template", "llm-planner@^1", "--agent", "some-agent"),
}
# Commands that never need Redis (the ledger file's own, the demo, the stub); `ledger verify` only reads
# the published anchor when Redis answers and says so when it does not.
NO_REDIS = {
    "demo",
    "llm-stub",
    "ledger show",
    "ledger tail",
    "ledger search",
    "ledger export",
    "ledger verify",
    "ledger anchors",
    "ledger migrate",
    "ledger compact",
    "ledger checkpoint",
    "ledger prove",
    "ledger prove-consistency",
    "ledger verify-bundle",
    # The template catalogue is in the ledger's SQLite file.
    "templates publish",
    "templates list",
    "templates show",
    "templates search",
    "templates yank",
    "templates rate",
    "templates sign",
    "templates keygen",
    "templates trust",
}


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix)
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_commands(child, (*prefix, name))


# `plangate doctor` reports an unusable Redis as its first check's `fail` line and exits 1, like any
# failed check, within seconds (tests/e2e/test_doctor.py).
REPORTS_REDIS = {"doctor"}


def test_the_list_names_every_command_that_talks_to_redis() -> None:
    assert set(_leaf_commands(build_parser())) == set(REDIS_COMMANDS) | NO_REDIS | REPORTS_REDIS


# --- servers that are not Redis -----------------------------------------------------------------------


class _Silent(socketserver.BaseRequestHandler):
    """Accepts and reads, never answers."""

    def handle(self) -> None:
        while self.request.recv(4096):
            pass


class _Garbage(socketserver.BaseRequestHandler):
    """Answers whatever it gets with bytes that are no protocol at all."""

    def handle(self) -> None:
        self.request.recv(4096)
        self.request.sendall(b"\x00\xffnot redis at all\x01\r\n")


class _Tls(socketserver.BaseRequestHandler):
    """A TLS server: the plain-text client fails its handshake."""

    context: ssl.SSLContext

    def handle(self) -> None:
        try:
            with self.context.wrap_socket(self.request, server_side=True) as tls:
                tls.recv(4096)
        except (ssl.SSLError, OSError):
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _tls_context(workdir: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture(scope="module")
def fake_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Ports of real loopback servers that are not Redis, by kind."""
    tls = type("TlsHandler", (_Tls,), {"context": _tls_context(tmp_path_factory.mktemp("tls"))})
    servers: dict[str, socketserver.BaseServer] = {
        "http": http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler),
        "silent": _Server(("127.0.0.1", 0), _Silent),
        "tls": _Server(("127.0.0.1", 0), tls),
        "garbage": _Server(("127.0.0.1", 0), _Garbage),
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {kind: server.server_address[1] for kind, server in servers.items()}  # type: ignore[misc]
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    """A redis-server of our own that wants a password."""
    server = OwnRedis(tmp_path_factory.mktemp("redis-auth"), password="the-right-one")
    server.start()
    yield server
    server.close()


# --- running plangate -----------------------------------------------------------------------------


def _env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=redis_url,
        PLANGATE_KEY_PREFIX=key_prefix,
        PLANGATE_LEDGER_PATH=str(tmp_path / "ledger.db"),
        PLANGATE_METRICS_PORT="0",
        PLANGATE_LLM_API_KEY="bad-redis-test-key",
    )
    return env


def _run(env: dict[str, str], command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    try:
        result = subprocess.run(
            plangate_cmd(*command.split(), *REDIS_COMMANDS[command]),
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S * 5,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`plangate {command}` still ran after {exc.timeout:g}s")
    return result, time.monotonic() - started


def _is_log_line(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "event" in record and "level" in record


def _assert_refused(env: dict[str, str], commands: list[str], expect: str) -> None:
    """Each command exits 3 within the deadline with one line on stderr that says `expect`."""
    with ThreadPoolExecutor(_PARALLEL) as pool:
        results = list(pool.map(lambda command: _run(env, command), commands))
    for command, (result, elapsed) in zip(commands, results, strict=True):
        what = f"plangate {command}: rc={result.returncode} after {elapsed:.1f}s, stderr={result.stderr!r}"
        assert result.returncode == 3, what
        assert "Traceback" not in result.stderr, what
        # a service logs its wait for Redis (JSON log lines); besides them, one line says why it stopped
        said = [line for line in result.stderr.splitlines() if not _is_log_line(line)]
        assert len(said) == 1 and said[0].startswith("plangate: "), what
        assert expect in result.stderr, what
        assert "the-right-one" not in result.stderr and "wrong-one" not in result.stderr, what
        assert elapsed < DEADLINE_S, what


# Each bad setting through the commands that take different paths to Redis: a one-shot client, the
# producer API, the health probe, a service's start-up probe (worker, ledger writer). Every command: the
# silent server. A service waits REDIS_START_WAIT_S (5 s) for a closed port to open: still exit 3 in time.
_SAMPLE = ["status", "submit", "health", "worker", "ledger serve"]


@pytest.fixture
def bad_urls(
    fake_servers: dict[str, int], redis_base_url: str, password_redis: OwnRedis
) -> dict[str, tuple[str, str]]:
    """Each bad setting as (PLANGATE_REDIS_URL, a word the one-line message must contain)."""
    own = f"127.0.0.1:{password_redis.port}"
    return {
        "http server": (f"redis://127.0.0.1:{fake_servers['http']}/0", "not a Redis server"),
        "accepts, never answers": (f"redis://127.0.0.1:{fake_servers['silent']}/0", "no Redis reply"),
        "tls server": (f"redis://127.0.0.1:{fake_servers['tls']}/0", "rediss://"),
        "garbage": (f"redis://127.0.0.1:{fake_servers['garbage']}/0", "not a Redis server"),
        "closed port": (f"redis://127.0.0.1:{free_port()}/0", "cannot reach Redis"),
        "no scheme": ("127.0.0.1:6379", "not a usable Redis URL"),
        "db out of range": (f"{redis_base_url}/99999", "DB index is out of range"),
        "unknown user": (f"redis://nobody-here:pw@{redis_base_url.split('://', 1)[1]}/9", "login refused"),
        "wrong password": (f"redis://:wrong-one@{own}/0", "login refused"),
        "no password": (f"redis://{own}/0", "login refused"),
    }


@pytest.mark.parametrize(
    "setting",
    [
        "http server",
        "accepts, never answers",
        "tls server",
        "garbage",
        "closed port",
        "no scheme",
        "db out of range",
        "unknown user",
        "wrong password",
        "no password",
    ],
)
def test_a_bad_setting_is_one_line_and_exit_3(
    setting: str, bad_urls: dict[str, tuple[str, str]], key_prefix: str, tmp_path: Path
) -> None:
    url, expect = bad_urls[setting]
    _assert_refused(_env(url, key_prefix, tmp_path), _SAMPLE, expect)


def test_every_command_gives_up_on_a_server_that_never_answers(
    fake_servers: dict[str, int], key_prefix: str, tmp_path: Path
) -> None:
    env = _env(f"redis://127.0.0.1:{fake_servers['silent']}/0", key_prefix, tmp_path)
    _assert_refused(env, list(REDIS_COMMANDS), "no Redis reply")


def test_a_read_only_replica_is_one_line_and_exit_3(key_prefix: str, tmp_path: Path) -> None:
    # A replica of a primary that is not there: it answers reads and refuses every write.
    replica = OwnRedis(tmp_path, "--replicaof", "127.0.0.1", str(free_port()))
    replica.start()
    try:
        env = _env(replica.url, key_prefix, tmp_path)
        _assert_refused(env, ["submit", "tenants add"], "read only replica")
    finally:
        replica.close()


def test_services_started_before_redis_wait_for_it(
    e2e_env: dict[str, str], start_plangate: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    """Nothing listens yet (Redis still starting): the worker and the ledger writer wait (as long as
    REDIS_START_WAIT_S says), then run."""
    server = OwnRedis(tmp_path)
    e2e_env["PLANGATE_REDIS_URL"] = server.url  # its port, before the server runs
    e2e_env["PLANGATE_REDIS_START_WAIT_S"] = "60"
    services = {
        "worker": start_plangate("worker", "worker"),
        "ledger": start_plangate("ledger", "ledger", "serve"),
    }
    try:
        for name, proc in services.items():
            _wait_in_log(tmp_path / f"{name}-0.log", proc, "redis.waiting")
        server.start()
        _wait_in_log(tmp_path / "worker-0.log", services["worker"], '"worker.started"')
        _wait_in_log(tmp_path / "ledger-0.log", services["ledger"], "ledger_writer.started")
        for proc in services.values():
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in services.values()] == [0, 0]
    finally:
        server.close()


def _wait_in_log(log: Path, proc: subprocess.Popen, text: str) -> None:
    def logged() -> bool:
        if log.exists() and text in log.read_text(errors="replace"):
            return True
        assert proc.poll() is None, f"exited ({proc.returncode}) before logging {text!r}: {log.read_text()}"
        return False

    eventually_sync(logged, timeout_s=60, interval_s=0.1, what=f"{text!r} in {log.name}")
