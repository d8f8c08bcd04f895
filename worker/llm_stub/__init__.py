"""The scripted OpenAI-compatible endpoint: a real HTTP server on loopback that the demo, the tests
and the benchmarks talk to instead of a real LLM (`plangate llm-stub`)."""
