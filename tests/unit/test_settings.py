"""Settings come from PLANGATE_* (and OPENROUTER_API_KEY); the key never shows in a repr."""

from __future__ import annotations

import pytest

from worker.settings import OPENROUTER_BASE_URL, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PLANGATE_") or name == "OPENROUTER_API_KEY":
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.llm_base_url == OPENROUTER_BASE_URL
    assert s.heartbeat_s == 1.0 and str(s.ledger_path) == "plangate-ledger.db"
    assert s.llm_api_key is None and s.allowed_models == []
    assert s.queue_name == "plangate:queue"


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANGATE_REDIS_URL", "redis://dragonfly:6379/2")
    monkeypatch.setenv("PLANGATE_CONCURRENCY", "32")
    monkeypatch.setenv("PLANGATE_ALLOWED_MODELS", "a/b, c/d")
    monkeypatch.setenv("PLANGATE_MODEL", "a/b-default")
    s = Settings()
    assert (s.redis_url, s.concurrency, s.allowed_models) == ("redis://dragonfly:6379/2", 32, ["a/b", "c/d"])
    assert s.model_allowed(None) and s.model_allowed("a/b-default") and s.model_allowed("c/d")
    assert not s.model_allowed("e/f")


def test_openrouter_key_is_the_fallback_and_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-fallback-123")
    s = Settings()
    assert s.llm_api_key is not None and s.llm_api_key.get_secret_value() == "sk-or-fallback-123"
    assert "sk-or-fallback-123" not in repr(s) and "sk-or-fallback-123" not in s.model_dump_json()
    monkeypatch.setenv("PLANGATE_LLM_API_KEY", "sk-plangate-456")
    assert Settings().llm_api_key.get_secret_value() == "sk-plangate-456"  # type: ignore[union-attr]


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("PLANGATE_HEARTBEAT_S", "0")
    with pytest.raises(ValidationError, match="heartbeat_s"):
        Settings()


def test_metrics_bind_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().metrics_host == "127.0.0.1"
    monkeypatch.setenv("PLANGATE_METRICS_HOST", "0.0.0.0")
    assert Settings().metrics_host == "0.0.0.0"


def test_changes_are_checked_like_the_environment() -> None:
    from pydantic import ValidationError

    base = Settings(llm_api_key="sk-plangate-kept-1234")
    changed = base.with_changes(concurrency=3)
    assert changed.concurrency == 3 and changed.llm_api_key == base.llm_api_key
    assert "concurrency" in changed.model_fields_set and "log_level" not in changed.model_fields_set
    for bad in (0, -2):
        with pytest.raises(ValidationError, match="greater than or equal to 1"):
            base.with_changes(concurrency=bad)
