"""A webhook receiver on loopback for tests and the bench, and a signature verifier written from the
Standard Webhooks specification (https://www.standardwebhooks.com/, "Verifying webhooks"), deliberately
without calling plangate's own signer.

Each path is `/<behaviour>/<name>`; the behaviours: `ok` (204), `flaky` (503 three times, then 200),
`slow-start` (429 with Retry-After: 1 once, then 200), `hang` (holds the request until `release(name)`),
`redirect` (302 to /ok/<name>), `reject` (400 until `accept(name)`, then 200). Every request is kept:
its headers, body and arrival time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 5 * 60  # the spec's suggested window against replays


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """The spec's check: the secret is `whsec_` + base64 key; the signed content is
    `{webhook-id}.{webhook-timestamp}.{body}`; HMAC-SHA256, base64; `webhook-signature` holds space-
    separated `v1,<signature>` entries, one of which must match (compared in constant time); the
    timestamp must be within the tolerance."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE_S:
        return False
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The server's state: requests by name, and the switches tests flip."""

    requests: dict[str, list[Received]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    open_hangs: int = 0
    most_open_hangs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    releases: dict[str, threading.Event] = field(default_factory=dict)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def got(self, name: str) -> list[Received]:
        with self.lock:
            return list(self.requests.get(name, []))

    def accept(self, name: str) -> None:
        with self.lock:
            self.accepted.add(name)

    def _release_event(self, name: str) -> threading.Event:
        with self.lock:
            return self.releases.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        """Answer the held requests of `name` (200), and the later ones at once."""
        self._release_event(name).set()

    def stop(self) -> None:
        for name in list(self.releases):
            self.release(name)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_receiver() -> Receiver:
    """A receiver on a free loopback port, serving from a thread until `stop()`."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            behaviour, _, name = self.path.strip("/").partition("/")
            got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
            with state.lock:
                seen = state.requests.setdefault(name, [])
                seen.append(got)
                count = len(seen)
                accepted = name in state.accepted
            if behaviour == "flaky":
                self._answer(503 if count <= 3 else 200)
            elif behaviour == "slow-start":
                self._answer(429 if count == 1 else 200, {"Retry-After": "1"} if count == 1 else {})
            elif behaviour == "redirect":
                self._answer(302, {"Location": f"/ok/{name}-redirected"})
            elif behaviour == "reject":
                self._answer(200 if accepted else 400)
            elif behaviour == "hang":
                with state.lock:
                    state.open_hangs += 1
                    state.most_open_hangs = max(state.most_open_hangs, state.open_hangs)
                state._release_event(name).wait(60)
                with state.lock:
                    state.open_hangs -= 1
                self._answer(200)
            else:
                self._answer(204)

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the deliverer gave up on a hanging request
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return state
