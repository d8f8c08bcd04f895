"""The ledger store's work per event, for an instruction count (repeatable on a noisy machine).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.ledger_cost done
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.ledger_cost done --setup-only

The difference of the two "Collected" totals, divided by the event count (2,000), is the instructions
per event of decoding stream entries and inserting them in batches of 1,000 (chain rows, projections,
search rows, COMMIT). `jobs` instead of `done` uses the pipeline's mix (see bench/inproc.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
from pathlib import Path

from bench.inproc import backlog_event
from ledger import migrations
from ledger.events import decode_entry
from ledger.sqlite_store import connect_writer, insert_batch_sync
from plangate_base import codec
from plangate_base.vocabulary import LEDGER_STREAM_FIELD
from worker.llm_stub.server import answer_text

EVENTS = 2_000
BATCH = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mix", choices=("done", "jobs"))
    parser.add_argument("--setup-only", action="store_true", help="everything but the inserts (the baseline)")
    args = parser.parse_args()
    plan_text = answer_text([{"role": "user", "content": "Plan a rollout, then a rollback"}], "scripted")
    output = json.loads(plan_text)
    raws = [codec.dumps(backlog_event(number, args.mix, output)) for number in range(EVENTS)]
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "ledger.db"
        migrations.migrate_file(path)
        conn = connect_writer(path)
        gc.collect()
        gc.freeze()
        if not args.setup_only:
            for start in range(0, EVENTS, BATCH):
                entries = range(start, min(EVENTS, start + BATCH))
                insert_batch_sync(
                    conn, [decode_entry(f"{n}-0", {LEDGER_STREAM_FIELD: raws[n]})[0] for n in entries]
                )
        conn.close()


if __name__ == "__main__":
    main()
