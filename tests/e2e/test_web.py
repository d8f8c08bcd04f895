"""`plangate web` in headless Chromium: the live view follows a streaming job from PLAN to done,
and shows its plan and ledger record; the HTTP side is read-only and answers known paths only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis as sync_redis

from tests.conftest import free_port
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync

pytestmark = pytest.mark.e2e

_READY_DEADLINE_S = 20.0
_DUMP_TIMEOUT_S = 60.0
# Virtual milliseconds Chromium lets the page run before it dumps the DOM; fetches pause virtual
# time, so the page's first poll (and a second one) has finished by then.
_VIRTUAL_TIME_MS = 1500
# Looks like markup: the page must show it as text, never parse it.
_DESCRIPTION = 'Plan the <em id="injected">web</em> rollout'


def _chromium() -> str:
    """Debian's chromium; on CI (env CI set) a missing browser fails instead of skipping."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it from Debian's packages")
    pytest.skip("chromium is not installed (apt-get install chromium)")


class _Page(HTMLParser):
    """What the tests look at in a dumped DOM: job rows, the detail section, plan titles, table rows."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}  # job id -> attributes of its list row
        self.detail: dict[str, str] = {}
        self.kinds: defaultdict[str, list[str]] = defaultdict(list)  # table id -> data-kind of its rows
        self.fields: dict[str, str] = {}  # data-field -> text
        self.step_titles: list[str] = []
        self.ids: set[str] = set()
        self.header: dict[str, str] = {}  # attributes of the header line (#stats)
        self.header_text = ""
        self._table: str | None = None
        self._text: list[str] | None = None
        self._field: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and "data-job" in a:
            self.rows[a["data-job"]] = a
        elif tag == "tr" and "data-kind" in a and self._table:
            self.kinds[self._table].append(a["data-kind"])
        elif tag == "section" and a.get("id") == "detail":
            self.detail = a
        elif (tag == "strong" and a.get("class") == "title") or (tag == "dd" and "data-field" in a):
            self._text, self._field = [], a.get("data-field")
        elif tag == "p" and a.get("id") == "stats":
            self.header, self._text, self._field = a, [], "#stats"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("strong", "dd", "p") and self._text is not None:
            text = "".join(self._text)
            if self._field == "#stats":
                self.header_text = text
            elif self._field is None:
                self.step_titles.append(text)
            else:
                self.fields[self._field] = text
            self._text = self._field = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def web(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`plangate web` as its own process on a free loopback port: (base URL, process)."""
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(plangate_cmd("web", "--port", str(port)), env=e2e_env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return _get(f"{base}/api/jobs")[0] == 200
        except OSError:
            return False

    try:
        eventually_sync(answers, timeout_s=_READY_DEADLINE_S, interval_s=0.05, what="plangate web to answer")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture
def dump_dom(tmp_path: Path) -> Callable[[str], _Page]:
    """Load a URL in headless Chromium, let its script poll, and parse the resulting DOM."""
    chromium = _chromium()
    profile = tmp_path / "chromium-profile"

    def dump(url: str) -> _Page:
        result = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={_VIRTUAL_TIME_MS}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=_DUMP_TIMEOUT_S,
        )
        assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
        return _Page(result.stdout)

    return dump


def _wait_for_worker(redis_url: str, key_prefix: str, deadline_s: float = _READY_DEADLINE_S) -> None:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        eventually_sync(
            lambda: client.zcard(f"{key_prefix}workers"),
            timeout_s=deadline_s,
            interval_s=0.05,
            what="a worker to heartbeat",
        )
    finally:
        client.close()


def test_live_view_follows_a_streaming_job(
    e2e_env: dict[str, str],
    redis_url: str,
    key_prefix: str,
    start_workers: Callable[..., list[subprocess.Popen]],
    web: tuple[str, subprocess.Popen],
    dump_dom: Callable[[str], _Page],
) -> None:
    base, _ = web
    start_workers(1)
    first = dump_dom(base + "/")
    assert "running" in first.ids  # the page renders (and Chromium is warm)
    assert first.header_text.startswith("queue depth 0 \u00b7 deferred 0 \u00b7 running 0"), first.header_text
    _wait_for_worker(redis_url, key_prefix)

    submitted = subprocess.run(
        plangate_cmd("submit", "--description", _DESCRIPTION, "--model", "scripted-slow"),
        env=e2e_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    # The list: the row shows PLAN while the answer streams (about 5 s), then done.
    seen: list[tuple[str, str]] = []

    def row_done() -> bool:
        row = dump_dom(base + "/").rows.get(job_id)
        if row is not None and (not seen or seen[-1] != (row["data-state"], row["data-phase"])):
            seen.append((row["data-state"], row["data-phase"]))
        return bool(seen) and seen[-1][0] == "done"

    eventually_sync(
        row_done, timeout_s=90, interval_s=0, what=lambda: f"the row to show done; it showed {seen}"
    )
    assert ("running", "PLAN") in seen, f"the row never showed PLAN while streaming: {seen}"
    assert seen.index(("running", "PLAN")) < len(seen) - 1

    # The detail: status, plan steps, the job's event stream and its ledger record.
    pages: list[_Page] = []  # the latest dump, for the failure message

    def ledger_done() -> _Page | None:
        pages[:] = [dump_dom(f"{base}/job/{job_id}")]
        return pages[-1] if "done" in pages[-1].kinds.get("ledger-events", []) else None

    page = eventually_sync(
        ledger_done,
        timeout_s=30,
        interval_s=0,
        what=lambda: f"the ledger record to show done: {dict(pages[-1].kinds)}",
    )
    assert page.detail["data-job"] == job_id and page.detail["data-state"] == "done"
    # The header names the job and its state (it used to stay at "loading..." on a job's page).
    assert page.header.get("data-job") == job_id and page.header.get("data-state") == "done"
    assert page.header_text.startswith(f"job {job_id} \u00b7 done \u00b7 attempt 1"), page.header_text
    assert "agent llm-planner-001" in page.header_text and "tenant default" in page.header_text
    assert page.step_titles[0] == "Gather read-only context"
    assert page.step_titles[-1] == "Hand the plan to a human for review"
    assert page.fields["decision"] == "EXECUTE"
    kinds = page.kinds["events"]
    assert kinds[0] == "phase" and "progress" in kinds and kinds[-1] == "terminal"
    assert page.kinds["ledger-events"][0] == "submitted"
    # Markup in a description is shown as text, never parsed.
    assert page.fields["description"] == _DESCRIPTION
    assert "injected" not in page.ids
    by_hash = dump_dom(f"{base}/#{job_id}")
    assert by_hash.detail.get("data-state") == "done" and by_hash.header.get("data-job") == job_id


def test_web_is_read_only_and_answers_known_paths_only(web: tuple[str, subprocess.Popen]) -> None:
    base, proc = web
    status, body = _get(f"{base}/api/jobs")
    assert status == 200 and set(json.loads(body)) >= {"queued", "running", "recent"}
    status, body = _get(f"{base}/api/stats")
    assert status == 200 and json.loads(body)["queue_depth"] == 0
    assert _get(f"{base}/")[0] == 200 and _get(f"{base}/static/app.js")[0] == 200
    assert _get(f"{base}/api/jobs/{'0' * 32}")[0] == 404  # a valid id that no job has
    unknown = ("/etc/passwd", "/api/jobs/a.b", "/api/jobs/..%2Fetc", "/job/%3Cx%3E", "/api/jobsx", "/static/")
    for path in unknown:
        assert _get(base + path)[0] == 404, path
    assert _get(f"{base}/api/stats?minutes=0")[0] == 400
    status, _ = _get(f"{base}/api/jobs", method="POST")
    assert status == 405
    assert _get(f"{base}/", headers={"Host": "attacker.example"})[0] == 421  # DNS rebinding
    _, text = _get(f"{base}/")
    assert '<script src="/static/app.js">' in text

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_web_refuses_bad_flags_with_one_line(e2e_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            ("--host", "0.0.0.0"): "loopback only",
            ("--port", "99999"): "a port is 0..65535",
            ("--port", "http"): "not a port number",
            ("--port", str(port)): f"cannot listen on 127.0.0.1 port {port}",
        }
        for flags, message in cases.items():
            result = subprocess.run(
                plangate_cmd("web", *flags), env=e2e_env, capture_output=True, text=True, timeout=30
            )
            lines = [line for line in result.stderr.splitlines() if not line.startswith("usage:")]
            assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (flags, result.stderr)
            assert "Traceback" not in result.stderr
