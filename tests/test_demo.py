"""The README's main command (`make demo` runs `python -m distillguard.demo`) works end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import distillguard
from conftest import query


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "distillguard.demo", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for heading in ("1. simulate", "2. ingest", "3. what the store holds"):
        assert heading in res.stdout
    n_truth = sum(1 for line in (out / "traffic" / "truth.jsonl").read_text().splitlines() if '"account"' in line)
    accounts, exchanges, quarantined = query(out / "distillguard.duckdb", "SELECT (SELECT count(*) FROM accounts), "
                                             "(SELECT count(*) FROM exchanges), (SELECT count(*) FROM quarantine)")[0]
    assert accounts == n_truth and exchanges > 1000 and quarantined == 0


def test_public_names_resolve() -> None:
    for name in distillguard.__all__:
        assert hasattr(distillguard, name)
    from distillguard.evaluate import evaluate
    from distillguard.ingest import ingest
    from distillguard.simulate import simulate
    from distillguard.stats import store_stats

    for fn in (ingest, simulate, evaluate, store_stats):
        assert callable(fn) and fn.__doc__
