"""Property: whatever rows come in, each one is stored, quarantined or a duplicate: nothing is lost."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import exchange, query, write_jsonl
from distillguard.contract import EXCHANGES
from distillguard.ingest.run import ingest

junk_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=30), st.just("2026-04-22T10:00:00Z"), st.just("\x00"), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def rows(draw: st.DrawFn) -> object:
    i = draw(st.integers(min_value=0, max_value=60))  # small range: repeated request_ids happen
    kind = draw(st.sampled_from(["valid", "mutated", "dropped", "bytes"]))
    row = exchange(i)
    if kind == "mutated":
        row[draw(st.sampled_from(EXCHANGES.names))] = draw(junk_values)
    elif kind == "dropped":
        row.pop(draw(st.sampled_from(EXCHANGES.names)), None)
    elif kind == "bytes":
        return draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ").replace(b"\r", b" ") or b"x"
    return row


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=80))
def test_rows_in_equal_stored_plus_quarantined_plus_duplicates(batch: list[object]) -> None:
    with tempfile.TemporaryDirectory() as d:
        logs = Path(d) / "logs"
        logs.mkdir()
        write_jsonl(logs / "exchanges.jsonl", batch)
        non_blank = sum(1 for line in (logs / "exchanges.jsonl").read_bytes().split(b"\n") if line.strip())
        db = Path(d) / "s.duckdb"
        s = ingest(logs, db, progress=False)
        if s.files_rejected:  # the file opens with another format's magic bytes: set aside whole
            assert (s.rows_read, s.stored) == (0, 0)
            assert query(db, "SELECT count(*), max(row) FROM quarantine") == [(1, None)]
            return
        assert s.rows_read == non_blank
        assert s.rows_read == s.stored + s.quarantined + s.duplicates
        assert query(db, "SELECT (SELECT count(*) FROM exchanges), (SELECT count(*) FROM quarantine)") == [
            (s.stored, s.quarantined)
        ]
