"""Fault-injection fixtures: the end-to-end ones (real worker processes, the scripted endpoint)."""

from tests.e2e.conftest import e2e_env, llm_stub_url, start_workers  # noqa: F401  (fixtures)
