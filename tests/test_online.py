"""Online containment: batch == online features, every action path, hydra replacement, snapshot/restore,
audit log, and a replay of the smoke simulation scored by ``evaluate``."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from conftest import close
from distillguard.contract import ACCOUNTS, ACTIONS, EXCHANGES, SIGNALS
from distillguard.engines import DuckDBEngine
from distillguard.features import build_features
from distillguard.features.online import Context
from distillguard.online import (
    AuditLog,
    BatchAccount,
    BatchView,
    Bucket,
    Decision,
    OnlineScorer,
    Policy,
    Tier,
    load_batch,
)
from distillguard.scoring.defaults import default_model
from distillguard.scoring.risk import Evidence, RiskModel

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def _ex(i: int, account: str, ts: datetime, **kw) -> dict:
    row = dict.fromkeys(EXCHANGES.names)
    row.update(request_id=f"r{i}", ts=ts, account_id=account, model="m1", prompt="p", max_tokens=1000)
    row.update(kw)
    return row


def _sig(ex: dict, **kw) -> dict:
    row = dict.fromkeys(SIGNALS.names)
    row.update(request_id=ex["request_id"], account_id=ex["account_id"], ts=ex["ts"], capability="chat",
               cot_score=0.0)
    row.update(kw)
    return row


def _acct(account: str, created: datetime = T0 - timedelta(days=30), **kw) -> dict:
    row = dict.fromkeys(ACCOUNTS.names)
    row.update(account_id=account, created_at=created, tier="free", verified=False)
    row.update(kw)
    return row


def _engine(accounts: list[dict], exchanges: list[dict], signals: list[dict]) -> DuckDBEngine:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    e = DuckDBEngine(con)
    for table, rows in ((ACCOUNTS, accounts), (EXCHANGES, exchanges), (SIGNALS, signals)):
        e.register("_src", pa.Table.from_pylist(rows, schema=table.schema))
        e.execute(f"CREATE TABLE {table.name} AS SELECT * FROM _src")
        con.unregister("_src")
    return e



def _stream(n: int = 1500, seed: int = 3) -> tuple[list, list, list]:
    rng = random.Random(seed)
    accts = [f"a{i}" for i in range(12)]
    accounts = [_acct(a, T0 - timedelta(hours=rng.randint(0, 500))) for a in accts]
    ex, sig, ts = [], [], T0
    for i in range(n):
        ts += timedelta(seconds=rng.expovariate(1 / 400), microseconds=rng.randint(0, 999_999))
        a = rng.choice(accts)
        x = _ex(i, a, ts, model=rng.choice(["m1", "m2"]), client_ip=f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 9)}",
                user_agent=rng.choice(["ua1", "ua2"]), thinking=rng.random() < 0.3,
                max_tokens=rng.choice([512, 4096, 8192]), turn_index=rng.choice([0, 0, 1]),
                conversation_id=f"c{i % 40}")
        ex.append(x)
        sig.append(_sig(x, capability=rng.choice(["coding", "agentic", "chat", "grader"]), cot_score=rng.random(),
                        template_fp=rng.choice([1, 2, 3, rng.getrandbits(40)]), preamble_fp=rng.choice([7, 8])))
    return accounts, ex, sig


# -- same features online as batch -------------------------------------------------------------------
def test_online_features_and_risk_equal_batch():
    accounts, ex, sig = _stream()
    e = _engine(accounts, ex, sig)
    build_features(e, as_of=None)
    batch = e.query("SELECT * FROM account_features ORDER BY account_id")
    rows = {r["account_id"]: r for r in batch.to_pylist()}
    model = default_model()
    s = OnlineScorer(model, Policy.default(), context=Context.from_engine(e))
    for a in accounts:
        s.learn_account(a)
    for x, g in zip(ex, sig, strict=True):
        s.learn_one(x, g, s.score_one(x))
    last_us = int((ex[-1]["ts"] - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    cols = [ev.column for ev in model.evidence]
    risk_batch = dict(zip(batch.column("account_id").to_pylist(),
                          model.own_risk(batch).tolist(), strict=True))
    for acct in ["a0", "a3", "a7", "a11"]:
        fast = s.evidence_features(acct, last_us)
        full = s.features.features_one(acct, last_us)
        for c in cols:
            assert close(rows[acct][c], fast[c]), (acct, c, rows[acct][c], fast[c])
            assert close(fast[c], full[c])
        assert math.isclose(model.risk_one(fast)[0], risk_batch[acct], rel_tol=1e-9, abs_tol=1e-9)


# -- a controllable model: the score is the account's thinking share -----------------------------------
def _thinking_model() -> RiskModel:
    ev = (Evidence("THINKING", "thinking_share_all", "{value:.0%} thinking (benign p99 {ref:.0%})"),)
    m = RiskModel(ev)
    m.fit(pa.table({"account_id": [f"b{i}" for i in range(1000)], "thinking_share_all": [i / 1e4 for i in range(1000)]}))
    m.threshold_, m.scale_ = 0.0, 1.0
    return m


class ShareModel(RiskModel):
    """risk_one returns the thinking share itself as the score (cluster risk: max with it)."""

    def risk_one(self, features, cluster_risk=None):
        x = features.get("thinking_share_all") or 0.0
        if cluster_risk is not None:
            x = max(x, cluster_risk)
        return x, x, x >= 0.5


def _model() -> ShareModel:
    base = _thinking_model()
    m = ShareModel(base.evidence)
    m.reference_, m.threshold_, m.scale_, m.n_benign_ = base.reference_, 0.0, 1.0, base.n_benign_
    return m


def _policy(**kw) -> Policy:
    p = Policy(tiers=(Tier("throttle", 0.35), Tier("degrade", 0.45, True, 512), Tier("challenge", 0.5),
                      Tier("block", 0.8)), min_requests=1,
               default_account=Bucket(0.0, 10), default_cluster=Bucket(0.0, 1000),
               suspect_account=Bucket(0.0, 3), suspect_cluster=Bucket(0.0, 1000))
    return replace(p, **kw)


def _feed(s: OnlineScorer, acct: str, thinking: list[bool], start: int = 0, t0: datetime = T0) -> list[Decision]:
    out = []
    for k, th in enumerate(thinking):
        x = _ex(start + k, acct, t0 + timedelta(seconds=k), thinking=th)
        d = s.score_one(x)
        s.learn_one(x, None, d)
        out.append(d)
    return out


@pytest.mark.parametrize(("share", "action"), [(0.0, "allow"), (0.46, "degrade"), (0.6, "challenge"), (0.9, "block")])
def test_score_tiers(share, action):
    s = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 1000)))
    n = 50
    k = round(share * n)
    _feed(s, "a", [True] * k + [False] * (n - k))
    d = s.score_one(_ex(999, "a", T0 + timedelta(seconds=100)))
    assert d.action == action
    assert d.action in ACTIONS
    if action != "allow":
        assert d.reasons, "every non-allow decision has reasons"
    if action == "degrade":
        assert d.strip_reasoning and d.max_tokens == 512
        assert any(r.startswith("DEGRADE") for r in d.reasons)


def test_throttle_token_buckets():
    s = OnlineScorer(_model(), _policy())
    ds = _feed(s, "plain", [False] * 14)  # default bucket: burst 10, no refill
    assert [d.action for d in ds] == ["allow"] * 10 + ["throttle"] * 4
    assert "RATE_LIMIT" in ds[-1].reasons[0]
    s2 = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 1000)))
    ds = _feed(s2, "sus", [True, False, False, True, False] * 6)  # ~40% thinking: suspect tier, burst 3
    sus = [d for d in ds if 0.35 <= d.score < 0.45]
    assert [d.action for d in sus][:3] == ["allow"] * 3 and {d.action for d in sus[3:]} == {"throttle"}
    assert any("SUSPECT" in r for r in sus[0].reasons) and "suspect" in sus[-1].reasons[0]
    # refill: 1 token per second
    s3 = OnlineScorer(_model(), _policy(default_account=Bucket(1.0, 2)))
    x = [_ex(i, "r", T0 + timedelta(seconds=i // 3)) for i in range(6)]
    acts = []
    for e in x:
        d = s3.score_one(e)
        s3.learn_one(e, None, d)
        acts.append(d.action)
    assert acts[:3] == ["allow", "allow", "throttle"] and "allow" in acts[3:]


def test_cluster_bucket_and_cluster_risk():
    model = _model()
    model.cluster_min_content = 0  # the content gate on cluster risk is tested in test_scoring; here the lift itself
    s = OnlineScorer(model, _policy(default_cluster=Bucket(0.0, 5), default_account=Bucket(0.0, 100)))
    s.load_batch(BatchView(T0, {a: BatchAccount("c1", 3, 0.1, False) for a in ("x", "y", "z")}))
    acts = []
    for i in range(9):
        e = _ex(i, "xyz"[i % 3], T0 + timedelta(seconds=i))
        d = s.score_one(e)
        s.learn_one(e, None, d)
        acts.append(d.action)
    assert acts == ["allow"] * 5 + ["throttle"] * 4
    s.load_batch(BatchView(T0, {"x": BatchAccount("c1", 3, 0.95, True)}))
    d = s.score_one(_ex(50, "x", T0 + timedelta(seconds=60)))
    assert d.action == "block" and d.reasons[0].startswith("CLUSTER_RISK")


def test_allow_list_wins():
    s = OnlineScorer(_model(), _policy(allow_accounts=frozenset({"vip"}), allow_orgs=frozenset({"org-ok"})))
    s.learn_account(_acct("member", org_id="org-ok"))
    for a in ("vip", "member"):
        ds = _feed(s, a, [True] * 30)
        assert {d.action for d in ds} == {"allow"}, a
    assert _feed(s, "other", [True] * 3)[-1].action == "block"


def test_allow_listed_account_flagged_in_batch_is_not_contained():
    """A vetted customer the batch flags is allowed, and its card does not feed the hydra rule."""
    s = OnlineScorer(_model(), _policy(allow_accounts=frozenset({"vip"})))
    s.learn_account(_acct("vip", payment_fingerprint="card-V"))
    s.load_batch(BatchView(T0, {"vip": BatchAccount("c9", 5, 0.99, True)}))
    assert "vip" not in s.contained()
    s.learn_account(_acct("young", T0 + timedelta(hours=1), payment_fingerprint="card-V"))
    assert s.score_one(_ex(1, "young", T0 + timedelta(hours=2))).action == "allow"


def test_policy_yaml(tmp_path):
    p = Policy.default()
    assert [t.action for t in p.tiers] == ["throttle", "degrade", "challenge", "block"]
    assert p.tier(0.0) is None and p.tier(0.99).action == "block"
    f = tmp_path / "p.yaml"
    f.write_text("tiers: [{action: block, min_score: 0.7}]\nallow_list: {account_ids: [a]}\n")
    q = Policy.from_yaml(f)
    assert q.tier(0.75).action == "block" and "a" in q.allow_accounts
    f.write_text("tierz: []\n")
    with pytest.raises(ValueError, match="unknown keys"):
        Policy.from_yaml(f)
    f.write_text("tiers: [{action: nuke, min_score: 0.7}]\n")
    with pytest.raises(ValueError, match="tier action"):
        Policy.from_yaml(f)


# -- hydra replacement -------------------------------------------------------------------------------
def _hydra_world() -> OnlineScorer:
    s = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 10_000), min_requests=1000))
    i = 0
    for k in range(6):  # the contained cluster: one card, one sign-up /24, one template
        a = f"h{k}"
        s.learn_account(_acct(a, payment_fingerprint="card-X", signup_ip=f"203.0.113.{k + 1}"))
        for _ in range(5):
            x = _ex(i, a, T0 + timedelta(seconds=i), client_ip=f"198.51.100.{k + 1}", user_agent="python-httpx/0.27")
            s.learn_one(x, _sig(x, template_fp=777, preamble_fp=55))
            i += 1
    for k in range(20):  # benign bystanders with their own cards and templates, one shared popular template
        a = f"b{k}"
        s.learn_account(_acct(a, payment_fingerprint=f"card-{k}", signup_ip=f"192.0.2.{k + 1}"))
        for _ in range(3):
            x = _ex(i, a, T0 + timedelta(seconds=i), client_ip=f"100.64.{k}.1", user_agent="python-httpx/0.27")
            s.learn_one(x, _sig(x, template_fp=1000 + k % 3, preamble_fp=9))
            i += 1
    s.load_batch(BatchView(T0, {f"h{k}": BatchAccount("c_h", 6, 0.9, True) for k in range(6)}))
    assert s.contained() >= {f"h{k}" for k in range(6)}
    return s


def _requests(s: OnlineScorer, acct: str, n: int, start: int, **kw) -> list[Decision]:
    sig_kw = kw.pop("sig", {})
    out = []
    for j in range(n):
        x = _ex(start + j, acct, T0 + timedelta(hours=1, seconds=j), **kw)
        g = _sig(x, **sig_kw)
        x["signals"] = g
        d = s.score_one(x)
        s.learn_one(x, g, d)
        out.append(d)
    return out


def _stopped_within(ds: list[Decision]) -> int | None:
    for k, d in enumerate(ds):
        if d.action in ("challenge", "block"):
            return k + 1
    return None


def test_replacement_caught_stranger_not():
    s = _hydra_world()
    # same card + same template, fresh IPs: blocked at once
    s.learn_account(_acct("new1", T0 + timedelta(hours=1), payment_fingerprint="card-X", signup_ip="100.100.1.1"))
    ds = _requests(s, "new1", 10, 10_000, client_ip="100.100.2.2", sig={"template_fp": 777})
    assert _stopped_within(ds) == 1 and ds[0].action == "block"
    assert "HYDRA_REPLACEMENT" in ds[0].reasons[0] and "payment" in ds[0].reasons[0]
    # no card: template + client /24 of the cluster is enough for a challenge within its first requests
    s.learn_account(_acct("new2", T0 + timedelta(hours=1), payment_fingerprint="card-new", signup_ip="100.99.1.1"))
    ds = _requests(s, "new2", 10, 20_000, client_ip="198.51.100.77", sig={"template_fp": 777})
    assert (_stopped_within(ds) or 99) <= 10
    # an ordinary customer of the same proxy pool (sign-up and client /24 of the cluster, nothing else):
    # one fact, an address range, counted once (weight 1 < challenge_at 2): left alone
    s.learn_account(_acct("neighbour", T0 + timedelta(hours=1), payment_fingerprint="card-N", signup_ip="203.0.113.200"))
    ds = _requests(s, "neighbour", 10, 40_000, client_ip="198.51.100.201", user_agent="Mozilla/5.0",
                   sig={"template_fp": 4242})
    assert {d.action for d in ds} == {"allow"}
    # a stranger sharing only the popular SDK user agent and a popular bystander template is left alone
    s.learn_account(_acct("stranger", T0 + timedelta(hours=1), payment_fingerprint="card-S", signup_ip="100.98.1.1"))
    ds = _requests(s, "stranger", 10, 30_000, client_ip="100.97.3.3", user_agent="python-httpx/0.27",
                   sig={"template_fp": 1001})
    assert {d.action for d in ds} == {"allow"}


def test_shared_corporate_card_is_not_a_replacement_fingerprint():
    """One colleague contained online must not block the rest of the company: the card is mostly used
    by uncontained accounts, so it is the company's card, not the cluster's (a hydra card is not)."""
    s = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 10_000), min_requests=1000))
    for k in range(8):
        s.learn_account(_acct(f"staff{k}", payment_fingerprint="card-CORP", signup_ip=f"192.0.2.{k + 1}"))
    s.learn_account(_acct("colleague", T0 + timedelta(hours=1), payment_fingerprint="card-CORP",
                          signup_ip="192.0.2.100"))
    s.load_batch(BatchView(T0, {"staff0": BatchAccount(None, 1, None, True)}))
    assert "staff0" in s.contained()
    ds = _requests(s, "colleague", 10, 50_000, client_ip="100.90.1.1", sig={"template_fp": 31337})
    assert {d.action for d in ds} == {"allow"}
    # the same card once most of its users are contained is the cluster's: a new account is blocked
    s.load_batch(BatchView(T0, {f"staff{k}": BatchAccount(None, 1, None, True) for k in range(6)}))
    s.learn_account(_acct("new", T0 + timedelta(hours=2), payment_fingerprint="card-CORP", signup_ip="100.91.1.1"))
    ds = _requests(s, "new", 3, 60_000, client_ip="100.92.1.1", sig={"template_fp": 4343})
    assert ds[0].action == "block" and "payment" in ds[0].reasons[0]


# -- snapshot / restore ------------------------------------------------------------------------------
def test_snapshot_restore_identical(tmp_path):
    accounts, ex, sig = _stream(800, seed=5)
    model = default_model()
    pol = replace(Policy.default(), min_requests=3, default_account=Bucket(0.01, 40))

    def run(s, xs, gs):
        out = []
        for x, g in zip(xs, gs, strict=True):
            d = s.score_one(x)
            s.learn_one(x, g, d)
            out.append((d.action, round(d.score, 12), tuple(d.reasons)))
        return out

    a = OnlineScorer(model, pol)
    for r in accounts:
        a.learn_account(r)
    a.load_batch(BatchView(T0, {"a1": BatchAccount("c9", 3, 50.0, True), "a2": BatchAccount("c9", 3, 50.0, False)}))
    run(a, ex[:400], sig[:400])
    path = a.snapshot(tmp_path / "state" / "scorer.pkl")
    assert path.exists() and not list(path.parent.glob("*.tmp*"))
    b = OnlineScorer(model, pol)
    b.restore(path)
    ra, rb = run(a, ex[400:], sig[400:]), run(b, ex[400:], sig[400:])
    assert ra == rb
    assert {x[0] for x in ra} - {"allow"}, "the tail exercises more than allow"


# -- audit log ----------------------------------------------------------------------------------------
def test_audit_log_survives_restart(tmp_path):
    log = AuditLog(tmp_path / "audit", batch_rows=3)
    for i in range(7):
        log.append(Decision(f"r{i}", "block" if i % 2 else "allow", 0.5, ["X"] if i % 2 else [], "a"), T0)
    assert log.read().num_rows == 6  # two full parts flushed, one row buffered
    log.close()
    log2 = AuditLog(tmp_path / "audit", batch_rows=3)
    log2.append(Decision("r7", "challenge", 0.7, ["Y"], "b"), "2026-03-02T00:00:01Z")
    log2.close()
    t = log2.read()
    assert t.column("request_id").to_pylist() == [f"r{i}" for i in range(8)]
    assert log2.read("action = 'block'").num_rows == 3
    assert not list((tmp_path / "audit").glob(".*tmp"))


# -- replay on the smoke simulation ------------------------------------------------------------------
def test_replay_smoke_and_evaluate(tmp_path):
    from distillguard.detect import detect
    from distillguard.evaluate import evaluate
    from distillguard.ingest import ingest
    from distillguard.online import replay
    from distillguard.online.command import parse_every
    from distillguard.simulate import simulate

    sim = tmp_path / "sim"
    simulate("smoke", sim, progress=False)
    db = tmp_path / "store.duckdb"
    ingest(sim, db, progress=False)
    out = tmp_path / "run"
    s = replay(db, out, batch_every=parse_every("1d"))
    con = duckdb.connect(str(db), read_only=True)
    ids = [r[0] for r in con.execute("SELECT request_id FROM exchanges ORDER BY ts, request_id").fetchall()]
    con.close()
    lines = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assert [d["request_id"] for d in lines] == ids and s.exchanges == len(ids)
    assert all(set(d) == {"request_id", "action", "score", "reasons"} and d["action"] in ACTIONS
               and 0 <= d["score"] <= 1 for d in lines)
    assert all(d["reasons"] for d in lines if d["action"] != "allow")
    assert s.batch_runs >= 2 and AuditLog(out / "audit").read().num_rows == len(ids)
    detect(db, out, reports=False, progress=False)
    rep = evaluate(sim / "truth.jsonl", out / "detections.jsonl", decisions=out / "decisions.jsonl").to_dict()
    camp, ben = rep["campaign_actions"], rep["benign_actions"]
    assert camp["n_decided"] > 0 and ben["n_decided"] > 0
    assert camp["served_full"] < 0.2 and ben["not_allowed"] < 0.15  # smoke: see docs/online.md for numbers
    # load_batch from the contract files gives a view with the batch's flags
    view = load_batch(default_model(), out / "detections.jsonl")
    assert view.flagged
