"""The fast paths of online scoring give exactly the decisions of the from-scratch computation.

``OnlineScorer`` memoizes an account's evidence features and own risk on its feature state, reuses a
feature's benign tail p while its value keeps its rank in the reference, and recombines the own risk
only when a p moved; ``Entropy.finalize`` sums only the categories present; ``read`` runs a compiled
plan. Here a reference scorer recomputes everything per decision the way the scorer did before those
paths existed (``features_one`` then ``RiskModel.risk_one``; reasons from ``evidence_one`` and
``own_risk_one``), and both decide the same fixed stream: every field of every decision must match.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pyarrow as pa
import pytest

from distillguard.features.account import CAPABILITIES, FEATURES
from distillguard.features.online import OnlineFeatures
from distillguard.features.spec import Entropy
from distillguard.online import OnlineScorer, Policy, load_batch
from distillguard.online.scorer import _plain_risk
from distillguard.scoring.defaults import default_model
from distillguard.scoring.risk import RiskModel

HOUR = 3_600_000_000
T0 = 1_772_409_600_000_000  # 2026-03-02T00:00:00Z in µs


class _Reference(OnlineScorer):
    """Every decision from scratch: all features finalized, ``risk_one`` on them, no memo."""

    def _assessment(self, acct_id: str, n: int, t_us: int, crisk: float | None) -> Any:
        if n >= self.policy.min_requests:
            full = self.features.features_one(acct_id, t_us)
            feats = {c: full[c] for c in self._cols}
        else:
            feats = {}
        _, score, flagged = self.model.risk_one(feats, crisk)
        return feats, None, None, score, flagged  # ps None: reasons via evidence_one / own_risk_one

    def _evidence_reasons(self, a: Any, ba: Any, action: str) -> list[str]:
        self._reason_memo = (None, {})  # every reason text formatted afresh (no cache)
        return super()._evidence_reasons(a, ba, action)


_KINDS = ["chat", "chat", "chat", "chat", "thinker", "grader", "cot", "metronome", "agentic"]


def _stream(seed: int = 5, n_accounts: int = 60, n: int = 6000, kinds: list[str] = _KINDS,
            ) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """Accounts of several habits (chat, heavy thinkers, graders, CoT elicitors, metronomes; ``mixed``:
    a broad capability mix with some grading, near the benign p95 of both), requests spread over ~30
    hours so windows roll and hour buckets change."""
    rng = random.Random(seed)
    accts = [(f"a{i:03d}", kinds[i % len(kinds)]) for i in range(n_accounts)]
    rows = [{"account_id": a, "created_at": T0 - rng.randint(1, 2000) * HOUR // 10, "tier": "free",
             "verified": False, "payment_fingerprint": f"card-{i % 50}", "signup_ip": f"10.{i}.0.1"}
            for i, (a, _) in enumerate(accts)]
    weights = [1.0 / (k + 1) ** 0.7 for k in range(n_accounts)]
    out = []
    for j in range(n):
        a, kind = accts[rng.choices(range(n_accounts), weights=weights)[0]]
        ts = T0 + j * 30 * HOUR // n + (0 if kind == "metronome" else rng.randint(0, 2_000_000))
        ex = {"request_id": f"r{j}", "ts": ts, "account_id": a,
              "model": "m-new" if kind == "agentic" and j > n // 2 else rng.choice(["m1", "m2"]),
              "client_ip": f"192.{int(a[1:])}.0.{rng.randint(1, 250)}", "user_agent": f"ua-{rng.randint(0, 3)}",
              "max_tokens": 32000 if kind in ("thinker", "cot") else rng.choice([256, 1024, 4096]),
              "thinking": kind == "thinker" or rng.random() < 0.1, "n_tools": 3 if kind == "agentic" else 0,
              "turn_index": 0 if kind in ("grader", "cot", "metronome") else rng.randint(0, 3),
              "conversation_id": f"c{j // 3}", "input_tokens": 100, "output_tokens": 300}
        if kind == "mixed":  # account-specific mix: its grader share and capability breadth straddle the p95
            mix = random.Random(a).random()
            cap = "grader" if rng.random() < 0.02 + 0.06 * mix else rng.choice(CAPABILITIES[:3 + int(3 * mix)])
        else:
            cap = {"grader": "grader", "agentic": "agentic", "cot": rng.choice(["math_reasoning", "coding"])}.get(
                kind, rng.choice(CAPABILITIES) if rng.random() < 0.03 else rng.choice(["chat", "chat", "coding", "other"]))
        sig = {"capability": cap, "cot_score": 0.9 if kind == "cot" else rng.random() * 0.4,
               "template_fp": rng.randint(0, 30) if kind in ("grader", "cot") else rng.randint(0, 10**6),
               "preamble_fp": rng.randint(0, 5) if kind == "grader" else None}
        ex["signals"] = sig
        out.append((ex, sig))
    return rows, out


def _decide(s: OnlineScorer, rows: list[dict], stream: list[tuple[dict, dict]], many: int = 0,
            cluster_score: float = 0.05) -> list[tuple]:
    for r in rows:
        s.learn_account(r)
    det = [{"account_id": r["account_id"], "score": 0.95 if i % 9 == 0 else cluster_score if i % 3 == 0 else 0.05,
            "flagged": i % 18 == 0, "cluster_id": f"c{i % 4}" if i % 3 == 0 else None} for i, r in enumerate(rows)]
    s.load_batch(load_batch(s.model, pa.Table.from_pylist(det)))
    out = []
    step = max(1, many)
    for i in range(0, len(stream), step):
        chunk = stream[i:i + step]
        ds = s.score_many([x for x, _ in chunk]) if many else [s.score_one(chunk[0][0])]
        if many:
            s.learn_many([(x, sig, d) for (x, sig), d in zip(chunk, ds, strict=True)])
        else:
            s.learn_one(chunk[0][0], chunk[0][1], ds[0])
        out.extend((d.request_id, d.action, d.score, tuple(d.reasons), d.strip_reasoning, d.max_tokens,
                    d.retry_after_s, d.watermark) for d in ds)
    out.append(("contained", tuple(sorted(s.contained()))))
    return out


@pytest.mark.parametrize(("risk_every", "many"), [(1, 0), (3, 0), (1, 16)])
def test_fast_paths_decide_exactly_as_from_scratch(risk_every, many):
    rows, stream = _stream()
    model = default_model()
    fast = _decide(OnlineScorer(model, Policy.default(), risk_every=risk_every), rows, stream, many)
    ref = _decide(_Reference(model, Policy.default(), risk_every=risk_every), rows, stream, many)
    assert len(fast) == len(ref) == len(stream) + 1
    diff = [(f, r) for f, r in zip(fast, ref, strict=True) if f != r]
    assert not diff, diff[:3]
    actions = {d[1] for d in fast[:-1]}
    assert {"allow", "block"} <= actions and len(actions) >= 3  # the stream exercises several paths
    assert sum(1 for d in fast[:-1] if d[3]) > 100  # and many decisions with evidence reasons


def test_cluster_gate_reads_the_untruncated_ps():
    """Members of a risky cluster whose content sits between ``truncate_p`` and ``cluster_q`` (it counts
    for nothing in their own risk, but it does open the cluster gate) decide as from scratch."""
    rows, stream = _stream(seed=11, n_accounts=48, n=5000, kinds=["mixed", "mixed", "chat"])
    model = default_model()
    seen: list[bool] = []

    class Probe(_Reference):  # counts decisions where the gate differs between truncated and plain ps
        def _assessment(self, acct_id: str, n: int, t_us: int, crisk: float | None) -> Any:
            a = super()._assessment(acct_id, n, t_us, crisk)
            if a[0] and crisk is not None:
                plain = self.model.tail_ps_one(a[0])
                trunc = [p if p <= self.model.truncate_p else 1.0 for p in plain]
                seen.append(self.model.inherits_cluster_one(plain) != self.model.inherits_cluster_one(trunc))
            return a

    fast = _decide(OnlineScorer(model, Policy.default()), rows, stream, cluster_score=0.9)
    ref = _decide(Probe(model, Policy.default()), rows, stream, cluster_score=0.9)
    assert sum(seen) > 20  # the stream reaches the case
    diff = [(f, r) for f, r in zip(fast, ref, strict=True) if f != r]
    assert not diff, diff[:3]


def test_tail_ps_reuse_and_truncation_equal_the_plain_risk():
    """Truncated ps (p above truncate_p as 1.0) give the same own risk, and a reused interval gives the
    same p as a fresh search, for random rows and random earlier intervals."""
    m = default_model()
    assert _plain_risk(m)
    rng = random.Random(3)
    cols = [ev.column for ev in m.evidence]
    bounds = gbounds = None
    gate = dataclasses.replace(m, truncate_p=m.cluster_q)  # what OnlineScorer._inherits reads
    for _ in range(3000):
        row: dict[str, Any] = {}
        for ev in m.evidence:
            ref = m._ref_lists()[ev.code]
            r = rng.random()
            if r < 0.1:
                row[ev.column] = None if r < 0.05 else math.nan
            elif r < 0.5 and ref:
                x = ref[rng.randrange(len(ref))]  # a reference value itself: ties at interval edges
                row[ev.column] = x if ev.higher_is_riskier else -x
            else:
                row[ev.column] = rng.uniform(-1.0, 2.0) * (1000 if "count" in ev.column else 1)
        ps, b = m.tail_ps_reuse_one(row, bounds if rng.random() < 0.8 else None)
        plain = m.tail_ps_one(row)
        gps, gbounds = gate.tail_ps_reuse_one(row, gbounds if rng.random() < 0.8 else None)  # the scorer's gate
        assert gps == [p if p <= m.cluster_q else 1.0 for p in plain]
        assert m.inherits_cluster_one(gps) == m.inherits_cluster_one(plain)
        assert ps == [p if p <= m.truncate_p else 1.0 for p in plain]
        assert m.own_risk_from_ps_one(ps) == m.own_risk_one(row)
        inherits = not row or m.inherits_cluster_one(m.tail_ps_one(row))  # the cluster gate (docs/detection.md)
        assert m.risk_one(row, 3.0) == m.risk_from_own_one(m.own_risk_one(row), 3.0 if inherits else None)
        bounds = b
    assert bounds is not None and len(cols) == len(bounds) - 1


def test_plain_risk_detects_overrides():
    class Custom(RiskModel):
        def risk_one(self, features, cluster_risk=None):
            return 0.0, 0.0, False

    assert not _plain_risk(Custom(default_model().evidence))


def _entropy_reference(categories: tuple, state: dict) -> float | None:
    """Entropy.finalize as first written: counts in category order, then the sum."""
    cs = [state.get(c, 0) for c in categories]
    n = sum(cs)
    if n <= 0:
        return None
    acc = 0.0
    for c in cs:
        acc += c * math.log(c) if c > 0 else 0.0
    return (math.log(n) - acc / n) / math.log(2.0)


@pytest.mark.parametrize("categories", [tuple(range(24)), tuple(CAPABILITIES), (3, 1, 2)])
def test_entropy_finalize_is_bit_identical(categories):
    rng = random.Random(11)
    op = Entropy(categories)
    for _ in range(2000):
        k = rng.randint(0, len(categories))
        state = {c: rng.choice([0, 1, 2, rng.randint(1, 10**6)]) for c in rng.sample(list(categories), k)}
        if rng.random() < 0.05:
            state["not-a-category"] = 5  # ignored, as in SQL
        assert op.finalize(state) == _entropy_reference(categories, state)


def test_no_per_account_memo_for_accounts_that_read_no_features():
    """Requests of accounts below ``min_requests`` (e.g. a flood of unknown keys, never learned) leave
    nothing behind: the memo lives only with feature states that are read."""
    s = OnlineScorer(default_model(), Policy.default())
    for i in range(500):
        d = s.score_one({"request_id": f"x{i}", "account_id": f"key:{i:016x}", "ts": T0 + i, "model": "m"})
        assert d.action == "allow"
    assert not s.features._memo and not s.features.account_ids()


def test_compiled_read_and_learn_equal_the_declared_loops():
    """``OnlineFeatures`` runs compiled straight-line forms of its input, update and read loops: with every
    declared feature (all ops, all windows), records folded out of time order (as a Redis replica folds
    another's) and reads as of earlier and later hours, ``read`` equals ``features_one`` (the plain loops
    over the declarations) column for column, bit for bit."""
    rows, stream = _stream(seed=9, n_accounts=12, n=3000)
    f = OnlineFeatures(FEATURES, accounts={r["account_id"]: r for r in rows})
    rng = random.Random(4)
    held: list[tuple[str, int, tuple]] = []
    for x, sig in stream:
        t_us = x["ts"]
        f.context.learn(x, sig, t_us)
        rec = f.record(x, sig, t_us)
        if rng.random() < 0.1:
            held.append((x["account_id"], *rec))  # folded later, after newer records
        else:
            f.apply(x["account_id"], *rec)
        if held and rng.random() < 0.05:
            f.apply(*held.pop(0))
    for a, t_us, values in held:
        f.apply(a, t_us, values)
    cols = tuple(c for c in f.columns)
    for a in {r["account_id"] for r in rows}:
        for as_of in (T0 + 3 * HOUR, T0 + 20 * HOUR + 5, T0 + 30 * HOUR, T0 + 80 * HOUR, None):
            full = f.features_one(a, as_of)
            got = f.read(a, cols, as_of)
            assert list(got) == list(cols)
            for c in cols:
                assert repr(got[c]) == repr(full[c]), (a, as_of, c)
