"""The deployment files checked statically: compose.yaml, deploy/*, the Dockerfile (no Docker engine)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _resolve(value: Any) -> str:
    """A compose value with every ${VAR:-default} replaced by its default (no environment)."""
    return _DEFAULTED.sub(lambda m: m.group(2) or "", str(value))


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def test_services_and_profiles(services: dict[str, Any]) -> None:
    assert set(services) >= {"dragonfly", "worker", "ledger", "api", "llm-stub", "prometheus"}
    for always_on in ("dragonfly", "worker", "ledger", "api"):
        assert "profiles" not in services[always_on]
    assert services["llm-stub"]["profiles"] == ["offline"]
    assert services["prometheus"]["profiles"] == ["metrics"]


def test_dragonfly_persists_and_keeps_lua_strict(compose: dict[str, Any], services: dict[str, Any]) -> None:
    dragonfly = services["dragonfly"]
    assert dragonfly["image"].startswith("docker.dragonflydb.io/dragonflydb/dragonfly")
    flags = [_resolve(flag) for flag in dragonfly["command"]]
    assert "--dir=/data" in flags
    assert any(flag.startswith("--snapshot_cron=") for flag in flags)
    assert any(flag.startswith("--proactor_threads=") for flag in flags)
    assert any(flag.startswith("--maxmemory=") for flag in flags)
    assert not any("allow-undeclared-keys" in flag or "cache_mode" in flag for flag in flags)
    assert "dragonfly-data:/data" in dragonfly["volumes"]
    assert "dragonfly-data" in compose["volumes"]
    assert dragonfly["healthcheck"]["test"]


def test_redis_is_private_and_agents_get_the_api(services: dict[str, Any]) -> None:
    assert "ports" not in services["dragonfly"]  # only the compose network reaches it
    published = [name for name, service in services.items() if "ports" in service]
    assert "api" in published and not {"dragonfly", "worker", "ledger"} & set(published)
    api = services["api"]
    assert "container_name" not in api  # scalable
    host, _, container = _resolve(api["ports"][0]).rpartition(":")
    assert container == "8080" and "-" in host  # a range of host ports, one per replica
    assert api["command"][:1] == ["serve"] and "0.0.0.0" in api["command"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert _resolve(api["environment"]["PLANGATE_REDIS_URL"]) == "redis://dragonfly:6379/0"


def test_worker_is_scalable_and_probed(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["build"] == "."
    assert "container_name" not in worker
    assert "ports" not in worker  # fixed host ports would clash between replicas
    assert worker["command"] == ["worker", "--no-ledger-writer"]
    probe = " ".join(worker["healthcheck"]["test"])
    assert "plangate health" in probe
    env = worker["environment"]
    assert _resolve(env["PLANGATE_REDIS_URL"]) == "redis://dragonfly:6379/0"
    assert _resolve(env["PLANGATE_METRICS_PORT"]) == "9464"
    assert _resolve(env["PLANGATE_METRICS_HOST"]) == "0.0.0.0"  # Prometheus scrapes it from its container
    grace = float(_resolve(env["PLANGATE_SHUTDOWN_GRACE_S"]))
    assert _seconds(worker["stop_grace_period"]) > grace
    assert worker["depends_on"]["dragonfly"]["condition"] == "service_healthy"


def test_ledger_writer_owns_its_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    ledger = services["ledger"]
    assert ledger["command"] == ["ledger", "serve"]
    assert "deploy" not in ledger or ledger["deploy"].get("replicas", 1) == 1
    ledger_dir = str(Path(_resolve(ledger["environment"]["PLANGATE_LEDGER_PATH"])).parent)
    assert f"ledger-data:{ledger_dir}" in ledger["volumes"]
    assert "ledger-data" in compose["volumes"]
    # the signing key (and the checkpoint sink) on volumes of their own, apart from the ledger file
    key_dir = str(Path(_resolve(ledger["environment"]["PLANGATE_LEDGER_SIGNING_KEY"])).parent)
    sink_dir = str(Path(_resolve(ledger["environment"]["PLANGATE_LEDGER_CHECKPOINT_SINK"])).parent)
    assert len({ledger_dir, key_dir, sink_dir}) == 3
    assert f"ledger-keys:{key_dir}" in ledger["volumes"] and "ledger-keys" in compose["volumes"]
    assert f"ledger-checkpoints:{sink_dir}" in ledger["volumes"]


def test_every_plangate_command_in_compose_parses(services: dict[str, Any]) -> None:
    parser = build_parser()
    commands = [services[name]["command"] for name in ("worker", "ledger", "llm-stub")]
    commands.append(services["worker"]["healthcheck"]["test"][2:])  # ["CMD", "plangate", ...]
    for argv in commands:
        parser.parse_args([_resolve(arg) for arg in argv])  # argparse exits on an unknown command


def test_offline_profile_points_workers_at_the_stub(services: dict[str, Any]) -> None:
    stub = services["llm-stub"]
    args = stub["command"]
    port = args[args.index("--port") + 1]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    env = _env_file(ROOT / "deploy" / "offline.env")
    assert env["PLANGATE_LLM_BASE_URL"] == f"http://llm-stub:{port}/v1"
    assert "offline" in env["COMPOSE_PROFILES"].split(",")
    # The workers read the variable the env file sets.
    assert "PLANGATE_LLM_BASE_URL" in services["worker"]["environment"]["PLANGATE_LLM_BASE_URL"]


def test_prometheus_scrapes_every_worker_on_9464(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = [entry for job in jobs.values() for entry in job.get("dns_sd_configs", [])]
    assert sd, "no DNS service discovery"
    assert all(entry["port"] == 9464 for entry in sd)
    assert any({"worker", "tasks.worker"} & set(entry["names"]) for entry in sd)
    assert "9464" in [str(port) for port in services["worker"]["expose"]]


def test_dockerfile_runs_unprivileged_and_can_write_the_ledger() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines)
    users = [shlex.split(line)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"chown {users[-1]}(:\S+)? /ledger", text)
    assert "pip install" in text and re.search(r"pip install[^\n]* \.", text)
    assert 'ENTRYPOINT ["plangate"]' in lines
