"""The LLM client: one streamed chat completion per call, parsed into a PlanDraft.

`planner` (LLMPlanner: fallback models, retries, the repair round) is the entry point; `stream` reads
one streamed answer, `sse` decodes its events, `error_map` turns SDK and transport errors into
plangate's typed LLM errors, `modes` owns the structured-output modes, `transport` the HTTP client and
its timeouts, `usage` what a call spent. Nothing here is imported until a worker plans (the CLI's
polling commands never load the LLM client).
"""
