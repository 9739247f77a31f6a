"""An ingest killed with SIGKILL mid-way leaves whole batches only, and a rerun completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import exchange, query, write_jsonl
from distillguard.ingest.run import ingest

CHILD = """
import sys
from distillguard.ingest.run import ingest
ingest(sys.argv[1], sys.argv[2], batch_rows=500, progress=False,
       on_batch=lambda s: print(s.rows_read, flush=True))
"""


def test_kill_9_mid_ingest_then_rerun(logdir: Path, tmp_path: Path) -> None:
    n = 200_000
    # every 100th line is bad, so each 500-line batch holds 495 good rows and 5 quarantined ones
    rows = [exchange(i) if i % 100 != 99 else "not json" for i in range(n)]
    write_jsonl(logdir / "exchanges.jsonl", rows)
    db = tmp_path / "s.duckdb"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(logdir), str(db)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    for _ in range(3):  # three batches committed
        assert child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    stored, quarantined = query(db, "SELECT (SELECT count(*) FROM exchanges), (SELECT count(*) FROM quarantine)")[0]
    batches = stored // 495
    assert stored < n * 0.99, "the kill came too late to test anything"
    assert batches >= 3 and stored == batches * 495, "a batch was half written"
    assert quarantined == batches * 5, "quarantine rows not written with their batch"

    again = ingest(logdir, db, progress=False)
    assert again.duplicates == stored
    assert again.stored == n * 99 // 100 - stored
    assert query(db, "SELECT (SELECT count(*) FROM exchanges), (SELECT count(DISTINCT request_id) FROM exchanges), "
                     "(SELECT count(*) FROM quarantine)") == [(n * 99 // 100, n * 99 // 100, n // 100)]
