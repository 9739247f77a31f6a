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
    # "quiet" asks for what its cluster asks, too little to be flagged alone (cot and gap between the
    # benign 95th and 99th percentiles: under truncation, so no own risk); "bystander" shares the
    # cluster (a NAT, a card) but nothing it sends is unusual.
    rows = pa.table({
        "account_id": ["x1", "x2", "x3", "quiet", "bystander", "o1", "o2", "o3"],
        "cot": [0.9, 0.9, 0.9, 0.17, 0.0, 0.0, 0.01, 0.02],
        "ceil": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "gap_cv": [0.1, 0.1, 0.1, 1.1, 3.0, 3.0, 3.0, 3.0],
    })
    clusters = pa.table({"account_id": rows["account_id"], "cluster_id": ["c1"] * 5 + ["c2"] * 3,
                         "cluster_size": [5] * 5 + [3] * 3})
    out = m.score(rows, clusters)
    assert m.own_risk(rows.slice(3, 1))[0] == 0.0
    flagged = dict(zip(out["account_id"], out["flagged"], strict=True))
    assert flagged["quiet"] and not any(flagged[a] for a in ("bystander", "o1", "o2", "o3"))
    # the online path applies the same gate to the cluster's median risk
    rows_by_id = {r["account_id"]: r for r in rows.to_pylist()}
    c1_median = float(np.median(m.own_risk(rows.slice(0, 5))))
    assert m.risk_one(rows_by_id["quiet"], c1_median)[2]
    assert not m.risk_one(rows_by_id["bystander"], c1_median)[2]
    quiet = out["reasons"][out["account_id"].index("quiet")]
    assert quiet[0].startswith("CLUSTER_RISK: member of c1 (5 accounts)")


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


# -- evidence groups, the behaviour cap, the cluster null ----------------------------------------------
def test_simes_of_copies_is_the_single_p_and_valid_under_dependence() -> None:
    from distillguard.scoring.risk import simes

    p = np.array([[0.01, 0.01, 0.01], [0.2, 0.001, 0.5]])
    assert simes(p)[0] == pytest.approx(0.01)  # one trait seen three times counts once
    assert simes(p)[1] == pytest.approx(0.003)  # 3 * 0.001 / 1
    # under the null with perfectly correlated evidence Simes is exact at alpha; Fisher is not
    u = np.random.default_rng(0).random(20_000)
    same = np.column_stack([u, u, u])
    assert abs((simes(same) <= 0.05).mean() - 0.05) < 0.005
    fisher = -2 * np.log(same).sum(axis=1)
    assert (fisher >= 12.59).mean() > 0.1  # chi2(6) 95% point: Fisher over-rejects more than twofold


def test_a_group_counts_its_trait_once() -> None:
    ev = (Evidence("A", "a", ""), Evidence("B", "b", ""))
    grouped = (Evidence("A", "a", "", group="g"), Evidence("B", "b", "", group="g"))
    rng = np.random.default_rng(3)
    x = rng.random(2000)
    ref = pa.table({"account_id": [f"r{i}" for i in range(2000)], "a": x, "b": x})
    q = pa.table({"account_id": ["q"], "a": [0.9999], "b": [0.9999]})  # extreme on one trait, twice
    alone = RiskModel(ev, truncate_p=1.0).fit(ref).own_risk(q)[0]
    together = RiskModel(grouped, truncate_p=1.0).fit(ref).own_risk(q)[0]
    assert together == pytest.approx(alone / 2)


def test_behaviour_alone_cannot_cross_the_cap_but_adds_to_content() -> None:
    ev = (Evidence("COT", "cot", ""), Evidence("VOL", "vol", "", behaviour=True),
          Evidence("NIGHT", "night", "", behaviour=True))
    rng = np.random.default_rng(4)
    n = 5000
    ref = pa.table({"account_id": [f"r{i}" for i in range(n)], "cot": rng.beta(1, 20, n),
                    "vol": rng.lognormal(3, 1, n), "night": rng.random(n)})
    m = RiskModel(ev, behaviour_cap=13.8, behaviour_min_content=0).fit(ref)
    q = pa.table({"account_id": ["backend", "distiller"], "cot": [0.0, 0.99], "vol": [1e6, 1e6],
                  "night": [1.0, 1.0]})
    own = m.own_risk(q)
    assert own[0] == pytest.approx(13.8)  # two extreme behaviours, capped
    assert own[1] > own[0] + 10  # the same behaviour on top of content evidence
    assert m.risk_one({"cot": 0.0, "vol": 1e6, "night": 1.0})[0] == pytest.approx(own[0])  # scalar path agrees
    uncapped = RiskModel(ev, behaviour_cap=None, behaviour_min_content=0).fit(ref).own_risk(q)[0]
    assert uncapped > 20


def test_behaviour_counts_only_beside_two_content_signals() -> None:
    """An eval pipeline that grades its own outputs at volume (one content signal + behaviour) stays
    under the threshold; a distiller with two content signals and the same volume does not."""
    ev = (Evidence("GRADER", "grader", ""), Evidence("COT", "cot", ""), Evidence("VOL", "vol", "", behaviour=True))
    rng = np.random.default_rng(6)
    n = 5000
    ref = pa.table({"account_id": [f"r{i}" for i in range(n)], "grader": rng.beta(1, 30, n),
                    "cot": rng.beta(1, 20, n), "vol": rng.lognormal(3, 1, n)})
    m = RiskModel(ev, behaviour_cap=9.2).fit(ref)
    assert m.behaviour_min_content == 2
    grader_p999 = float(np.quantile(ref["grader"], 0.998))
    cot_p995 = float(np.quantile(ref["cot"], 0.996))
    q = pa.table({"account_id": ["judge", "distiller"], "grader": [grader_p999, grader_p999],
                  "cot": [0.0, cot_p995], "vol": [1e6, 1e6]})
    own = m.own_risk(q)
    judge_content = RiskModel(ev[:2], behaviour_cap=9.2).fit(ref).own_risk(q)
    assert own[0] == pytest.approx(judge_content[0])  # volume adds nothing to one content signal
    assert own[1] == pytest.approx(judge_content[1] + 9.2)  # ... and the capped most beside two
    for i, row in enumerate(({"grader": grader_p999, "cot": 0.0, "vol": 1e6},
                             {"grader": grader_p999, "cot": cot_p995, "vol": 1e6})):
        assert m.risk_one(row)[0] == pytest.approx(own[i])  # the scalar (online) path agrees
    assert RiskModel(ev, behaviour_cap=9.2, behaviour_min_content=0).fit(ref).own_risk(q)[0] > own[0] + 9
    # one content signal rarer than 1 in 1,000 benign accounts (a grader-harvesting network): behaviour counts
    assert m.tail_p_values(m._values(q))[0, 0] > m.behaviour_strong_p  # the judge was above it
    extreme = {"grader": float(ref["grader"].to_numpy().max()) * 2, "cot": 0.0, "vol": 1e6}
    alone = m.risk_one({**extreme, "vol": None})[0]
    assert m.risk_one(extreme)[0] == pytest.approx(alone + 9.2)


def test_joint_cluster_evidence_ignores_overdispersed_benign_clusters() -> None:
    ev = (Evidence("A", "a", ""), Evidence("B", "b", ""), Evidence("C", "c", ""))
    rng = np.random.default_rng(5)
    n = 4000
    ref = pa.table({"account_id": [f"r{i}" for i in range(n)], **{k: rng.random(n) for k in "abc"}})
    m = RiskModel(ev, cluster_null=0.2).fit(ref)
    # a 300-member campus cluster where 9% exceed the benign 95th percentile (not 5%): no joint evidence
    campus = np.zeros((300, 3), dtype=bool)
    campus[:27] = True
    assert m._joint_evidence("campus", campus)[0] == 0.0
    assert RiskModel(ev, cluster_null=0.05).fit(ref)._joint_evidence("campus", campus)[0] > 0.0
    # a 20-account hydra where 16 exceed: strong joint evidence
    hydra = np.zeros((20, 3), dtype=bool)
    hydra[:16] = True
    assert m._joint_evidence("hydra", hydra)[0] > m.threshold_


def _steps(n: int, n_steps: int, seed: int) -> pa.Table:
    """Benign accounts as of several moments: early moments have few requests, so their shares are
    noisy (an account whose first 3 requests include 2 grader prompts is at 67% for a while)."""
    rng = np.random.default_rng(seed)
    rate = rng.beta(1, 30, n)  # each account's true CoT-like share
    parts = []
    for s in range(n_steps):
        requests = 2 * (s + 1)
        parts.append(pa.table({
            "account_id": [f"b{i}" for i in range(n)],
            "cot": rng.binomial(requests, rate) / requests,
            "ceil": np.zeros(n),
            "gap_cv": rng.uniform(1.0, 5.0, n),
            "step": pa.array([s] * n, pa.int32()),
        }))
    return pa.concat_tables(parts)


def test_stepwise_calibration_bounds_the_share_of_accounts_ever_flagged() -> None:
    evidence = EVIDENCE[:1]
    ref, fresh = _steps(3000, 12, seed=1), _steps(3000, 12, seed=2)
    end_only = RiskModel(evidence, target_fpr=0.002).fit(ref.filter(pa.compute.equal(ref["step"], 11)).drop(["step"]))
    stepwise = RiskModel(evidence, target_fpr=0.002).fit(ref)
    assert stepwise.n_benign_ == 3000  # accounts, not (account, step) rows

    def ever_flagged(m: RiskModel) -> float:
        flagged: set[str] = set()
        for s in range(12):
            rows = fresh.filter(pa.compute.equal(fresh["step"], s))
            out = m.score(rows.drop(["step"]))
            flagged |= {a for a, f in zip(out["account_id"], out["flagged"], strict=True) if f}
        return len(flagged) / 3000

    # Calibrated on the end state only, the threshold is exceeded by many more accounts at some step
    # than the target; calibrated on every step, the share stays near the target on unseen accounts.
    assert ever_flagged(end_only) > 0.01
    assert ever_flagged(stepwise) <= 0.006
    attack = pa.table({"account_id": ["x"], "cot": [0.9], "ceil": [0.0], "gap_cv": [3.0]})
    assert stepwise.score(attack)["flagged"].all()
