"""`python -m worker.cli ...` is the `plangate` command."""

import sys

from worker.cli.main import main

sys.exit(main())
