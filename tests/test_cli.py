"""The command line: exit codes, summaries and help a newcomer can read."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from conftest import account, exchange, write_jsonl
from distillguard.cli import app

runner = CliRunner()


def test_help_names_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("ingest", "stats"):
        assert cmd in res.output
    res = runner.invoke(app, ["ingest", "--help"])
    assert res.exit_code == 0 and "quarantin" in res.output and "--db" in res.output


def test_ingest_then_stats(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "accounts.jsonl", [account(i) for i in range(3)])
    write_jsonl(logdir / "exchanges.jsonl", [exchange(i) for i in range(10)] + ["bad line"])
    db = tmp_path / "s.duckdb"
    res = runner.invoke(app, ["ingest", str(logdir), "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["rows_read"], summary["stored"], summary["quarantined"]) == (14, 13, 1)
    assert summary["unknown_account_exchanges"] == 4  # acct_3 and acct_4 are not in accounts

    res = runner.invoke(app, ["ingest", str(logdir), "--db", str(tmp_path / "t.duckdb")])
    assert res.exit_code == 0
    unwrapped = "".join(res.output.split())  # rich wraps long paths at the console width
    assert "exchanges.jsonl:11:notvalidJSON" in unwrapped  # the file, the row and why

    res = runner.invoke(app, ["stats", "--db", str(db), "--json"])
    assert res.exit_code == 0
    stats = json.loads(res.output)
    assert stats["tables"]["exchanges"] == 10 and stats["tables"]["quarantine"] == 1
    assert stats["quarantine_by_reason"][0]["reason"] == "not valid JSON"
    res = runner.invoke(app, ["stats", "--db", str(db)])
    assert res.exit_code == 0 and "quarantine" in res.output


def test_exit_codes(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "exchanges.jsonl", ["bad", "worse"])
    res = runner.invoke(app, ["ingest", str(logdir), "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 1  # nothing usable was read
    res = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["stats", "--db", str(tmp_path / "nothing.duckdb")])
    assert res.exit_code == 2
