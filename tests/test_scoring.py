"""Scoring: benign-calibrated tail probabilities, truncated combination, cluster evidence, reasons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from distillguard.scoring.risk import Evidence, RiskModel

EVIDENCE = (
    Evidence("COT", "cot", "{value:.0%} coerce reasoning (benign p99 {ref:.0%})"),
    Evidence("CEIL", "ceil", "{value:.0%} at ceiling (benign p99 {ref:.0%})"),
    Evidence("GAP", "gap_cv", "cv {value:.2f}", higher_is_riskier=False, weight=0.5),
)


def benign(n: int = 1000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "account_id": [f"b{i}" for i in range(n)],
        "cot": rng.beta(1, 20, n),  # mostly near 0
        "ceil": np.where(rng.random(n) < 0.9, 0.0, rng.random(n) * 0.5),
        "gap_cv": rng.uniform(1.0, 5.0, n),
    })


def test_tail_probability_is_the_benign_share_at_least_as_risky() -> None:
    ref = pa.table({"account_id": ["a", "b", "c", "d"], "cot": [0.0, 0.1, 0.2, 0.3],
                    "ceil": [0.0] * 4, "gap_cv": [1.0, 2.0, 3.0, 4.0]})
    m = RiskModel(EVIDENCE, truncate_p=1.0).fit(ref)
    q = pa.table({"account_id": ["x"], "cot": [0.25], "ceil": [None], "gap_cv": [0.5]})
    parts = m.tail_logp(q)[0]
    # cot 0.25: one of 4 benign is at least as high -> p = (1 + 1) / (4 + 1)
    assert parts[0] == pytest.approx(-2 * math.log(2 / 5))
    assert parts[1] == 0.0  # missing value: no evidence
    # gap_cv 0.5 is lower than every benign value (lower is riskier): p = 1 / 5, weight 0.5
    assert parts[2] == pytest.approx(-2 * math.log(1 / 5) * 0.5)


def test_truncation_drops_weak_evidence() -> None:
    ref = benign()
    m = RiskModel(EVIDENCE, truncate_p=0.01).fit(ref)
    weak = pa.table({"account_id": ["w"], "cot": [float(np.quantile(ref["cot"], 0.95))], "ceil": [0.0],
                     "gap_cv": [3.0]})
    assert m.tail_logp(weak).sum() == 0.0


def test_threshold_honours_target_fpr_and_attackers_are_flagged() -> None:
    ref = benign(4000, seed=1)
    m = RiskModel(EVIDENCE, target_fpr=0.001).fit(ref)
    fresh = benign(4000, seed=2)  # benign traffic the model did not see
    assert m.score(fresh)["flagged"].mean() <= 0.004
    attack = pa.table({"account_id": ["x1", "x2"], "cot": [0.9, 0.8], "ceil": [1.0, 0.95], "gap_cv": [0.1, 0.2]})
    out = m.score(attack)
    assert out["flagged"].all() and (out["score"] > 0.5).all()
    assert out["reasons"][0][0].startswith(("COT:", "CEIL:"))
    assert "benign tail p=" in out["reasons"][0][0]


def test_cluster_median_lifts_a_quiet_member_but_not_a_benign_cluster() -> None:
    ref = benign(2000)
    m = RiskModel(EVIDENCE, min_cluster=3).fit(ref)
    rows = pa.table({
        "account_id": ["x1", "x2", "x3", "quiet", "o1", "o2", "o3"],
        "cot": [0.9, 0.9, 0.9, 0.0, 0.0, 0.01, 0.02],
        "ceil": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        "gap_cv": [0.1, 0.1, 0.1, 3.0, 3.0, 3.0, 3.0],
    })
    clusters = pa.table({"account_id": rows["account_id"], "cluster_id": ["c1"] * 4 + ["c2"] * 3,
                         "cluster_size": [4] * 4 + [3] * 3})
    out = m.score(rows, clusters)
    flagged = dict(zip(out["account_id"], out["flagged"], strict=True))
    assert flagged["quiet"] and not any(flagged[a] for a in ("o1", "o2", "o3"))
    quiet = out["reasons"][out["account_id"].index("quiet")]
    assert quiet[0].startswith("CLUSTER_RISK: member of c1 (4 accounts)")


def test_save_load_and_online_path_agree(tmp_path: Path) -> None:
    m = RiskModel(EVIDENCE).fit(benign())
    path = tmp_path / "cal.json"
    m.save(path)
    loaded = RiskModel.load(path)
    probe = benign(300, seed=5)
    probe = probe.set_column(1, "cot", pa.array(np.linspace(0, 1, 300)))
    a, b = m.score(probe), loaded.score(probe)
    assert np.allclose(a["risk"], b["risk"]) and (a["flagged"] == b["flagged"]).all()
    online = [loaded.risk_one(r) for r in probe.to_pylist()]
    assert np.allclose([o[0] for o in online], b["risk"])
    assert [o[2] for o in online] == list(b["flagged"])


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not calibrated"):
        RiskModel(EVIDENCE).score(benign(3))
    with pytest.raises(ValueError, match="zero benign"):
        RiskModel(EVIDENCE).fit(benign(0))
