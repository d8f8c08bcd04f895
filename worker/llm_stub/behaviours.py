"""The scripted endpoint's behaviours, picked by model name: what `plangate llm-stub --help` lists.

Apart from worker/llm_stub/server.py, which implements them, so the CLI's help needs no server code.
"""

from __future__ import annotations

BEHAVIOURS: dict[str, str] = {
    "scripted": "a valid plan derived from the request, streamed fast (unknown model names behave like this)",
    "scripted-slow": "a valid plan streamed over about 5 s, with SSE comment keep-alive lines between chunks",
    "scripted-429": "first request per conversation: 429 with Retry-After: 1; the next one succeeds",
    "scripted-500": "always HTTP 500 (bounded retries end in failure)",
    "scripted-cut": "first request per conversation: 200, some content, then the connection is cut",
    "scripted-invalid-json": "always answers text that is not JSON (the repair round fails too)",
    "scripted-low-confidence": "a valid plan with confidence 0.3",
    "scripted-forbidden-step": 'a valid plan where one step has actions ["run_terraform"]',
    "scripted-no-json-schema": "400 for response_format json_schema; json_object and prompt mode work",
    "scripted-midstream-error": "first request per conversation: 200, a few chunks, then an SSE error event",
    "scripted-402": "always HTTP 402 (out of credits; never retried)",
    "scripted-fallback": "a valid plan answered by another model (`<name>-backup`), as a router falling back",
    "scripted-stall": "200, a few chunks, then silence for `stall_seconds` (30 s by default), then the rest",
    "scripted-empty": "always a 200 answer that finishes (stop) without any content",
    "scripted-schema-invalid": "always valid JSON that is not a plan (confidence 7, no decision)",
    "scripted-huge-line": "streamed: one content delta on one SSE line of `huge_line_bytes` (64 MiB by "
    "default) over `stream_seconds` (0: as fast as the client reads), then the end (a client's line cap "
    "stops it first)",
    "scripted-endless": "streamed: content deltas without end, as fast as the client reads (a client's "
    "answer cap stops it)",
    "scripted-not-http": "answers bytes that are not HTTP (an SSH banner), then hangs up",
    "scripted-hostile-actions": "a confident EXECUTE plan whose steps need shell, root, database and cluster "
    "actions under disguised names, with undeclared side effects (HOSTILE_ACTIONS, HOSTILE_SIDE_EFFECTS)",
}
# What a hostile or confused LLM answers to slip past a plan check: case, spaces and invisible
# characters around forbidden names, and names outside every vocabulary.
HOSTILE_ACTIONS: tuple[str, ...] = (
    "Execute_Shell",
    "sudo rm -rf /",
    "drop_database",
    "kubectl_delete_namespace",
    "SSH",
    " ssh",
    "ssh\u200b",
)
HOSTILE_SIDE_EFFECTS: tuple[str, ...] = ("write_prod_db", "network_egress")
