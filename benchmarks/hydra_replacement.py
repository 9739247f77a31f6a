"""Hydra replacement catch, measured: how many exchanges each replacement account gets served before
the online path stops it (target: within 10).

    .venv/bin/python benchmarks/hydra_replacement.py [--scenario smoke] [--scale S] [--work DIR] [--batch-every 1d]

Simulates (or reuses ``--work``), ingests, replays the log through the online scorer (``replay``, a
copy of the store so the original keeps its tables), then joins ``decisions.jsonl`` with the exchanges
and ``truth.jsonl``. Replacement accounts are the simulator's ``role = replacement-day-N`` accounts
(created after a wave of their campaign was banned); replay never sees the truth. For each: exchanges
served (allow or degrade) before its first challenge or block; "never stopped" when none came.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--batch-every", default="1d")
    args = ap.parse_args()

    import duckdb

    from distillguard.ingest import ingest
    from distillguard.online import replay
    from distillguard.online.command import parse_every
    from distillguard.simulate import simulate

    work = args.work or Path(tempfile.mkdtemp(prefix="hydra_"))
    sim, db = work / "sim", work / "store.duckdb"
    if not db.exists():
        simulate(args.scenario, sim, scale=args.scale, progress=False)
        ingest(sim, db, progress=False)
    copy = work / "replay-store.duckdb"
    shutil.copyfile(db, copy)
    out = work / "hydra-run"
    s = replay(copy, out, batch_every=parse_every(args.batch_every), audit=False)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"""
        WITH t AS (SELECT account_id, campaign_id, role FROM read_json_auto('{sim / "truth.jsonl"}')
                   WHERE kind = 'account' AND role LIKE 'replacement%'),
        d AS (SELECT request_id, action, split_part(reasons[1], ':', 1) AS why
              FROM read_json_auto('{out / "decisions.jsonl"}')),
        e AS (SELECT request_id, account_id, ts FROM read_parquet('{sim / "exchanges.parquet"}')),
        x AS (SELECT t.account_id, t.campaign_id, e.ts, e.request_id, d.action, d.why,
                     row_number() OVER (PARTITION BY t.account_id ORDER BY e.ts, e.request_id) AS k
              FROM t JOIN e USING (account_id) JOIN d USING (request_id)),
        first_stop AS (SELECT account_id, arg_min(why, k) AS why, min(k) AS k FROM x
                       WHERE action IN ('challenge', 'block') GROUP BY account_id)
        SELECT x.account_id, any_value(x.campaign_id) AS campaign, count(*) AS sent,
               count(*) FILTER (WHERE x.action IN ('allow', 'degrade') AND (f.k IS NULL OR x.k < f.k)) AS served_before_stop,
               any_value(f.k) IS NOT NULL AS stopped, any_value(f.why) AS why
        FROM x LEFT JOIN first_stop f USING (account_id) GROUP BY x.account_id""").fetchall()
    con.close()
    served = sorted(r[3] for r in rows if r[4])
    never = [r for r in rows if not r[4]]

    def pct(q: float) -> int | None:
        return served[min(len(served) - 1, int(q * (len(served) - 1)))] if served else None

    res = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "scenario": args.scenario, "scale": args.scale, "exchanges": s.exchanges,
        "replacement_accounts_active": len(rows),
        "stopped": len(served), "never_stopped": len(never),
        "never_stopped_exchanges_served": sum(r[3] for r in never),
        "served_before_stop_median": pct(0.5), "served_before_stop_p90": pct(0.9),
        "served_before_stop_max": served[-1] if served else None,
        "within_10": sum(1 for v in served if v <= 10),
        "by_campaign": {c: sum(1 for r in rows if r[1] == c) for c in sorted({r[1] for r in rows})},
        "stopped_by_first_reason": {w: sum(1 for r in rows if r[4] and r[5] == w)
                                    for w in sorted({r[5] for r in rows if r[4]})},
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
