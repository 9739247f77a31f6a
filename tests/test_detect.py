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
    for r in flagged:
        assert r["reasons"], r["account_id"]
        assert r["score"] >= 0.5
        when = datetime.fromisoformat(r["first_flagged_at"].replace("Z", "+00:00"))
        assert when.minute == 0 and when.second == 0  # a step boundary (or the log's end)
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
