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
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def _get(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class Web:
    """`plangate web` (the API app) as a process: its base URL, the process, and how to make tokens."""

    base: str
    proc: subprocess.Popen
    env: dict[str, str]

    def cli(self, *args: str) -> str:
        done = subprocess.run(plangate_cmd(*args), env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def token(self, scope: str = "admin") -> str:
        return self.cli("tokens", "issue", "--scope", scope)

    def login_url(self, token: str, page: str) -> str:
        """A one-time link that signs a browser in as `token` and opens `page` (a /web path)."""
        request = urllib.request.Request(
            self.base + "/v1/web/login-links", method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            link = json.loads(response.read())["url"]
        return f"{self.base}{link}?{urllib.parse.urlencode({'next': page})}"

    def session(self, token: str) -> str:
        """Sign in through the form, as a person does; the session cookie (`name=value`)."""
        opener = urllib.request.build_opener(_NoRedirect)
        form = urllib.parse.urlencode({"token": token}).encode()
        try:
            opener.open(
                urllib.request.Request(self.base + "/web/login", data=form, method="POST"), timeout=10
            )
        except urllib.error.HTTPError as exc:
            assert exc.code == 303, exc.code
            cookie = exc.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/web" in cookie, cookie
            return cookie.split(";", 1)[0]
        raise AssertionError("signing in did not redirect")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.fixture
def web(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Web]:
    """`plangate web` as its own process on a free loopback port."""
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(plangate_cmd("web", "--port", str(port)), env=e2e_env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return _get(f"{base}/healthz")[0] == 200
        except OSError:
            return False

    try:
        eventually_sync(answers, timeout_s=_READY_DEADLINE_S, interval_s=0.05, what="plangate web to answer")
        yield Web(base, proc, e2e_env)
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
def dump_dom(tmp_path: Path, web: Web) -> Callable[..., _Page]:
    """Sign in (a one-time link) as `token`, load a /web page in headless Chromium, let its script poll,
    and parse the resulting DOM."""
    chromium = _chromium()
    profile = tmp_path / "chromium-profile"
    admin = web.token()

    def dump(page: str, token: str | None = None) -> _Page:
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
                web.login_url(token or admin, page),
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
    dump_dom: Callable[..., _Page],
) -> None:
    start_workers(1)
    first = dump_dom("/web/")
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
        row = dump_dom("/web/").rows.get(job_id)
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
        pages[:] = [dump_dom(f"/web/job/{job_id}")]
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
    by_hash = dump_dom(f"/web/#{job_id}")
    assert by_hash.detail.get("data-state") == "done" and by_hash.header.get("data-job") == job_id


def test_web_needs_a_session_and_answers_known_paths_only(web: Web) -> None:
    base = web.base
    assert _get(f"{base}/web/api/jobs")[0] == 401  # no session
    assert _get(f"{base}/web/api/jobs", headers={"Cookie": "plangate_session=" + "a" * 64})[0] == 401
    assert "Sign in" in _get(f"{base}/web/")[1]  # the page sends a stranger to the sign-in
    admin = {"Cookie": web.session(web.token())}
    status, body = _get(f"{base}/web/api/jobs", headers=admin)
    assert status == 200 and set(json.loads(body)) >= {"queued", "running", "recent"}
    status, body = _get(f"{base}/web/api/stats", headers=admin)
    assert status == 200 and json.loads(body)["queue_depth"] == 0
    assert _get(f"{base}/web/", headers=admin)[0] == 200 and _get(f"{base}/web/static/app.js")[0] == 200
    assert _get(f"{base}/web/api/jobs/{'0' * 32}", headers=admin)[0] == 404  # a valid id that no job has
    unknown = (
        "/etc/passwd",
        "/web/api/jobs/a.b",
        "/web/api/jobs/..%2Fetc",
        "/web/job/%3Cx%3E",
        "/web/api/jobsx",
    )
    for path in unknown:
        assert _get(base + path, headers=admin)[0] == 404, path
    assert _get(f"{base}/web/api/stats?minutes=0", headers=admin)[0] == 422
    assert _get(f"{base}/web/api/jobs", method="POST", headers=admin)[0] == 405
    _, text = _get(f"{base}/web/", headers=admin)
    assert '<script src="/web/static/app.js">' in text
    assert _get(f"{base}/web/login/{'b' * 64}")[0] == 404  # no such one-time link
    # a tenant's token sees its own jobs, and not the queue's numbers
    tenant = {"Cookie": web.session(web.cli("tokens", "issue", "--scope", "tenant", "--tenant", "default"))}
    assert _get(f"{base}/web/api/jobs", headers=tenant)[0] == 200
    assert _get(f"{base}/web/api/stats", headers=tenant)[0] == 403

    web.proc.send_signal(signal.SIGTERM)
    assert web.proc.wait(timeout=10) == 0


def test_a_reviewer_decides_an_escalated_plan_on_the_page(
    web: Web, start_workers: Callable[..., list[subprocess.Popen]], dump_dom: Callable[..., _Page]
) -> None:
    web.cli("tenants", "add", "default")
    reviewer_key = web.cli("reviewers", "add", "dana", "--tenant", "default").split()[-1]
    start_workers(1)
    job_id = web.cli("submit", "--description", "Plan for review", "--model", "scripted-low-confidence")
    eventually_sync(
        lambda: web.cli("status", job_id, "--json").find('"ESCALATE"') > 0,
        timeout_s=60,
        interval_s=0.2,
        what="the job to end escalated",
    )
    page = dump_dom(f"/web/job/{job_id}", reviewer_key)
    assert {"review-approve", "review-reject", "review-note"} <= page.ids
    assert "review-approve" not in dump_dom(f"/web/job/{job_id}").ids  # an admin is no reviewer
    session = {"Cookie": web.session(reviewer_key), "Content-Type": "application/json"}
    url = f"{web.base}/web/api/reviews/{job_id}/approve"
    note = json.dumps({"note": "looks <b>right</b>"}).encode()
    assert _get(url, "POST", session, note)[0] == 403  # no X-Plangate-Web header: a cross-site form
    status, body = _get(url, "POST", {**session, "X-Plangate-Web": "1"}, note)
    assert status == 200 and json.loads(body)["review"]["by"] == "dana", body
    assert _get(url, "POST", {**session, "X-Plangate-Web": "1"}, note)[0] == 409  # once only
    decided = dump_dom(f"/web/job/{job_id}", reviewer_key)
    assert "review-approve" not in decided.ids


def test_web_refuses_bad_flags_with_one_line(e2e_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
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
