"""Batch detection end to end on the `smoke` scenario: what it can show at that size.

`smoke` packs every persona and campaign style into 4 days and ~300 accounts, with the heavy
benign personas (agents, eval runners, serverless) over-represented, so the bounds here are looser
than the issue's targets at scale 0.01 (see the README for those, on seeds the detector was not
tuned on). Seed 21 was used for nothing else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distillguard.detect import detect
from distillguard.evaluate import evaluate
from distillguard.ingest import ingest
from distillguard.simulate import simulate


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("detect")
    simulate("smoke", d / "traffic", seed=21, progress=False)
    ingest(d / "traffic", d / "store.duckdb", progress=False)
    summary = detect(d / "store.duckdb", d / "out", step=timedelta(hours=12), progress=False)
    report = evaluate(d / "traffic" / "truth.jsonl", d / "out" / "detections.jsonl").to_dict()
    rows = [json.loads(line) for line in (d / "out" / "detections.jsonl").read_text().splitlines()]
    return {"dir": d, "summary": summary, "report": report, "rows": rows}


def test_every_campaign_is_caught_within_a_day(smoke: dict) -> None:
    for c in smoke["report"]["campaigns"]:
        assert c["n_flagged"] >= 1, c["campaign_id"]
        assert c["timing"]["first_flag_s"] is not None and c["timing"]["first_flag_s"] <= 24 * 3600
    assert smoke["report"]["threshold"]["recall"] >= 0.9


def test_few_benign_accounts_are_flagged(smoke: dict) -> None:
    assert smoke["report"]["benign"]["fpr"] <= 0.05
    by_persona = {p["persona"]: p for p in smoke["report"]["personas"]}
    common = ("casual_chat", "nat_org", "shared_card_org", "mobile_rotating", "cot_student")
    # The threshold lets 0.05% of benign accounts through by construction, and the grouped, behaviour-
    # capped scorer puts that residue in the populous personas rather than the rare heavy ones
    # (docs/detection.md). Over these ~235 accounts that is at most one, never a group of them.
    assert sum(by_persona[p]["n_flagged"] for p in common) <= 1, {p: by_persona[p]["n_flagged"] for p in common}


def test_flags_carry_reasons_and_honest_times(smoke: dict) -> None:
    flagged = [r for r in smoke["rows"] if r["flagged"]]
    assert flagged
    import duckdb

    with duckdb.connect(str(smoke["dir"] / "store.duckdb"), read_only=True) as con:
        log_end = con.execute("SELECT max(ts) FROM exchanges").fetchone()[0]
    for r in flagged:
        assert r["reasons"], r["account_id"]
        assert r["score"] >= 0.5
        when = datetime.fromisoformat(r["first_flagged_at"].replace("Z", "+00:00"))
        at_end = when.replace(tzinfo=None) == log_end.replace(tzinfo=None)
        assert (when.minute == 0 and when.second == 0) or at_end  # a step boundary or the log's end
    for r in smoke["rows"]:
        if not r["flagged"]:
            assert r["score"] < 0.5 and r["first_flagged_at"] is None


def test_reports_are_written(smoke: dict) -> None:
    reports = Path(smoke["dir"]) / "out" / "reports"
    assert (reports / "index.html").exists() and (reports / "campaigns.json").exists()
    assert smoke["summary"].campaigns >= 1


def test_as_of_uses_only_the_past(smoke: dict, tmp_path: Path) -> None:
    d = Path(smoke["dir"])
    cut = datetime(2026, 5, 13, 12, tzinfo=UTC)
    early = detect(d / "store.duckdb", tmp_path / "early", as_of=cut, reports=False, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "early" / "detections.jsonl").read_text().splitlines()]
    assert early.as_of == cut.isoformat()
    import pyarrow.parquet as pq

    accounts = pq.read_table(d / "traffic" / "accounts.parquet").to_pylist()
    created = {a["account_id"]: a["created_at"] for a in accounts}
    assert 0 < len(rows) <= len(created)
    for r in rows:
        assert created[r["account_id"]] <= cut  # accounts signed up later are not scored yet
        if r["first_flagged_at"]:
            assert datetime.fromisoformat(r["first_flagged_at"].replace("Z", "+00:00")) <= cut


def test_detect_sql_transpiles_to_spark() -> None:
    from distillguard.engines import registered_sql, to_spark_sql

    stmts = {k: v for k, v in registered_sql().items() if k.startswith("detect.")}
    assert stmts
    for sql in stmts.values():
        assert "EXCEPT" in to_spark_sql(sql).upper()  # DuckDB's EXCLUDE becomes Spark's EXCEPT


def test_map_batches_keeps_order_and_fails_cleanly() -> None:
    """The engine's pipelined map_batches (reader and writer threads around ``fn``): same rows in the
    same order as a plain loop, and an error in ``fn`` propagates and leaves the old table."""
    import duckdb
    import pyarrow as pa

    from distillguard.engines import DuckDBEngine

    e = DuckDBEngine(duckdb.connect())
    e.execute("CREATE TABLE src AS SELECT range AS x FROM range(10007)")
    schema = pa.schema([("x", pa.int64()), ("y", pa.int64())])

    def fn(b: pa.RecordBatch) -> pa.RecordBatch:
        x = b.column(0)
        return pa.RecordBatch.from_arrays([x, pa.compute.multiply(x, 3)], schema=schema)

    assert e.map_batches("SELECT x FROM src ORDER BY x", fn, into="out", schema=schema, batch_rows=97) == 10007
    got = e.query("SELECT x, y FROM out").to_pydict()
    assert got["x"] == list(range(10007)) and got["y"] == [3 * i for i in range(10007)]

    calls = []

    def bad(b: pa.RecordBatch) -> pa.RecordBatch:
        calls.append(b.num_rows)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return fn(b)

    with pytest.raises(RuntimeError, match="boom"):
        e.map_batches("SELECT x FROM src ORDER BY x", bad, into="out", schema=schema, batch_rows=97)
    assert e.query("SELECT count(*) AS n FROM out").column("n")[0].as_py() == 10007

    def bad_schema(b: pa.RecordBatch) -> pa.RecordBatch:  # the writer thread fails: also propagated
        return pa.RecordBatch.from_arrays([pa.array(["a"] * b.num_rows)], names=["x"])

    with pytest.raises(Exception):  # noqa: B017 - whatever Arrow or DuckDB raise
        e.map_batches("SELECT x FROM src ORDER BY x", bad_schema, into="out", schema=schema, batch_rows=97)
    assert e.query("SELECT count(*) AS n FROM out").column("n")[0].as_py() == 10007


def test_content_dedup_gives_the_same_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    """compute_signals computes each distinct (system, prompt) once per batch and gathers, and the
    template fingerprints each distinct kept-token row once: same output as computing every row."""
    from datetime import timedelta

    import numpy as np
    import pyarrow as pa

    from distillguard.content import _signals, _template

    prompts = ["You are an expert grader. Score this answer 1-10: \"x = 4\"", "def f(x): return x",
               "Think step by step and show all reasoning. What is 17*23?", "", None,
               "Act as a planner. ```code block``` then plan 3 steps", "你是一个助手。请解释量子计算。"]
    systems = [None, "", "You are a helpful assistant.", "Role: tutor 42"]
    rng = np.random.default_rng(7)
    n = 900
    pi, si = rng.integers(0, len(prompts), n), rng.integers(0, len(systems), n)
    prompt = [prompts[i] if prompts[i] is None else prompts[i] + (f" #{j % 5}" if j % 3 else "")
              for j, i in enumerate(pi)]
    t0 = datetime(2026, 4, 22, tzinfo=UTC)
    batch = pa.RecordBatch.from_pydict({
        "request_id": [f"r{j}" for j in range(n)], "account_id": [f"a{j % 13}" for j in range(n)],
        "ts": [t0 + timedelta(seconds=j) for j in range(n)], "system": [systems[i] for i in si], "prompt": prompt,
    })
    fast = _signals.compute_signals(batch)
    monkeypatch.setattr(_signals, "DEDUP_MIN_ROWS", 10**9)
    monkeypatch.setattr(_template, "_unique_rows", lambda keep, k: None)
    slow = _signals.compute_signals(batch)
    assert fast.schema == slow.schema and fast.equals(slow)
    # ... and row by row (split-invariance, so the dedup cannot leak between rows)
    one = pa.Table.from_batches([_signals.compute_signals(batch.slice(j, 1)) for j in range(0, n, 97)])
    assert one.equals(pa.Table.from_batches([fast.take(pa.array(list(range(0, n, 97))))]))


def test_template_fingerprints_dedup_rows() -> None:
    import numpy as np

    from distillguard.content import _template

    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, size=(40, _template._KEEP), dtype=np.int64).astype(np.uint64)
    pick = rng.integers(0, 40, 1000)
    keep, k = base[pick].copy(), rng.integers(0, 4, 40)[pick] * 20  # 0, 20, 40, 60 tokens kept
    k = np.minimum(k, _template._KEEP)
    keep[k[:, None] <= np.arange(_template._KEEP)[None, :]] = 0
    assert _template._unique_rows(keep, k) is not None
    fp, bands = _template._fingerprints(keep, k)
    fp2, bands2 = _template._fingerprints_rows(keep, k)
    assert fp.equals(fp2) and bands.equals(bands2) and fp.null_count == int((k == 0).sum())
