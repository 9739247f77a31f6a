"""Batch detection end to end: signals → features → edges → clusters → scores → detections → reports.

Each stage reads and writes documented tables in the store (see ``docs/detection.md``). With
``step``, detection runs as it would have run in production every ``step`` over the log, each
time on data up to that moment only, so ``first_flagged_at`` is honest (no look-ahead).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from distillguard.contract import DETECTIONS
from distillguard.engines import DuckDBEngine, Engine, portable_sql
from distillguard.scoring.defaults import default_model
from distillguard.scoring.risk import RiskModel
from distillguard.store import DEFAULT_DB, connect

__all__ = ["DetectSummary", "detect", "run_stages"]

# Every account known by then is scored, with or without traffic: an account created in a hydra wave
# that shares a card with a flagged cluster is flagged before it sends a request.
SCORED_ACCOUNTS = portable_sql(
    "detect.scored_accounts",
    "SELECT a.account_id AS account_id, f.* EXCLUDE (account_id) FROM accounts a "
    "LEFT JOIN account_features f ON f.account_id = a.account_id "
    "WHERE a.created_at <= (SELECT max(as_of) FROM account_features) "
    "UNION ALL SELECT f.* FROM account_features f "
    "WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = f.account_id) ORDER BY account_id",
)


@dataclass
class DetectSummary:
    """What a detection run did, and how long each stage took."""

    db: str
    as_of: str | None
    accounts_scored: int = 0
    accounts_flagged: int = 0
    campaigns: int = 0
    steps: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(summary: DetectSummary, name: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    summary.stage_seconds[name] = round(summary.stage_seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
    return out


def run_stages(engine: Engine, as_of: datetime | None, summary: DetectSummary) -> tuple[pa.Table, pa.Table]:
    """Features, edges and clusters as of a moment; returns (features, clusters) for scoring."""
    from distillguard.features import build_features
    from distillguard.graph import build_clusters, build_edges

    _timed(summary, "features", build_features, engine, as_of=as_of)
    _timed(summary, "edges", build_edges, engine, as_of=as_of)
    _timed(summary, "clusters", build_clusters, engine)
    features = engine.query(SCORED_ACCOUNTS)
    clusters = engine.query("SELECT account_id, cluster_id, cluster_size FROM clusters")
    return features, clusters


def detect(
    db: Path | str = DEFAULT_DB,
    out: Path | str | None = None,
    *,
    as_of: datetime | None = None,
    step: timedelta | None = None,
    model: RiskModel | None = None,
    reports: bool = True,
    progress: bool = True,
    console: Console | None = None,
    signal_sample: int | None = None,
    signal_workers: int = 1,
    intel_keys: Any = None,
    intel_rule: Any = None,
) -> DetectSummary:
    """Run batch detection on the store and write ``detections`` (table and ``out/detections.jsonl``).

    ``as_of``: use only exchanges up to this moment (default: everything). ``step``: also run at
    every ``step`` from the first exchange on, recording when each account was first flagged.
    ``model``: a calibrated :class:`RiskModel` (default: the one shipped with the package,
    calibrated on a benign-only simulation; calibrate on your own benign traffic with
    ``distillguard calibrate``). ``signal_sample``: compute content signals on at most this many
    exchanges per account per day, chosen by a hash of request_id (shares stay unbiased; for logs
    too large to classify every prompt). ``signal_workers``: processes for the content stage (same
output; worth it when the cores are otherwise idle). ``intel_keys``: a :class:`distillguard.share.KeyRing`; with
    it, indicators imported from peers (``distillguard share import``) are matched first (table
    ``indicator_matches``) and matching accounts get ``SHARED_INDICATOR`` reasons (a table written
    by ``distillguard share match`` is used as is). ``intel_rule``: a
    :class:`distillguard.share.IntelRule` that lets such matches flag an account (off by default;
    see ``docs/sharing.md``).
    """
    from distillguard.content import build_signals

    model = model or default_model()
    con = connect(db, memory_limit="4GB")
    engine = DuckDBEngine(con)
    summary = DetectSummary(db=str(db), as_of=as_of.isoformat() if as_of else None)
    try:
        first, last = con.execute("SELECT min(ts), max(ts) FROM exchanges").fetchall()[0]
        if first is None:
            raise ValueError(f"{db}: no exchanges in the store (run `distillguard ingest` first)")
        end = min(as_of, last) if as_of else last
        _timed(summary, "signals", build_signals, engine, as_of=end, sample=signal_sample,
               workers=signal_workers)
        moments = step_moments(first, end, step) if step else []
        moments.append(end)
        intel = _load_intel(engine, intel_keys)
        first_flag: dict[str, datetime] = {}
        bar = Progress(TextColumn("[bold]detect"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                       TimeElapsedColumn(), console=console, disable=not progress)
        with bar:
            task = bar.add_task("steps", total=len(moments))
            for t in moments:
                features, clusters = run_stages(engine, t, summary)
                scored = _timed(summary, "score", model.score, features, clusters)
                if intel is not None:
                    from distillguard.share.watchlist import apply_intel

                    scored = apply_intel(scored, intel[0], intel[1], t, intel_rule)
                for a, f in zip(scored["account_id"], scored["flagged"], strict=True):
                    if f and a not in first_flag:
                        first_flag[a] = t
                bar.advance(task)
        summary.steps = len(moments)
        table = _detections_table(scored, first_flag)
        engine.register("_detections", table)
        engine.create_table_as("detections", "SELECT * FROM _detections")
        summary.accounts_scored = table.num_rows
        summary.accounts_flagged = int(np.sum(scored["flagged"]))
        if out is not None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            path = out / "detections.jsonl"
            _write_jsonl(table, path)
            summary.files.append(str(path))
            if reports:
                from distillguard.report import build_campaigns, write_reports

                summary.campaigns = _timed(summary, "campaigns", build_campaigns, engine)
                files = _timed(summary, "reports", write_reports, engine, out / "reports")
                summary.files.extend(str(f) for f in files)
    finally:
        con.close()
    return summary


def _load_intel(engine: DuckDBEngine, keys: Any) -> tuple[list[dict[str, Any]], dict[str, datetime]] | None:
    """Rows of ``indicator_matches`` (rebuilt first when group keys are given) and each account's
    first exchange; None when there is no imported intel (detection then runs exactly as without)."""
    if keys is not None and engine.has_table("shared_indicators"):
        from distillguard.share.watchlist import build_indicator_matches

        build_indicator_matches(engine.con, keys)
    if not engine.has_table("indicator_matches"):
        return None
    matches = engine.query("SELECT * FROM indicator_matches").to_pylist()
    if not matches:
        return None
    first = {r["account_id"]: r["first"] for r in
             engine.query("SELECT account_id, min(ts) AS first FROM exchanges GROUP BY account_id").to_pylist()}
    return matches, first


def step_moments(first: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The as-of moments of stepwise detection: every ``step`` from the hour of ``first``, before ``end``."""
    t = first.replace(minute=0, second=0, microsecond=0) + step
    out = []
    while t < end:
        out.append(t)
        t += step
    return out


def _detections_table(scored: dict[str, Any], first_flag: dict[str, datetime]) -> pa.Table:
    flagged = scored["flagged"]
    return pa.table(
        {
            "account_id": scored["account_id"],
            "score": np.round(scored["score"], 6),
            "flagged": flagged,
            "cluster_id": scored["cluster_id"],
            "first_flagged_at": [first_flag.get(a) if f else None
                                 for a, f in zip(scored["account_id"], flagged, strict=True)],
            "reasons": scored["reasons"],
        },
        schema=DETECTIONS.schema,
    )


def _write_jsonl(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for row in table.to_pylist():
            ts = row["first_flagged_at"]
            row["first_flagged_at"] = ts.isoformat().replace("+00:00", "Z") if ts else None
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)
