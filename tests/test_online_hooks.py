"""Hooks other issues build on: the watchlist (shared indicators), the watermark hint, and the public
APIs that replaced private reach-ins (``ip_block``, ``OnlineFeatures.read/record/apply``,
``RiskModel.own_risk_one/evidence_one/reference_value``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pyarrow as pa
import pytest

from distillguard.features.account import FEATURES, ip_block
from distillguard.features.online import OnlineFeatures, project
from distillguard.online import BatchAccount, BatchView, Bucket, MarkRule, OnlineScorer, Policy, Watchlist
from distillguard.scoring.defaults import default_model
from test_online import T0, _acct, _ex, _feed, _model, _policy, _stream


class TinyWatchlist:
    """Cards and client IPs on a shared list (what distillguard.share will load from STIX)."""

    def __init__(self, cards: set[str], ips: set[str]) -> None:
        self.cards, self.ips = cards, ips
        self.calls = 0

    def match_account(self, row: dict) -> list[str]:
        fp = row.get("payment_fingerprint")
        return [f"payment fingerprint {fp} on a shared list"] if fp in self.cards else []

    def match_exchange(self, exchange: dict) -> list[str]:
        self.calls += 1
        ip = exchange.get("client_ip")
        return [f"client IP {ip} on a shared list"] if ip in self.ips else []


def _scorer(wl: TinyWatchlist, **kw) -> OnlineScorer:
    return OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 1000), **kw), watchlist=wl)


def test_watchlist_account_match_challenges_from_first_request():
    wl = TinyWatchlist({"card-bad"}, set())
    assert isinstance(wl, Watchlist)
    s = _scorer(wl)
    s.learn_account(_acct("w", payment_fingerprint="card-bad"))
    s.learn_account(_acct("ok", payment_fingerprint="card-good"))
    dw = _feed(s, "w", [False] * 3)
    assert [d.action for d in dw] == ["challenge"] * 3
    assert dw[0].reasons[0] == "SHARED_INDICATOR: payment fingerprint card-bad on a shared list"
    assert {d.action for d in _feed(s, "ok", [False] * 3, start=100)} == {"allow"}


def test_watchlist_exchange_match_sticks_and_allow_list_wins():
    wl = TinyWatchlist(set(), {"203.0.113.9"})
    s = _scorer(wl, allow_accounts=frozenset({"vip"}))
    x = _ex(1, "e", T0, client_ip="198.51.100.1")
    d = s.score_one(x)
    s.learn_one(x, None, d)
    assert d.action == "allow"
    hit = _ex(2, "e", T0 + timedelta(seconds=1), client_ip="203.0.113.9")
    d = s.score_one(hit)
    s.learn_one(hit, None, d)
    assert d.action == "challenge" and any(r.startswith("SHARED_INDICATOR: client IP") for r in d.reasons)
    # the account stays on notice from another address
    later = s.score_one(_ex(3, "e", T0 + timedelta(seconds=2), client_ip="198.51.100.1"))
    assert later.action == "challenge"
    vip = s.score_one(_ex(4, "vip", T0, client_ip="203.0.113.9"))
    assert vip.action == "allow" and vip.reasons == ["ALLOW_LIST: vetted customer"]


def test_watchlist_action_from_policy_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("tiers: [{action: degrade, min_score: 0.4, strip_reasoning: true, max_tokens: 100}]\n"
                 "watchlist: {action: degrade}\n")
    pol = Policy.from_yaml(f)
    assert pol.watchlist_action == "degrade" and Policy.default().watchlist_action == "challenge"
    s = OnlineScorer(_model(), replace(pol, min_requests=1, default_account=Bucket(0.0, 100)),
                     watchlist=TinyWatchlist({"c"}, set()))
    s.learn_account(_acct("w", payment_fingerprint="c"))
    d = s.score_one(_ex(1, "w", T0))
    assert d.action == "degrade" and d.strip_reasoning and d.max_tokens == 100
    f.write_text("watchlist: {action: allow}\n")
    with pytest.raises(ValueError, match="watchlist action"):
        Policy.from_yaml(f)


@pytest.mark.parametrize(("share", "action", "marked"), [(0.0, "allow", False), (0.4, "allow", True),
                                                         (0.46, "degrade", True), (0.6, "challenge", False)])
def test_watermark_suspects_that_are_still_served(share, action, marked):
    s = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 1000), suspect_account=Bucket(0.0, 1000),
                                       mark=MarkRule(True, 0.35, True)))
    n = 50
    k = round(share * n)
    _feed(s, "a", [True] * k + [False] * (n - k))
    d = s.score_one(_ex(999, "a", T0 + timedelta(seconds=100)))
    assert (d.action, d.watermark) == (action, marked)
    assert "watermark" not in d.to_contract()  # a gateway hint: the decisions contract has no such field


def test_watermark_contained_cluster_and_off_by_default():
    model = _model()
    for mark, expect in ((MarkRule(True, 0.9, True), True), (MarkRule(True, 0.9, False), False), (MarkRule(), False)):
        s = OnlineScorer(model, _policy(default_account=Bucket(0.0, 1000), mark=mark))
        # a member of a cluster whose batch risk is over the threshold (0.0 here) but itself low: served, marked
        s.load_batch(BatchView(T0, {"m": BatchAccount("c1", 3, 0.2, False)}))
        d = s.score_one(_ex(1, "m", T0))
        assert d.action == "allow" and d.watermark is expect, mark
    assert Policy.default().mark.enabled and not _policy().mark.enabled


def test_public_apis_replace_private_reach_ins():
    assert ip_block("10.1.2.3") == "10.1.2" and ip_block("2001:db8:aa::1") == "2001:db8:aa"
    accounts, ex, sig = _stream(400)
    full = OnlineFeatures(accounts={a["account_id"]: a for a in accounts})
    cols = ["request_count_1d", "thinking_share_all", "gap_s_cv_all", "hour_of_day_entropy_all"]
    part = OnlineFeatures(project(FEATURES, cols), accounts=full.accounts)
    for x, g in zip(ex, sig, strict=True):
        full.learn_one(x, g)
        t_us, values = part.record(x, g)  # record + apply == learn_one
        part.context.learn(x, g, t_us)
        part.apply(x["account_id"], t_us, values)
    for a in ("a0", "a5"):
        f = full.features_one(a)
        assert part.read(a, cols) == {c: f[c] for c in cols} == full.read(a, cols)
    m = default_model()
    feats = full.features_one("a0")
    ev = m.evidence_one(feats)
    assert ev and all(0 < p <= 1 for _, _, p in ev)
    row = pa.table({"account_id": ["a0"], **{e.column: [feats.get(e.column)] for e in m.evidence}})
    assert m.own_risk_one(feats) == pytest.approx(float(m.score(row)["risk"][0]), rel=1e-9)  # batch's number
    assert m.reference_value("THINKING", 0.99) >= m.reference_value("THINKING", 0.5)
