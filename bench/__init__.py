"""plangate's benchmark harness: `python -m bench --help` (see bench/README.md)."""
