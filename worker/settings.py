"""The one settings object: read from the environment (prefix PLANGATE_) at process entry, passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from governance.quota import DAY_TTL_S, USAGE_TTL_S, Price
from worker.keys import Keys

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
STATS_TTL_S = 2 * 3600  # how long the per-minute counts of ended jobs are kept (default of STATS_TTL_S)


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """plangate configuration. Every field can be set as PLANGATE_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="PLANGATE_", extra="ignore", populate_by_name=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="plangate:", description="Prefix of every Redis key plangate owns")
    llm_base_url: str = OPENROUTER_BASE_URL
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PLANGATE_LLM_API_KEY", "OPENROUTER_API_KEY", "llm_api_key"),
    )
    model: str = "openai/gpt-4o-mini"
    agent_key: SecretStr | None = Field(default=None, description="the submitting agent's key (CLI submit)")
    reviewer_key: SecretStr | None = Field(default=None, description="the reviewer's key (CLI review)")
    allowed_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description='USD per million (prompt, completion) tokens, JSON: {"model": [0.15, 0.6]}',
    )
    max_tokens: int = Field(default=2048, ge=64)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0)
    llm_backoff_s: float = Field(default=0.5, ge=0)
    ledger_path: Path = Path("./plangate-ledger.db")
    ledger_batch_size: int = Field(default=1000, ge=1)
    ledger_batch_delay_s: float = Field(default=0.05, ge=0)
    ledger_signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs anchors and checkpoints; unset: one is generated"
        " (with a warning) in LEDGER_KEY_DIR, never beside the ledger",
    )
    ledger_key_dir: Path = Field(
        default_factory=lambda: Path.home() / ".config" / "plangate" / "ledger-keys",
        description="where a signing key is generated when LEDGER_SIGNING_KEY is unset",
    )
    ledger_trusted_key: Path | None = Field(
        default=None,
        description="the public key `ledger verify` trusts (PEM or a C2SP verifier key), the operator's copy",
    )
    ledger_checkpoint_sink: Path | None = Field(
        default=None,
        description="file the writer replaces with each signed checkpoint (put it on another disk or host)",
    )
    ledger_origin: str | None = Field(
        default=None, description="the log's origin line and key name in checkpoints; default plangate/KEY_ID"
    )
    ledger_anchor_interval_s: float = Field(default=10.0, gt=0)
    ledger_reconcile_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="how often the writer looks for jobs lost with Redis's data (recorded `lost`); 0 = off",
    )
    ledger_claim_idle_s: float = Field(
        default=30.0, gt=0, description="re-claim entries a dead writer left pending"
    )
    agents_file: Path | None = None
    concurrency: int = Field(default=10, ge=1)
    job_timeout_s: float = Field(default=300.0, gt=0)
    heartbeat_s: float = Field(default=1.0, gt=0)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0, description="default 10 x HEARTBEAT_S")
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    redis_start_wait_s: float = Field(
        default=5.0, ge=0, description="how long a worker or ledger serve waits at start for Redis to answer"
    )
    llm_idle_timeout_s: float = Field(default=30.0, gt=0, description="longest silence inside a stream")
    llm_max_line_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="longest SSE line (or event) an LLM stream may send"
    )
    llm_max_answer_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="most bytes one streamed LLM answer may take (SSE framing included)",
    )
    llm_http: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="the openai client's HTTP transport: aiohttp (less CPU per streamed chunk) or httpx",
    )
    fallback_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    result_ttl_s: int = Field(default=86_400, ge=1)
    stats_ttl_s: int = Field(
        default=STATS_TTL_S, ge=60, description="how long the per-minute counts of ended jobs are kept"
    )
    usage_ttl_s: int = Field(
        default=USAGE_TTL_S, ge=86_400, description="how long a tenant's usage totals of a day are kept"
    )
    quota_day_ttl_s: int = Field(
        default=DAY_TTL_S,
        ge=86_400,
        description="how long a tenant's daily quota account (and a job's reservation) is kept",
    )
    job_tries: int = Field(default=3, ge=1)
    queue_order: Literal["fair", "fifo"] = Field(
        default="fair",
        description="fair: weighted fair share across tenants, priorities, pauses; fifo: arq's oldest first "
        "(no weights, priorities or pauses; the benchmark's baseline)",
    )
    priority_aging_s: float = Field(
        default=60.0,
        gt=0,
        description="a queued job is not overtaken by higher-priority jobs submitted this long after it",
    )
    log_level: str = "INFO"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="worker /metrics port; 0 = off")
    metrics_host: str = Field(
        default="127.0.0.1", description="address /metrics binds; 0.0.0.0 for a scraper on another host"
    )
    api_rate_limit_per_s: int = Field(
        default=200,
        ge=0,
        description="requests per second one API token may make (all API processes); 0 = off",
    )
    doctor_interval_s: float = Field(
        default=300.0, ge=0, description="how often `plangate serve` refreshes its doctor gauge; 0 = never"
    )
    tracing: bool = Field(default=False, description="OpenTelemetry spans (needs the [otel] extra)")
    webhooks_in_worker: bool = Field(
        default=True, description="run the webhook deliverer in each worker (off: `plangate webhooks run`)"
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="one delivery attempt's time limit")
    webhook_retry_base_s: float = Field(default=2.0, gt=0, description="the first retry's delay (doubles)")
    webhook_retry_cap_s: float = Field(default=600.0, gt=0, description="the longest delay between tries")
    webhook_retry_window_s: float = Field(
        default=6 * 3600.0, gt=0, description="how long a delivery is retried before it goes dead"
    )
    webhook_endpoint_concurrency: int = Field(
        default=4, ge=1, description="deliveries in flight to one endpoint, per deliverer"
    )
    webhook_concurrency: int = Field(default=64, ge=1, description="deliveries in flight, per deliverer")
    webhook_poll_s: float = Field(
        default=0.1,
        gt=0,
        description="the shortest wait between a deliverer's looks for due retries (idle: up to 1 s)",
    )

    @field_validator("allowed_models", "fallback_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_list(value)

    @property
    def stale_after_s(self) -> float:
        """HEARTBEAT_TIMEOUT_S, or 10 x HEARTBEAT_S: a running job silent this long is abandoned."""
        return self.heartbeat_timeout_s or 10 * self.heartbeat_s

    @property
    def watchdog_interval_s(self) -> float:
        """How often a worker's watchdog looks: often enough that recovery takes about HEARTBEAT_TIMEOUT_S."""
        return min(self.heartbeat_s, self.stale_after_s / 4)

    @property
    def liveness_window_s(self) -> float:
        """How recent a worker's beat must be for `plangate health` (and stats) to count it alive."""
        return max(3 * self.watchdog_interval_s, 5.0)

    @property
    def queue_name(self) -> str:
        """The job queue this deployment uses (under our key prefix; see worker.queue_backend)."""
        return Keys(self.key_prefix).queue()

    def signing_key_path(self) -> Path:
        """The ledger signing key: LEDGER_SIGNING_KEY, else a key of this ledger's own in LEDGER_KEY_DIR
        (named for the ledger file and a digest of its absolute path, so two ledgers never share one)."""
        if self.ledger_signing_key is not None:
            return self.ledger_signing_key
        import hashlib

        where = hashlib.sha256(str(self.ledger_path.resolve()).encode()).hexdigest()[:8]
        return self.ledger_key_dir / f"{self.ledger_path.name}-{where}.key"

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with `changes` checked like values from the environment (model_copy alone checks nothing);
        pydantic's ValidationError when one is out of range."""
        checked = type(self).model_validate({**self.model_dump(), **changes})
        return self.model_copy(update={name: getattr(checked, name) for name in changes})

    def price_for(self, model: str) -> Price | None:
        """The configured price of a model, if any (tenants with a cost budget need one)."""
        price = self.model_prices.get(model)
        return Price(*price) if price else None

    def model_allowed(self, model: str | None) -> bool:
        """A request may name the default model or one from ALLOWED_MODELS."""
        return model is None or model == self.model or model in self.allowed_models
