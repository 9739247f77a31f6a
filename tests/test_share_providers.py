"""The two-provider simulator: B's copy of the campaign is the same operator's as A's (cards, exits,
prompt harness), with B's own account ids and benign customers, starting later."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.simulate.providers import simulate_providers, truth_accounts


def test_same_operator_different_customers(tmp_path: Path) -> None:
    info = simulate_providers(tmp_path, scenario="smoke", seed_a=3, seed_b=4, campaigns=("hydra",), lag_days=1.0)
    assert info["campaigns"]["hydra"]["shared_cards"] >= 1
    la, lb = truth_accounts(tmp_path / "a" / "truth.jsonl"), truth_accounts(tmp_path / "b" / "truth.jsonl")
    assert not set(la) & set(lb)  # different account ids
    ma = sorted(a for a, lab in la.items() if lab == "campaign:hydra")
    mb = sorted(a for a, lab in lb.items() if lab == "campaign:hydra")
    acc_a, acc_b = pq.read_table(tmp_path / "a" / "accounts.parquet"), pq.read_table(tmp_path / "b" / "accounts.parquet")
    ex_a, ex_b = pq.read_table(tmp_path / "a" / "exchanges.parquet"), pq.read_table(tmp_path / "b" / "exchanges.parquet")

    def of(t: pa.Table, col: str, members: list[str]) -> set:
        return set(t.filter(pc.is_in(t["account_id"], value_set=pa.array(members)))[col].to_pylist())

    cards_a, cards_b = of(acc_a, "payment_fingerprint", ma) - {None}, of(acc_b, "payment_fingerprint", mb) - {None}
    assert cards_b and cards_b <= cards_a
    assert of(ex_b, "client_ip", mb) <= of(ex_a, "client_ip", ma) | of(acc_a, "signup_ip", ma)
    assert of(ex_b, "prompt", mb) <= of(ex_a, "prompt", ma)
    # benign customers differ: no benign payment instrument in common
    ba = [a for a, lab in la.items() if lab.startswith("benign:")]
    bb = [a for a, lab in lb.items() if lab.startswith("benign:")]
    assert not (of(acc_a, "payment_fingerprint", ba) - {None}) & (of(acc_b, "payment_fingerprint", bb) - {None})
    # B's campaign starts about lag_days after A's
    start = [pc.min(t.filter(pc.is_in(t["account_id"], value_set=pa.array(m)))["ts"]).as_py()
             for t, m in ((ex_a, ma), (ex_b, mb))]
    assert (start[1] - start[0]).total_seconds() > 0.5 * 86400
