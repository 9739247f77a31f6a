"""Two providers hit by the same operator: the simulator's traffic for a cross-provider sharing study.

Provider A and provider B are two independent worlds (different seeds: different benign customers,
account ids, address space). Then the shared campaign at B is made *the same operator's*: B's
campaign accounts use A's campaign payment instruments, A's proxy exits / sign-up addresses (every
row of B on such an exit moves with it, so B's own households behind the proxy keep sharing it), and
A's prompt harness (system preambles and prompts drawn from A's campaign exchanges); its accounts
keep B's ids. B's campaign starts ``lag_days`` later (the operator reaches B after A), so A can
detect and share before B has much evidence of its own. Labels stay in ``truth.jsonl``.

    python -m distillguard.simulate.providers --out two --scenario smoke --campaign hydra --lag-days 1
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.simulate._util import DAY_US, child_rng
from distillguard.simulate.run import simulate

__all__ = ["simulate_providers", "truth_accounts"]


def truth_accounts(truth: Path) -> dict[str, str]:
    """account_id -> label ('campaign:<id>' or 'benign:<persona>') from a truth file."""
    out = {}
    for line in Path(truth).read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "account":
            out[r["account_id"]] = r["label"]
    return out


def _ranked(values: list[Any]) -> list[Any]:
    """Distinct non-null values, most frequent first (ties by value), so the mapping is deterministic."""
    c = Counter(v for v in values if v is not None)
    return [v for v, _ in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def _remap(col: pa.ChunkedArray | pa.Array, mapping: dict[Any, Any]) -> pa.Array:
    vals = col.to_pylist()
    return pa.array([mapping.get(v, v) for v in vals], col.type)


def simulate_providers(out: Path | str, *, scenario: str = "smoke", scale: float | None = None, seed_a: int = 1,
                       seed_b: int = 2, campaigns: tuple[str, ...] = ("hydra",), lag_days: float = 1.0,
                       progress: bool = False) -> dict[str, Any]:
    """Write ``out/a`` and ``out/b`` (each: accounts.parquet, exchanges.parquet, truth.jsonl) and
    ``out/providers.json`` describing what B shares with A; returns that description."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    simulate(scenario, out / "a", scale=scale, seed=seed_a, progress=progress)
    simulate(scenario, out / "b_raw", scale=scale, seed=seed_b, progress=progress)
    la, lb = truth_accounts(out / "a" / "truth.jsonl"), truth_accounts(out / "b_raw" / "truth.jsonl")
    acc_a = pq.read_table(out / "a" / "accounts.parquet")
    ex_a = pq.read_table(out / "a" / "exchanges.parquet")
    acc_b = pq.read_table(out / "b_raw" / "accounts.parquet")
    ex_b = pq.read_table(out / "b_raw" / "exchanges.parquet")
    rng = child_rng(seed_b, 77)
    lag = int(lag_days * DAY_US)
    end_b = int(pc.max(ex_b["ts"]).cast(pa.int64()).as_py())
    info: dict[str, Any] = {"scenario": scenario, "scale": scale, "seed_a": seed_a, "seed_b": seed_b,
                            "lag_days": lag_days, "campaigns": {}}
    for cid in campaigns:
        ma = {a for a, lab in la.items() if lab == f"campaign:{cid}"}
        mb = {a for a, lab in lb.items() if lab == f"campaign:{cid}"}
        if not ma or not mb:
            raise ValueError(f"campaign {cid!r} is not in scenario {scenario!r}")
        in_a_acc = pc.is_in(acc_a["account_id"], pa.array(sorted(ma)))
        in_b_acc = pc.is_in(acc_b["account_id"], pa.array(sorted(mb)))
        in_a_ex = pc.is_in(ex_a["account_id"], pa.array(sorted(ma)))
        in_b_ex = pc.is_in(ex_b["account_id"], pa.array(sorted(mb)))
        # payment instruments
        cards = dict(zip(_ranked(acc_b.filter(in_b_acc)["payment_fingerprint"].to_pylist()),
                         _cycle(_ranked(acc_a.filter(in_a_acc)["payment_fingerprint"].to_pylist())), strict=False))
        # addresses: the operator's exits and sign-up addresses, with the ASN A saw them in
        xa = ex_a.filter(in_a_ex)
        ips_a = _ranked(xa["client_ip"].to_pylist() + acc_a.filter(in_a_acc)["signup_ip"].to_pylist())
        ips_b = _ranked(ex_b.filter(in_b_ex)["client_ip"].to_pylist() + acc_b.filter(in_b_acc)["signup_ip"].to_pylist())
        ips = dict(zip(ips_b, _cycle(ips_a), strict=False))
        asn_of = dict(zip(xa["client_ip"].to_pylist(), xa["asn"].to_pylist(), strict=True))
        # the harness: (system, prompt) pairs of A's campaign, first turns and follow-ups apart
        pairs = list(zip(xa["system"].to_pylist(), xa["prompt"].to_pylist(), strict=True))
        first = np.flatnonzero(np.asarray(pc.fill_null(xa["turn_index"], 0).to_numpy(zero_copy_only=False)) == 0)
        follow = np.setdiff1d(np.arange(len(pairs)), first)
        # apply: accounts
        pay = acc_b["payment_fingerprint"].to_pylist()
        inb = in_b_acc.to_pylist()
        acc_b = acc_b.set_column(acc_b.schema.get_field_index("payment_fingerprint"), "payment_fingerprint",
                                 pa.array([cards.get(p, p) if m else p for p, m in zip(pay, inb, strict=True)],
                                          pa.string()))
        acc_b = acc_b.set_column(acc_b.schema.get_field_index("signup_ip"), "signup_ip",
                                 _remap(acc_b["signup_ip"], ips))
        created = acc_b["created_at"].cast(pa.int64()).to_numpy() + np.where(inb, lag, 0)
        acc_b = acc_b.set_column(acc_b.schema.get_field_index("created_at"), "created_at",
                                 pa.array(created).cast(acc_b.schema.field("created_at").type))
        # apply: exchanges
        client = ex_b["client_ip"].to_pylist()
        new_client = [ips.get(c, c) for c in client]
        asn = ex_b["asn"].to_pylist()
        new_asn = [asn_of.get(n, a) if n != c else a for c, n, a in zip(client, new_client, asn, strict=True)]
        ex_b = ex_b.set_column(ex_b.schema.get_field_index("client_ip"), "client_ip", pa.array(new_client, pa.string()))
        ex_b = ex_b.set_column(ex_b.schema.get_field_index("asn"), "asn", pa.array(new_asn, ex_b.schema.field("asn").type))
        mask = np.asarray(in_b_ex.to_pylist(), dtype=bool)
        turn = np.asarray(pc.fill_null(ex_b["turn_index"], 0).to_numpy(zero_copy_only=False))
        system, prompt = ex_b["system"].to_pylist(), ex_b["prompt"].to_pylist()
        for i in np.flatnonzero(mask):
            pool = first if (turn[i] == 0 or follow.size == 0) else follow
            system[i], prompt[i] = pairs[int(pool[rng.integers(pool.size)])]
        ex_b = ex_b.set_column(ex_b.schema.get_field_index("system"), "system", pa.array(system, pa.string()))
        ex_b = ex_b.set_column(ex_b.schema.get_field_index("prompt"), "prompt", pa.array(prompt, pa.string()))
        ts = ex_b["ts"].cast(pa.int64()).to_numpy() + np.where(mask, lag, 0)
        ex_b = ex_b.set_column(ex_b.schema.get_field_index("ts"), "ts", pa.array(ts).cast(ex_b.schema.field("ts").type))
        ex_b = ex_b.filter(pa.array(ts <= end_b))
        info["campaigns"][cid] = {"accounts_a": len(ma), "accounts_b": len(mb), "shared_cards": len(set(cards.values())),
                                  "shared_addresses": len(set(ips.values())), "harness_prompts": len(pairs)}
    ex_b = ex_b.take(pc.sort_indices(ex_b, [("ts", "ascending"), ("request_id", "ascending")]))
    (out / "b").mkdir(parents=True)
    pq.write_table(acc_b, out / "b" / "accounts.parquet")
    pq.write_table(ex_b, out / "b" / "exchanges.parquet")
    shutil.copy(out / "b_raw" / "truth.jsonl", out / "b" / "truth.jsonl")
    shutil.rmtree(out / "b_raw")
    (out / "providers.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _cycle(values: list[Any]) -> list[Any]:
    """Long enough to pair with any B list (A's values reused in rank order)."""
    return (values * 1000)[: max(len(values) * 1000, 1)] if values else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distillguard.simulate.providers", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--seed-a", type=int, default=1)
    ap.add_argument("--seed-b", type=int, default=2)
    ap.add_argument("--campaign", action="append", default=None, help="campaign(s) run by the shared operator")
    ap.add_argument("--lag-days", type=float, default=1.0)
    a = ap.parse_args(argv)
    info = simulate_providers(a.out, scenario=a.scenario, scale=a.scale, seed_a=a.seed_a, seed_b=a.seed_b,
                              campaigns=tuple(a.campaign or ("hydra",)), lag_days=a.lag_days)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
