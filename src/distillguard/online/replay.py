"""Replay a stored traffic log through the online path, in time order, as a gateway would have seen it.

For every exchange: ``score_one`` (state before it) → decision → ``learn_one``. At every
``batch_every`` boundary the batch stages (features, edges, clusters — ``detect.run_stages``) run on
the store *as of that moment* and the scorer's cluster view is refreshed, so no decision uses data
from its future. Content signals are per exchange (no look-ahead) and are computed once for the log,
as ``detect`` does.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from distillguard.online.audit import AuditLog
from distillguard.online.batchview import BatchView
from distillguard.online.policy import Policy
from distillguard.online.scorer import OnlineScorer
from distillguard.scoring.risk import RiskModel

__all__ = ["ReplaySummary", "replay"]

_COLS = ("request_id", "account_id", "client_ip", "asn", "user_agent", "model", "conversation_id", "turn_index",
         "n_tools", "thinking", "max_tokens", "input_tokens", "output_tokens")
_SIG = ("capability", "cot_score", "template_fp", "preamble_fp")
_STREAM_SQL = ("SELECT epoch_us(e.ts) AS ts, " + ", ".join(f"e.{c}" for c in _COLS) + ", "
               + ", ".join(f"s.{c}" for c in _SIG) + ", s.request_id IS NOT NULL AS has_sig "
               "FROM exchanges e LEFT JOIN signals s ON s.request_id = e.request_id "
               "WHERE e.ts > CAST(? AS TIMESTAMPTZ) AND e.ts <= CAST(? AS TIMESTAMPTZ) ORDER BY e.ts, e.request_id")


@dataclass
class ReplaySummary:
    db: str
    out: str
    exchanges: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    batch_runs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    decisions_per_s: float = 0.0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _boundaries(first: datetime, last: datetime, every: timedelta | None) -> list[datetime]:
    out = []
    if every is not None:
        t = first.replace(minute=0, second=0, microsecond=0) + every
        while t < last:
            out.append(t)
            t += every
    out.append(last)
    return out


def replay(db: Path | str, out_dir: Path | str, *, model: RiskModel | None = None, policy: Policy | None = None,
           batch_every: timedelta | None = timedelta(days=1), audit: bool = True, chunk_rows: int = 65_536,
           snapshot: Path | str | None = None) -> ReplaySummary:
    """Stream ``exchanges`` (ts order, joined with ``signals``) through an :class:`OnlineScorer` and write
    ``out_dir/decisions.jsonl`` (contract ``decisions``, one line per exchange, in ts order) and, with
    ``audit``, the Parquet audit log in ``out_dir/audit/``. ``batch_every=None``: no batch refresh
    (online evidence and the replacement rule only). The batch stages rewrite the store's
    ``account_features``, ``edges`` and ``clusters`` tables, as ``distillguard detect`` does."""
    from distillguard.content import build_signals
    from distillguard.detect import DetectSummary, run_stages
    from distillguard.engines import DuckDBEngine
    from distillguard.scoring.defaults import default_model
    from distillguard.store import connect

    model = model or default_model()
    policy = policy or Policy.default()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = ReplaySummary(db=str(db), out=str(out))
    secs: Counter[str] = Counter()
    con = connect(db, memory_limit="2GB")
    engine = DuckDBEngine(con)
    scorer = OnlineScorer(model, policy)
    log = AuditLog(out / "audit", batch_rows=100_000) if audit else None
    actions: Counter[str] = Counter()
    dec_path = out / "decisions.jsonl"
    tmp = dec_path.with_suffix(".jsonl.tmp")
    try:
        first, last = con.execute("SELECT min(ts), max(ts) FROM exchanges").fetchall()[0]
        if first is None:
            raise ValueError(f"{db}: no exchanges in the store (run `distillguard ingest` first)")
        t0 = time.perf_counter()
        if not engine.has_table("signals") or con.execute("SELECT count(*) FROM signals").fetchall()[0][0] == 0:
            build_signals(engine, as_of=last)
        secs["signals"] += time.perf_counter() - t0
        # A model's output ceiling is a static property of the API (its documented max_tokens), known
        # before any traffic; seed it so "at ceiling" does not mean "at the largest value seen so far".
        for m, c in con.execute("SELECT model, max(max_tokens) FROM exchanges GROUP BY model").fetchall():
            if c is not None:
                scorer.features.context.ceiling[m] = c
        t0 = time.perf_counter()
        for batch in con.sql("SELECT * FROM accounts").to_arrow_reader(chunk_rows):
            for row in batch.to_pylist():
                scorer.learn_account(row)
        secs["accounts"] += time.perf_counter() - t0
        prev = first - timedelta(microseconds=1)
        det = DetectSummary(db=str(db), as_of=None)
        with tmp.open("w") as fh:
            for b in _boundaries(first, last, batch_every):
                t0 = time.perf_counter()
                reader = con.sql(_STREAM_SQL, params=[prev, b]).to_arrow_reader(chunk_rows)
                for batch in reader:
                    lines = []
                    for r in batch.to_pylist():
                        sig = {k: r[k] for k in _SIG} if r.pop("has_sig") else None
                        if sig is not None:
                            r["signals"] = sig
                        d = scorer.score_one(r)
                        scorer.learn_one(r, sig, d)
                        actions[d.action] += 1
                        lines.append(json.dumps(d.to_contract()))
                        if log is not None:
                            log.append(d, r["ts"])
                    if lines:
                        fh.write("\n".join(lines) + "\n")
                    summary.exchanges += batch.num_rows
                secs["stream"] += time.perf_counter() - t0
                prev = b
                if batch_every is not None and b < last:
                    t0 = time.perf_counter()
                    features, clusters = run_stages(engine, b, det)
                    scorer.load_batch(BatchView.from_scored(model, features, clusters, b))
                    summary.batch_runs += 1
                    secs["batch"] += time.perf_counter() - t0
        tmp.replace(dec_path)
        summary.files.append(str(dec_path))
        if log is not None:
            log.close()
            summary.files.append(str(log.path))
        if snapshot is not None:
            summary.files.append(str(scorer.snapshot(snapshot)))
    finally:
        con.close()
        if tmp.exists():
            tmp.unlink()
    summary.actions = dict(sorted(actions.items()))
    summary.seconds = {k: round(v, 3) for k, v in secs.items()}
    if secs["stream"] > 0:
        summary.decisions_per_s = round(summary.exchanges / secs["stream"], 1)
    return summary


