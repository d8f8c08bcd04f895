"""`plangate submit/status/wait/watch/cancel --api URL --token T`: the same commands over the HTTP API.

No Settings and no redis-py: the standard library's HTTP client only (worker/http_client.py). With
`--json` the status object is printed as the API sent it, so a polling agent pays for neither pydantic
nor the status model; the human summary builds the status model to render it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from plangate_base.vocabulary import StreamKind
from worker.cli.main import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    CLIError,
    submit_request,
)
from worker.errors import BadRequest, JobNotFound, NotCancellable, QueueUnavailable, Unauthenticated
from worker.http_client import ApiTransport

# The exit code of each terminal state, by its spelling (the JobState values; a unit test holds the
# two equal), so this path needs no enum import.
EXIT_OF_STATE_NAME = {"done": 0, "refused": 4, "failed": 5, "cancelled": 6}
_LONG_POLL_S = 55.0


def run_over_http(args: argparse.Namespace, api_url: str, token: str | None) -> int:
    """Run the command against the API at `api_url`; its exit code."""
    try:
        transport = ApiTransport(api_url, token)
        run = {
            "submit": _submit,
            "status": _status,
            "wait": _wait,
            "watch": _watch,
            "cancel": _cancel,
        }[args.command]
        code = run(transport, args)
        sys.stdout.flush()
        return code
    except (BadRequest, JobNotFound, Unauthenticated, CLIError) as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_BAD_INPUT
    except QueueUnavailable as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


def _job(job_id: str) -> str:
    import urllib.parse

    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}"


def _print(status: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        sys.stdout.write(json.dumps(status, separators=(",", ":"), ensure_ascii=False) + "\n")
        return
    from worker.cli.render import render_status
    from worker.job_models import JobStatus

    render_status(JobStatus.model_validate(status), sys.stdout)


def _submit(transport: ApiTransport, args: argparse.Namespace) -> int:
    request = submit_request(args)
    if args.agent is None:
        request.pop("agent_id")  # the token's agent
    body = {k: v for k, v in request.items() if v is not None}
    status = transport.call("POST", "/v1/jobs", body)
    if not args.wait:
        if args.json:
            _print(status, args)
        else:
            sys.stdout.write(f"{status['job_id']}\n")
        return EXIT_OK
    return _wait_for(transport, status["job_id"], args.timeout, args)


def _status(transport: ApiTransport, args: argparse.Namespace) -> int:
    _print(transport.call("GET", _job(args.job_id)), args)
    return EXIT_OK


def _wait(transport: ApiTransport, args: argparse.Namespace) -> int:
    return _wait_for(transport, args.job_id, args.timeout, args)


def _wait_for(transport: ApiTransport, job_id: str, timeout: float, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, min(_LONG_POLL_S, deadline - time.monotonic()))
        status = transport.call("GET", f"{_job(job_id)}?wait={left:.3f}", timeout_s=left + 30)
        if status["state"] in EXIT_OF_STATE_NAME:
            _print(status, args)
            return EXIT_OF_STATE_NAME[status["state"]]
        if time.monotonic() >= deadline:
            if args.json:
                _print(status, args)
            sys.stderr.write(f"plangate: job {job_id} not finished after {timeout:g}s\n")
            return EXIT_TIMEOUT


def _watch(transport: ApiTransport, args: argparse.Namespace) -> int:
    final: dict[str, Any] | None = None
    events = transport.events(f"{_job(args.job_id)}/events")
    for kind, data in events:
        final = data.pop("status", final)
        if args.json:
            sys.stdout.write(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")
        else:
            from worker.cli.render import render_event
            from worker.job_models import JobEvent

            render_event(JobEvent.model_validate(data), sys.stdout, live=sys.stdout.isatty())
        if kind == StreamKind.TERMINAL:
            break
    if not args.json:
        _print(final or transport.call("GET", _job(args.job_id)), args)
    return EXIT_OK


def _cancel(transport: ApiTransport, args: argparse.Namespace) -> int:
    try:
        status = transport.call("POST", f"{_job(args.job_id)}/cancel")
    except NotCancellable as exc:
        sys.stderr.write(f"plangate: {exc}\n")
        return EXIT_BAD_INPUT
    if args.json:
        _print(status, args)
    elif status["state"] == "cancelled":
        sys.stdout.write(f"job {status['job_id']} cancelled\n")
    else:
        sys.stdout.write(
            f"job {status['job_id']} is {status['state']}: cancel requested, it stops at its next heartbeat\n"
        )
    return EXIT_OK
