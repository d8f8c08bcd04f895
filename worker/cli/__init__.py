"""The `plangate` command line: `main` builds the parser (worker/cli/main.py); each command group
lives in its own module and imports what it needs only when it runs, so `plangate --help` and the
polling commands start fast."""
