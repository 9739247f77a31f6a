"""Ingest: every row stored, quarantined (with file, row, field, reason) or counted as duplicate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import account, exchange, query, write_jsonl
from distillguard.contract import ACCOUNTS, EXCHANGES
from distillguard.ingest.run import ingest


def quarantine(db: Path) -> list[tuple]:
    return query(db, "SELECT table_name, row, field, reason FROM quarantine ORDER BY table_name, row, field")


def test_valid_jsonl_round_trip(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "accounts.jsonl", [account(i) for i in range(5)])
    write_jsonl(logdir / "exchanges.jsonl", [exchange(i) for i in range(20)])
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    assert (s.rows_read, s.stored, s.quarantined, s.duplicates) == (25, 25, 0, 0)
    row = query(db, "SELECT request_id, ts, account_id, asn, thinking, max_tokens FROM exchanges "
                    "WHERE request_id = 'req_61'")
    assert row == []
    row = query(db, "SELECT request_id, epoch(ts), asn, thinking FROM exchanges WHERE request_id = 'req_7'")
    assert row == [("req_7", 1776852007.0, 64500, False)]


@pytest.mark.parametrize("n_good", [3, 600])  # 600: through the fast Arrow parser and its bisection
def test_bad_jsonl_rows_are_quarantined_with_row_and_field(logdir: Path, tmp_path: Path, n_good: int) -> None:
    bad = [
        exchange(9001, ts="22/04/2026 10:00"),  # unparsable timestamp
        exchange(9002, ts="2026-02-30T10:00:00Z"),  # RFC 3339 shape, impossible date
        exchange(9003, asn="AS64500"),  # wrong type
        exchange(9004, thinking="yes"),  # wrong type
        exchange(9005, max_tokens=1.5),  # wrong type (float for int)
        exchange(9006, prompt="x" * 1_048_577),  # huge field
        exchange(9007, user_agent="u" * 2000),  # huge short field
        exchange(9008, prompt="before\u0000after"),  # NUL byte
        '{"request_id": "req_9009", "ts": "2026-04-22T10:00:00Z", "account_id": "a", "model": "m", "prompt": "\xff"}'.encode("latin-1"),
        "{not json",
        "[1, 2, 3]",
        {k: v for k, v in exchange(9012).items() if k != "model"},  # missing required field
        exchange(9013, account_id=""),  # empty required id
        exchange(9014, ts=None),  # null required
    ]
    rows = [exchange(i) for i in range(n_good)] + bad
    write_jsonl(logdir / "exchanges.jsonl", rows)
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    assert (s.rows_read, s.stored, s.quarantined, s.duplicates) == (n_good + 14, n_good, 14, 0)
    got = [(r, f, why.split(":")[0]) for _, r, f, why in quarantine(db)]
    first = n_good + 1
    assert got == [
        (first + 0, "ts", "not an RFC 3339 timestamp"),
        (first + 1, "ts", "unparsable timestamp"),
        (first + 2, "asn", "wrong type"),
        (first + 3, "thinking", "wrong type"),
        (first + 4, "max_tokens", "wrong type"),
        (first + 5, "prompt", "too long"),
        (first + 6, "user_agent", "too long"),
        (first + 7, "prompt", "contains a NUL byte"),
        (first + 8, "prompt", "invalid UTF-8"),
        (first + 9, None, "not valid JSON"),
        (first + 10, None, "row is a JSON array, not an object"),
        (first + 11, "model", "missing required field"),
        (first + 12, "account_id", "empty value for a required field"),
        (first + 13, "ts", "missing required field"),
    ]
    assert query(db, "SELECT count(*) FROM quarantine WHERE source LIKE '%exchanges.jsonl' AND raw <> ''") == [(14,)]


def test_reasons_are_specific(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "exchanges.jsonl", [exchange(1, asn="AS64500"), exchange(2, user_agent="u" * 2000)])
    db = tmp_path / "s.duckdb"
    ingest(logdir, db, progress=False)
    reasons = [r[3] for r in quarantine(db)]
    assert reasons == ['wrong type: expected an integer, got string "AS64500"',
                       "too long: 2000 characters, limit 1024"]


def test_blank_lines_and_unknown_fields_are_fine(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "exchanges.jsonl", [exchange(1, extra={"x": 1}, other="y"), "", "   ", exchange(2)])
    s = ingest(logdir, tmp_path / "s.duckdb", progress=False)
    assert (s.rows_read, s.stored, s.quarantined) == (2, 2, 0)


def test_gzip_jsonl(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "exchanges.jsonl.gz", [exchange(i) for i in range(300)] + ["oops"])
    s = ingest(logdir, tmp_path / "s.duckdb", progress=False)
    assert (s.stored, s.quarantined) == (300, 1)
    assert quarantine(tmp_path / "s.duckdb")[0][:3] == ("exchanges", 301, None)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("exchanges.parquet", b'{"request_id": "r1"}\n', "not a Parquet file"),
        ("exchanges.jsonl.gz", b'{"request_id": "r1"}\n', "named .gz but is not gzip-compressed"),
        ("exchanges.jsonl", b"PAR1\x00\x00binary", "named JSON Lines but is a Parquet file"),
        ("exchanges.jsonl", b"\x1f\x8b\x08\x00junk", "named JSON Lines but is gzip-compressed"),
    ],
)
def test_file_not_the_format_it_claims(logdir: Path, tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (logdir / name).write_bytes(content)
    write_jsonl(logdir / "accounts.jsonl", [account(1)])
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    bad = [x for x in s.sources if x.table == "exchanges"][0]
    assert bad.error is not None and bad.error.startswith(reason)
    assert s.files_rejected == 1 and s.stored == 1
    q = quarantine(db)
    assert len(q) == 1 and q[0][:3] == ("exchanges", None, None) and q[0][3].startswith(reason)


def test_truncated_gzip_keeps_what_was_read(logdir: Path, tmp_path: Path) -> None:
    path = write_jsonl(logdir / "exchanges.jsonl.gz", [exchange(i) for i in range(2000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    s = ingest(logdir, tmp_path / "s.duckdb", progress=False)
    src = s.sources[0]
    assert src.error is not None and "unreadable after line" in src.error
    assert src.stored == src.rows_read  # rows before the damage are kept and counted


def _parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    if schema is None:  # every key of every row (from_pylist would look at the first row only)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.table({k: [r.get(k) for r in rows] for k in keys})
    else:
        table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return path


def test_parquet_file_and_directory(logdir: Path, tmp_path: Path) -> None:
    acc = ACCOUNTS.schema
    rows = [{**account(i), "created_at": datetime(2026, 4, 1, tzinfo=UTC)} for i in range(3)]
    _parquet(logdir / "accounts.parquet", rows, acc)
    part_dir = logdir / "exchanges"
    part_dir.mkdir()
    ex = [exchange(i) for i in range(10)]
    _parquet(part_dir / "part-0.parquet", ex[:5])  # ts as strings: cast and checked like JSON
    _parquet(part_dir / "part-1.parquet", ex[5:])
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    assert (s.stored, s.quarantined) == (13, 0)
    assert query(db, "SELECT count(*), count(DISTINCT ts) FROM exchanges") == [(10, 10)]


def test_parquet_missing_required_column_and_wrong_types(logdir: Path, tmp_path: Path) -> None:
    rows = [{k: v for k, v in exchange(i).items() if k != "prompt"} for i in range(4)]
    _parquet(logdir / "exchanges.parquet", rows)
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    assert (s.rows_read, s.stored, s.quarantined) == (4, 0, 4)
    assert [(r, f, why) for _, r, f, why in quarantine(db)] == [
        (i, "prompt", "missing required column 'prompt'") for i in range(1, 5)
    ]
    assert not s.usable

    other = tmp_path / "logs2"
    other.mkdir()
    rows = [exchange(1, asn="64500"), exchange(2, asn="not-a-number"), exchange(3, asn=None)]
    _parquet(other / "exchanges.parquet", rows)  # asn stored as strings: castable ones pass
    db2 = tmp_path / "s2.duckdb"
    s = ingest(other, db2, progress=False)
    assert (s.stored, s.quarantined) == (2, 1)
    q = quarantine(db2)
    assert q[0][1:3] == (2, "asn") and q[0][3].startswith("wrong type: expected an integer, got string")
    assert query(db2, "SELECT request_id, asn FROM exchanges ORDER BY 1") == [("req_1", 64500), ("req_3", None)]


def test_parquet_nul_and_huge(logdir: Path, tmp_path: Path) -> None:
    _parquet(logdir / "exchanges.parquet", [exchange(1, prompt="a\x00b"), exchange(2, system="s" * 1_048_577),
                                            exchange(3)])
    db = tmp_path / "s.duckdb"
    s = ingest(logdir, db, progress=False)
    assert (s.stored, s.quarantined) == (1, 2)
    assert [(r, f, why.split(":")[0]) for _, r, f, why in quarantine(db)] == [
        (1, "prompt", "contains a NUL byte"), (2, "system", "too long")]


def test_reingest_is_idempotent(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "accounts.jsonl", [account(i) for i in range(5)] + [account(1)])
    write_jsonl(logdir / "exchanges.jsonl", [exchange(i) for i in range(400)] + [exchange(3), "garbage"])
    db = tmp_path / "s.duckdb"
    first = ingest(logdir, db, progress=False)
    assert (first.stored, first.quarantined, first.duplicates) == (405, 1, 2)
    counts = ("SELECT (SELECT count(*) FROM exchanges), (SELECT count(*) FROM accounts), "
              "(SELECT count(*) FROM quarantine)")
    before = query(db, counts)
    again = ingest(logdir, db, progress=False)
    assert (again.stored, again.quarantined, again.duplicates) == (0, 1, 6 + 401)
    assert before == query(db, counts) == [(400, 5, 1)]


def test_same_request_id_at_another_time_is_a_duplicate(logdir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    write_jsonl(logdir / "exchanges.jsonl", [exchange(1)])
    ingest(logdir, db, progress=False)
    write_jsonl(logdir / "exchanges.jsonl", [exchange(1, ts="2026-05-01T00:00:00Z"), exchange(2)])
    s = ingest(logdir, db, progress=False)
    assert (s.stored, s.duplicates) == (1, 1)
    assert query(db, "SELECT request_id, epoch(ts) FROM exchanges ORDER BY 1") == [
        ("req_1", 1776852001.0), ("req_2", 1776852002.0)]


def test_unknown_accounts_are_kept_and_reported(logdir: Path, tmp_path: Path) -> None:
    write_jsonl(logdir / "accounts.jsonl", [account(0), account(1)])
    write_jsonl(logdir / "exchanges.jsonl", [exchange(i) for i in range(10)])  # acct_0..acct_4
    s = ingest(logdir, tmp_path / "s.duckdb", progress=False)
    assert s.stored == 12
    assert (s.unknown_account_exchanges, s.unknown_accounts) == (6, 3)


def test_paths_that_are_not_logs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ingest(tmp_path / "missing", tmp_path / "s.duckdb", progress=False)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown format"):
        ingest(tmp_path / "notes.txt", tmp_path / "s.duckdb", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no accounts"):
        ingest(tmp_path / "empty", tmp_path / "s.duckdb", progress=False)


def test_otel_export_is_ingested(tmp_path: Path) -> None:
    src = Path(__file__).parent / "data" / "otel" / "chat.otlp.json"
    db = tmp_path / "s.duckdb"
    s = ingest(src, db, progress=False)
    assert s.stored >= 1 and s.rows_read == s.stored + s.quarantined + s.duplicates
    assert query(db, "SELECT count(*) FROM exchanges WHERE prompt <> ''")[0][0] >= 1
    assert ("account_id", "missing required field") in [(f, w) for _, _, f, w in quarantine(db)]


def test_store_schema_matches_contract(tmp_path: Path, logdir: Path) -> None:
    write_jsonl(logdir / "exchanges.jsonl", [exchange(1)])
    db = tmp_path / "s.duckdb"
    ingest(logdir, db, progress=False)
    cols = query(db, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'exchanges' ORDER BY column_index")
    assert [c[0] for c in cols] == EXCHANGES.names
    assert json.loads(json.dumps(EXCHANGES.required)) == ["request_id", "ts", "account_id", "model", "prompt"]
