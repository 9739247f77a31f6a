"""Two providers, one operator: does provider A's shared intel let provider B catch the campaign earlier?

Simulates two providers hit by the same operator (``distillguard.simulate.providers``: shared payment
instruments, proxy exits and prompt harness; different account ids and benign customers; the campaign
reaches B ``--lag-days`` after A). A runs detection on what it has seen when the operator reaches B,
exports the campaign (k=3, keyed under a group key), B imports the bundle. B then runs detection every
``--step`` over its log twice, without and with A's intel (the opt-in ``IntelRule``), and we compare,
for B's copy of the campaign: time to first flag, time to 90% of its accounts flagged, recall at fixed
cutoffs after its start, and the benign accounts each run flags.

    python benchmarks/two_providers.py [--scenario smoke] [--scale X] [--lag-days 1] [--step 2h] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from distillguard.detect import detect
from distillguard.ingest.run import ingest
from distillguard.scoring.defaults import default_model
from distillguard.share import (
    IntelRule,
    PrivacyPolicy,
    export_campaign,
    generate_key,
    import_bundle,
    load_keys,
)
from distillguard.simulate.providers import simulate_providers, truth_accounts

CUTOFFS_H = (1, 3, 6, 12, 24)


def _hours(text: str) -> timedelta:
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    return timedelta(hours=float(text[:-1]) * units[text[-1]])


def _fmt(td: timedelta | None) -> str:
    return "never" if td is None else f"{td.total_seconds() / 3600:.1f} h"


def _h(v: float | None) -> str:
    return "–" if v is None else ("never" if v == float("inf") else f"{v:.1f} h")


def _campaign_start(db: Path, members: set[str]) -> datetime:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT min(ts) FROM exchanges WHERE account_id IN (SELECT unnest(?))",
                           [sorted(members)]).fetchall()[0][0]
    finally:
        con.close()


def _measure(db: Path, labels: dict[str, str], cid: str, start: datetime, end: datetime) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT account_id, flagged, first_flagged_at FROM detections").fetchall()
    active = dict(con.execute("SELECT account_id, min(ts) FROM exchanges WHERE ts <= ? GROUP BY account_id",
                              [end]).fetchall())
    con.close()
    # the campaign's accounts with traffic in B's log (accounts that never send a request are not counted)
    members = {a for a, lab in labels.items() if lab == f"campaign:{cid}" and a in active}
    flags = {a: t for a, f, t in rows if f}
    times = sorted(flags[a] - start for a in members if a in flags)
    n = len(members)
    out: dict[str, Any] = {
        "first_flag": times[0] if times else None,
        "t90": times[int(0.9 * n) - 1] if len(times) >= int(0.9 * n) and n else None,
        "recall_final": len(times) / n if n else 0.0,
        "benign_flagged": sorted(a for a in flags if labels.get(a, "").startswith("benign:")),
        "n_members": n,
        "other_campaign_flagged": sum(1 for a in flags if labels.get(a, "").startswith("campaign:")
                                      and a not in members),
    }
    # per account: from its own first request to its flag (0 when flagged before or at the step it started)
    lat = sorted(max((flags[a] - active[a]).total_seconds() / 3600, 0.0) if a in flags else float("inf")
                 for a in members)
    out["latency_median_h"] = lat[len(lat) // 2] if lat else None
    out["latency_p90_h"] = lat[max(int(0.9 * len(lat)) - 1, 0)] if lat else None
    for h in CUTOFFS_H:
        cut = start + timedelta(hours=h)
        live = [a for a in members if a in active and active[a] <= cut]
        hit = [a for a in live if a in flags and flags[a] <= cut]
        out[f"recall_{h}h"] = (len(hit), len(live))
    return out


def _on_notice(db: Path, labels: dict[str, str], cid: str, end: datetime) -> dict[str, int]:
    """Accounts an online scorer with the watchlist would put on notice by ``end`` (a match on a kind
    specific enough to act on alone), split into campaign and benign."""
    from distillguard.share.watchlist import ONLINE_KINDS

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT m.account_id, min(m.matched_at), min(x.first) FROM indicator_matches m LEFT JOIN "
        "(SELECT account_id, min(ts) AS first FROM exchanges GROUP BY account_id) x USING (account_id) "
        "WHERE m.kind IN (SELECT unnest(?)) AND m.matched_at <= ? GROUP BY m.account_id",
        [sorted(ONLINE_KINDS), end]).fetchall()
    created = dict(con.execute("SELECT account_id, created_at FROM accounts").fetchall())
    con.close()
    camp = {a for a, lab in labels.items() if lab == f"campaign:{cid}" and a in created and created[a] <= end}
    benign = {a for a, lab in labels.items() if lab.startswith("benign:") and a in created and created[a] <= end}
    hit = {a: (m, f) for a, m, f in rows}
    return {"campaign": len(camp & set(hit)), "campaign_total": len(camp),
            "campaign_before_first_request": sum(1 for a in camp & set(hit) if hit[a][1] is None or hit[a][1] > end
                                                 or hit[a][0] < hit[a][1]),
            "benign": len(benign & set(hit)), "benign_total": len(benign)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--campaign", default="hydra")
    ap.add_argument("--lag-days", type=float, default=1.0)
    ap.add_argument("--step", default="1h")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--horizon-h", type=float, default=24.0,
                    help="B detects up to this many hours after its campaign starts (shorter runs, finer steps)")
    ap.add_argument("--seed-a", type=int, default=1)
    ap.add_argument("--seed-b", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench-out/two_providers"))
    a = ap.parse_args(argv)
    t_all = time.perf_counter()
    model = default_model()  # loaded once: every run below scores with the same calibration
    shutil.rmtree(a.out, ignore_errors=True)
    simulate_providers(a.out / "traffic", scenario=a.scenario, scale=a.scale, seed_a=a.seed_a, seed_b=a.seed_b,
                       campaigns=(a.campaign,), lag_days=a.lag_days)
    la = truth_accounts(a.out / "traffic" / "a" / "truth.jsonl")
    lb = truth_accounts(a.out / "traffic" / "b" / "truth.jsonl")

    # Provider A: detect on what it has seen when the operator reaches B, export the campaign.
    db_a = a.out / "a.duckdb"
    ingest(a.out / "traffic" / "a", db_a, progress=False)
    members_a = {x for x, lab in la.items() if lab == f"campaign:{a.campaign}"}
    start_a = _campaign_start(db_a, members_a)
    as_of = start_a + timedelta(days=a.lag_days)
    detect(db_a, a.out / "det_a", as_of=as_of, step=None, progress=False, model=model)
    con = duckdb.connect(str(db_a), read_only=True)
    camps = con.execute("SELECT campaign_id, members FROM campaigns").fetchall()
    con.close()
    best = max(camps, key=lambda c: len(set(json.loads(c[1])) & members_a))
    key_file = a.out / "group-key.json"
    generate_key(key_file, "bench")
    keys = load_keys(key_file)
    plan = export_campaign(db_a, best[0], keys, a.out / "bundle.json", provider="Provider A",
                           policy=PrivacyPolicy(k=a.k))
    rep = plan.report()

    # Provider B: the same log twice, without and with A's intel.
    results = {}
    for name, intel in (("without intel", False), ("with A's intel", True)):
        db_b = a.out / f"b_{'intel' if intel else 'plain'}.duckdb"
        ingest(a.out / "traffic" / "b", db_b, progress=False)
        if intel:
            import_bundle(db_b, a.out / "bundle.json")
        t0 = time.perf_counter()
        members_b = {x for x, lab in lb.items() if lab == f"campaign:{a.campaign}"}
        start_b = _campaign_start(db_b, members_b)
        detect(db_b, a.out / f"det_b_{int(intel)}", as_of=start_b + timedelta(hours=a.horizon_h),
               step=_hours(a.step), progress=False, model=model,
               intel_keys=keys if intel else None, intel_rule=IntelRule() if intel else None)
        results[name] = _measure(db_b, lb, a.campaign, start_b, start_b + timedelta(hours=a.horizon_h))
        results[name]["detect_s"] = time.perf_counter() - t0
    notice = _on_notice(a.out / "b_intel.duckdb", lb, a.campaign, start_b + timedelta(hours=a.horizon_h))
    plain, withi = results["without intel"], results["with A's intel"]
    added_fp = sorted(set(withi["benign_flagged"]) - set(plain["benign_flagged"]))

    cmd = "python benchmarks/two_providers.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# Two providers, one operator ({a.scenario}, scale {a.scale or 'default'}, campaign {a.campaign!r}, "
          f"lag {a.lag_days} d, B detects every {a.step} up to {a.horizon_h:g} h after its campaign starts)")
    kinds = ", ".join(f"{k} {v['exported']}" for k, v in rep["kinds"].items() if v["exported"])
    print(f"A exported campaign {best[0]} as of {as_of:%Y-%m-%d %H:%M} UTC: {rep['indicators']} indicators "
          f"({kinds}), "
          f"withheld {sum(v['withheld'] for v in rep['kinds'].values())}")
    print()
    head = ["B", "first flag", "90% flagged", "per-account delay median / p90", *[f"recall @{h}h" for h in CUTOFFS_H], f"recall @{a.horizon_h:g}h (all)",
            "benign flagged"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in results.items():
        cells = [name, _fmt(r["first_flag"]), _fmt(r["t90"]),
                 f"{_h(r['latency_median_h'])} / {_h(r['latency_p90_h'])}"]
        cells += [f"{r[f'recall_{h}h'][0]}/{r[f'recall_{h}h'][1]}" for h in CUTOFFS_H]
        cells += [f"{r['recall_final']:.0%}", str(len(r["benign_flagged"]))]
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"benign accounts flagged only with the intel: {len(added_fp)}"
          + (f" ({', '.join(added_fp[:5])})" if added_fp else ""))
    print(f"on notice at B by the horizon through the online watchlist kinds (payment, IP, block, e-mail, "
          f"template, preamble): {notice['campaign']}/{notice['campaign_total']} campaign accounts "
          f"({notice['campaign_before_first_request']} before their first request), "
          f"{notice['benign']} of {notice['benign_total']} benign accounts")
    print("per-account delay: from the account's own first request to its flag (never: not flagged).")
    print(f"recall @Nh: campaign accounts flagged by N hours after B's campaign start / accounts active by then; "
          f"times from B's campaign start; flags quantised to the {a.step} detection step.")
    print(f"total {time.perf_counter() - t_all:.0f} s; command: {cmd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
