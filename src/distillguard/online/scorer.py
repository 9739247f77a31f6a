"""Per-request decisions: :class:`OnlineScorer` (``score_one`` pure, ``learn_one`` updates state).

Account behaviour comes from :class:`distillguard.features.online.OnlineFeatures` (the batch feature
definitions, run incrementally, projected onto the columns the risk model reads); cluster membership
and cluster risk from the latest batch run (:class:`BatchView`); the risk is
:meth:`RiskModel.risk_one`, so an account scored online and in batch on the same data gets the same
number. State lives in a :class:`~distillguard.online.state.StateBackend`: in process by default, or
Redis shared by several gateway replicas. See ``docs/online.md``.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from distillguard.features.account import FEATURES, ip_block
from distillguard.features.batch import to_us
from distillguard.features.online import Context, OnlineFeatures, project
from distillguard.features.spec import Feature
from distillguard.online.batchview import BatchAccount, BatchView
from distillguard.online.policy import Policy
from distillguard.online.state import FingerprintMatch, MemoryState, StateBackend
from distillguard.online.watchlist import SHARED_INDICATOR, Watchlist
from distillguard.scoring.risk import RiskModel

__all__ = ["SEVERITY", "Decision", "OnlineScorer"]

#: How much each action withholds, for combining rules (a challenge withholds more than a degrade).
SEVERITY = {"allow": 0, "throttle": 1, "degrade": 2, "challenge": 3, "block": 4}
_SERVED = frozenset({"allow", "degrade"})
_SNAPSHOT_VERSION = 2
_CAP = 32  # per account: distinct client blocks / templates / preambles / user agents remembered

#: One account's assessment: evidence features, their (truncated) benign tail ps and own risk (None for a
#: model that overrides ``risk_one``), score, flagged.
_Assessed = tuple[dict[str, Any], list[float] | None, float | None, float, bool]


#: Fingerprint kinds that are one fact (an address range) for the replacement rule: counted once.
_NETWORK_KINDS = frozenset({"signup_block", "client_block"})


def _plain_risk(model: RiskModel) -> bool:
    """Whether the model's per-row risk is RiskModel's own (so its parts can be computed incrementally)."""
    t = type(model)
    return t is RiskModel or all(getattr(t, k) is getattr(RiskModel, k) for k in
                                 ("risk_one", "own_risk_one", "evidence_one", "tail_ps_one", "risk_from_own_one", "inherits_cluster_one",
                                  "own_risk_from_ps_one", "tail_ps_reuse_one"))


@dataclass(slots=True)
class Decision:
    """One request's decision. ``request_id, action, score, reasons`` is the contract's ``decisions``
    row; ``strip_reasoning`` / ``max_tokens`` tell the gateway how to degrade, ``retry_after_s`` how long a
    throttled client should wait, ``watermark`` that a served response should carry the provenance
    watermark (policy ``mark``). The last four are gateway hints, not part of the contract row."""

    request_id: str
    action: str
    score: float
    reasons: list[str] = field(default_factory=list)
    account_id: str | None = None
    strip_reasoning: bool = False
    max_tokens: int | None = None
    retry_after_s: float | None = None
    watermark: bool = False

    def to_contract(self) -> dict[str, Any]:
        """The contract's ``decisions`` row (``watermark`` is not in the contract: a gateway hint only)."""
        return {"request_id": self.request_id, "action": self.action, "score": round(self.score, 6),
                "reasons": self.reasons}


@lru_cache(maxsize=1 << 16)
def _block(ip: str | None) -> str | None:
    return ip_block(ip) or None


def _t_us(ts: Any) -> int:
    return ts if isinstance(ts, int) else to_us(ts)


def _extras(exchange: dict, signals: dict | None) -> dict[str, Any]:
    """The request's own fingerprint values, by kind (None values left out)."""
    out: dict[str, Any] = {}
    ip = exchange.get("client_ip")
    if ip is not None:
        b = _block(ip)
        if b is not None:
            out["client_block"] = b
    ua = exchange.get("user_agent")
    if ua is not None:
        out["user_agent"] = ua
    if signals:
        t, p = signals.get("template_fp"), signals.get("preamble_fp")
        if t is not None:
            out["template"] = t
        if p is not None:
            out["preamble"] = p
    return out


class OnlineScorer:
    """Online containment: ``score_one`` decides a request before it is served, ``learn_one`` learns
    from it afterwards.

    Parameters
    ----------
    model, policy, context: the calibrated risk model, the policy (default: the packaged
        ``policy.yaml``) and the feature context (default: learned from the stream).
    state: where state lives (default :class:`MemoryState`; ``RedisState`` to share it between
        replicas).
    watchlist: shared indicators to match accounts and requests against (see
        :class:`~distillguard.online.watchlist.Watchlist`).
    features: the declared features to maintain (default: only those the model's evidence reads,
        so ``self.features.features_one`` has only those columns; pass ``FEATURES`` for all of them).
    risk_every: recompute an account's own-evidence risk at most every this many of its requests
        (default 1: every request, exact). With k > 1 a decision may use features up to k − 1 of the
        account's requests old (never across a UTC hour boundary, a cluster-risk change or a change
        of ``min_requests`` eligibility); the share-type evidence moves by at most (k − 1)/n then.

    >>> from distillguard.scoring.defaults import default_model
    >>> s = OnlineScorer(default_model(), Policy.default())
    >>> ex = {"request_id": "r1", "account_id": "a", "ts": "2026-05-01T00:00:00Z", "model": "m"}
    >>> d = s.score_one(ex); s.learn_one(ex, None, d); d.action
    'allow'
    """

    def __init__(self, model: RiskModel, policy: Policy | None = None, context: Context | None = None, *,
                 state: StateBackend | None = None, watchlist: Watchlist | None = None,
                 features: Sequence[Feature] | None = None, risk_every: int = 1) -> None:
        self.model = model
        self.risk_every = max(1, int(risk_every))
        self._risk: dict[str, tuple[int, int, float | None, _Assessed]] = {}
        self._ref99: dict[str, float] = {}
        self._empty: tuple[RiskModel, list[float], float] | None = None  # the assessment of no features
        self._rep_memo: tuple[str, int, int, float, dict[str, Any]] | None = None
        self._plain: tuple[type, bool] = (type(None), False)  # (model class, _plain_risk of it)
        self._own_memo: tuple[Any, Any, dict[tuple[float, ...], float]] = (None, None, {})
        self._reason_memo: tuple[Any, dict[tuple[Any, ...], Any]] = (None, {})  # model, formatted reason texts
        self._inh_memo: tuple[Any, Any, bool] = (None, None, False)  # (features dict, model, cluster gate)
        self._gate: tuple[Any, Any, float, Any] = (None, None, math.nan, None)  # model, its reference, q, gate copy
        self.policy = policy or Policy.default()
        self.watchlist = watchlist
        cols = list(dict.fromkeys(ev.column for ev in model.evidence))
        if features is None:
            try:
                features = project(FEATURES, cols)
            except KeyError:  # the model reads columns that are not declared: keep them all (missing = no evidence)
                features = FEATURES
        self.features = OnlineFeatures(features, context=context)
        known = set(self.features.columns)
        self._cols = [c for c in cols if c in known]
        self._cols_t = tuple(self._cols)
        self.state: StateBackend = state if state is not None else MemoryState()
        self.state.bind(self.features, fp_cap=_CAP)
        # MemoryState's sync does nothing: skip the call per request (any other backend is called)
        self._syncs = type(self.state).sync is not MemoryState.sync

    # -- feature reads ---------------------------------------------------------------------------
    def evidence_features(self, account_id: str, as_of_us: int) -> dict[str, Any]:
        """The evidence columns of ``features_one(account_id, as_of)``, without finalizing the others."""
        return self.features.read(account_id, self._cols_t, as_of_us)

    # -- accounts and batch --------------------------------------------------------------------
    def learn_account(self, row: dict) -> None:
        """An ``accounts`` row (sign-up attributes: payment_fingerprint, signup_ip, org_id, created_at ...);
        matched against the watchlist when there is one."""
        st = self.state
        acct = row["account_id"]
        st.learn_account(row)
        for kind, v in (("payment", row.get("payment_fingerprint")), ("signup_block", _block(row.get("signup_ip")))):
            if v is not None:
                st.note(acct, kind, v)
        if self.watchlist is not None:
            hits = self.watchlist.match_account(row)
            if hits:
                st.watch(acct, [f"{SHARED_INDICATOR}: {h}" for h in hits])

    def load_batch(self, view: BatchView) -> None:
        """Refresh cluster membership / risk from a batch run; its flagged accounts become contained
        (not allow-listed ones: a vetted customer's card or template must not feed the hydra rule)."""
        self.state.load_batch(view)
        for acct_id, b in view.accounts.items():
            if b.flagged and not self._allow_listed(acct_id):
                self.state.contain(acct_id)
        self.state.flush()

    @property
    def batch(self) -> BatchView:
        """The batch view last loaded (by this process)."""
        return self.state.batch

    def contained(self) -> set[str]:
        """Accounts contained so far (batch-flagged, flagged online, or caught as replacements)."""
        self.state.flush()
        return self.state.contained()

    def flush(self) -> None:
        """Send buffered state writes now (a no-op in process; Redis: call on a timer and at shutdown)."""
        self.state.flush()

    # -- learning ------------------------------------------------------------------------------
    def learn_one(self, exchange: dict, signals: dict | None = None, decision: Decision | None = None) -> None:
        """Update state with one exchange (after it was decided). With ``decision``, a token is spent
        only when the request was served; without, one is spent when the bucket has one."""
        acct_id = exchange["account_id"]
        ts = exchange["ts"]
        t_us = ts if ts.__class__ is int else _t_us(ts)
        st, pol = self.state, self.policy
        rule = pol.replacement
        extras = _extras(exchange, signals)
        if self._syncs:
            st.sync(acct_id, extras, rule.young_max_requests if rule.enabled else 0)  # no-op if score_one just did
        n = st.learn(acct_id, exchange, signals, t_us)
        note = st.note
        for kind, v in extras.items():
            note(acct_id, kind, v)
        if decision is not None:
            suspect = decision.score >= pol.throttle_min
            st.set_suspect(acct_id, suspect)
        else:
            suspect = st.is_suspect(acct_id)
        if decision is None or decision.action in _SERVED:
            cid = self._bucket_cluster(st.batch_account(acct_id))
            if suspect:
                st.take("sa:" + acct_id, pol.suspect_account, t_us)
                if cid is not None:
                    st.take("sc:" + cid, pol.suspect_cluster, t_us)
            else:
                st.take("a:" + acct_id, pol.default_account, t_us)
                if cid is not None:
                    st.take("c:" + cid, pol.default_cluster, t_us)
        contained = st.is_contained(acct_id)
        if not contained and n >= pol.min_requests and n % max(1, rule.recheck_every) == 0:
            ba = st.batch_account(acct_id)
            crisk = ba.cluster_risk if ba else None
            a = self._assessment(acct_id, n, t_us, crisk)  # memoized: the next score_one in this hour reuses it
            score, flagged = a[3], a[4]
            st.set_suspect(acct_id, score >= pol.throttle_min)
            if flagged and not self._allow_listed(acct_id):
                st.contain(acct_id)
                contained = True
        if rule.enabled and not contained and n <= rule.young_max_requests:
            memo = self._rep_memo
            if decision is not None and memo is not None and memo[0] == acct_id and memo[1] == t_us \
                    and memo[2] == n - 1 and memo[4] == extras:
                w = memo[3]  # score_one just computed it for this request: the same answer (see _replacement)
            else:
                w, _ = self._replacement(st.fingerprint_matches(acct_id, extras))
            if w >= rule.block_at and not self._allow_listed(acct_id):
                st.contain(acct_id)
        self._rep_memo = None
        if self.watchlist is not None and not st.watch_reasons(acct_id):
            if decision is not None:
                hits = [r for r in decision.reasons if r.startswith(SHARED_INDICATOR)]
            else:
                hits = [f"{SHARED_INDICATOR}: {h}" for h in self.watchlist.match_exchange(exchange)]
            if hits:
                st.watch(acct_id, hits)

    def _bucket_cluster(self, ba: BatchAccount | None) -> str | None:
        """The batch cluster whose token bucket the account draws from (clusters of ``min_cluster``+)."""
        return ba.cluster_id if ba is not None and ba.cluster_size >= self.model.min_cluster else None

    # -- deciding ------------------------------------------------------------------------------
    def _allow_listed(self, account_id: str) -> bool:
        pol = self.policy
        if account_id in pol.allow_accounts:
            return True
        if pol.allow_orgs:
            row = self.features.accounts.get(account_id)
            return bool(row and row.get("org_id") in pol.allow_orgs)
        return False

    def _replacement(self, matches: list[FingerprintMatch]) -> tuple[float, list[str]]:
        """Summed weight of the kinds of fingerprint this account shares with contained accounts (once
        per kind; hubs and values mostly used by uncontained accounts do not count, the card included:
        a corporate card shared by colleagues who are not contained is the company's, not the cluster's).
        The network kinds (sign-up /24, client /24) count once together, at the larger weight: they are
        one fact, a shared address range, which a residential proxy pool also gives the ordinary
        customers it carries."""
        rule = self.policy.replacement
        w, hits = 0.0, []
        net = 0.0
        for kind, n_users, n_cu, in_users, in_cu in matches:
            if hits and hits[-1] == kind:
                continue
            if n_cu == 1 and in_cu:
                continue
            # other uncontained users of the value (this account itself never counts, so the answer is
            # the same before and after its request adds it to the users)
            uncontained = n_users - n_cu - (1 if in_users and not in_cu else 0)
            if uncontained > rule.hub_max_accounts or n_cu < rule.min_contained_share * (n_cu + uncontained):
                continue
            if kind in _NETWORK_KINDS:
                net = max(net, rule.weights.get(kind, 0.0))
            else:
                w += rule.weights.get(kind, 0.0)
            hits.append(kind)
        return w + net, hits

    def warm_up(self) -> None:
        """Build the risk model's per-request lookup tables now, so that the first request does not pay
        for them (with a decision budget of a few ms it would be answered by the fail mode)."""
        self.model.own_risk_one({})

    def score_one(self, exchange: dict) -> Decision:
        """Decide one request before it is served; pure (reads state, changes nothing).

        ``exchange`` is a contract ``exchanges`` row (prompt text optional); a ``signals`` dict may be
        passed inside it as ``exchange["signals"]`` for the replacement rule's template match."""
        acct_id = exchange["account_id"]
        rid = exchange.get("request_id", "")
        ts = exchange["ts"]
        t_us = ts if ts.__class__ is int else _t_us(ts)
        st, pol = self.state, self.policy
        rule = pol.replacement
        extras = _extras(exchange, exchange.get("signals"))
        if self._syncs:
            st.sync(acct_id, extras, rule.young_max_requests if rule.enabled else 0)
        n = st.requests(acct_id)
        ba: BatchAccount | None = st.batch_account(acct_id)
        crisk = ba.cluster_risk if ba is not None else None
        a = self._assessment(acct_id, n, t_us, crisk) if self.risk_every == 1 else \
            self._features_and_score(acct_id, n, t_us, crisk)
        score = a[3]
        if (pol.allow_accounts or pol.allow_orgs) and self._allow_listed(acct_id):
            return Decision(rid, "allow", score, ["ALLOW_LIST: vetted customer"], acct_id)
        tier = pol.tier(score)
        action = tier.action if tier is not None else "allow"
        reasons: list[str] = []
        contained = st.is_contained(acct_id)
        if rule.enabled and n < rule.young_max_requests and not contained:
            w, hits = self._replacement(st.fingerprint_matches(acct_id, extras))
            self._rep_memo = (acct_id, t_us, n, w, extras)
            rep = "block" if w >= rule.block_at else "challenge" if w >= rule.challenge_at else None
            if rep is not None and SEVERITY[rep] > SEVERITY[action]:
                action, tier = rep, None
                score = max(score, 0.5)
                reasons.append(f"HYDRA_REPLACEMENT: account with {n} requests shares {', '.join(hits)} with "
                               f"contained accounts (weight {w:g} >= {rule.challenge_at if rep == 'challenge' else rule.block_at:g})")
        watched = st.watch_reasons(acct_id)
        if self.watchlist is not None:
            live = self.watchlist.match_exchange(exchange)
            if live:
                watched = [*watched, *(f"{SHARED_INDICATOR}: {h}" for h in live if f"{SHARED_INDICATOR}: {h}" not in watched)]
        if watched:
            wl = pol.watchlist_action
            if SEVERITY[wl] > SEVERITY[action]:
                action = wl
                tier = pol.first_tier(wl)
            reasons.extend(watched)
        d = Decision(rid, action, score, reasons, acct_id)
        if action == "allow" or action == "throttle":
            suspect = score >= pol.throttle_min
            if suspect:
                acc_b, clu_b, pre_a, pre_c = pol.suspect_account, pol.suspect_cluster, "sa:", "sc:"
            else:
                acc_b, clu_b, pre_a, pre_c = pol.default_account, pol.default_cluster, "a:", "c:"
            empty = None
            if st.bucket_level(pre_a + acct_id, acc_b, t_us) < 1.0:
                empty = ("account", acc_b)
            else:
                cid = self._bucket_cluster(ba)
                if cid is not None and st.bucket_level(pre_c + cid, clu_b, t_us) < 1.0:
                    empty = (f"cluster {cid}", clu_b)
            if empty is None:
                d.action = "allow"
                if suspect:
                    reasons.append(f"SUSPECT: score {score:.2f} >= {pol.throttle_min:g}; rate-limited to "
                                   f"{acc_b.rate:g}/s (burst {acc_b.burst:g})")
            else:
                d.action = "throttle"
                d.retry_after_s = round(1.0 / empty[1].rate, 3) if empty[1].rate > 0 else None
                reasons.append(f"RATE_LIMIT: {empty[0]} token bucket empty ({empty[1].rate:g}/s, burst "
                               f"{empty[1].burst:g}{', suspect' if suspect else ''})")
        elif tier is not None and tier.action == "degrade":
            d.strip_reasoning, d.max_tokens = tier.strip_reasoning, tier.max_tokens
            what = [x for x in ("without reasoning text" if tier.strip_reasoning else "",
                                f"with max_tokens <= {tier.max_tokens}" if tier.max_tokens else "") if x]
            reasons.append(f"DEGRADE: served {' and '.join(what) or 'degraded'}")
        if pol.mark.enabled and d.action in _SERVED:
            d.watermark = self._mark(score, contained, ba, bool(watched))
        if reasons or d.action != "allow":
            reasons.extend(self._evidence_reasons(a, ba, d.action))
        return d

    def _features_and_score(self, acct_id: str, n: int, t_us: int, crisk: float | None) -> _Assessed:
        """Evidence features and score, reused from the account's last computation while it is at
        most ``risk_every − 1`` requests old, in the same UTC hour, with the same cluster risk."""
        if self.risk_every > 1:
            hb = t_us // 3_600_000_000
            c = self._risk.get(acct_id)
            if c is not None and 0 <= n - c[0] < self.risk_every and c[1] == hb and c[2] == crisk:
                return c[3]
            a = self._assessment(acct_id, n, t_us, crisk)
            if n >= self.policy.min_requests or n + self.risk_every <= self.policy.min_requests:
                self._risk[acct_id] = (n, hb, crisk, a)
            return a
        return self._assessment(acct_id, n, t_us, crisk)

    def _assessment(self, acct_id: str, n: int, t_us: int, crisk: float | None) -> _Assessed:
        """``(features, tail ps, own risk, score, flagged)`` of the account's current state at ``t_us``,
        exact. Features and own risk depend only on the account's feature state, the hour of ``t_us`` and
        whether ``n`` reaches ``min_requests``: memoized on the state until it changes. After a change
        the features are read again, but a value that keeps its rank among the benign reference keeps
        its p (no search), and the own risk is recombined only when some p moved."""
        model = self.model
        eligible = n >= self.policy.min_requests
        pc = self._plain
        if pc[0] is not model.__class__:
            pc = self._plain = (model.__class__, _plain_risk(model))
        plain = pc[1]
        if not eligible and plain:  # no features read: nothing to memoize per account
            e = self._empty
            if e is None or e[0] is not model:
                ps0, _ = model.tail_ps_reuse_one({}, None)
                e = self._empty = (model, ps0, model.own_risk_from_ps_one(ps0))
            # too young for its own evidence: judged on its cluster, as the batch gated it
            _, score, flagged = model.risk_from_own_one(e[2], crisk)
            return {}, e[1], e[2], score, flagged
        hb = t_us // 3_600_000_000
        m = self.features.memo(acct_id)  # [current, previous]; the state's changes reset m[0] to None
        if len(m) < 2:
            m.append(None)
        cur = m[0]  # (n, hour, eligible, model, crisk, assessment) of the state as it is now
        same_state = cur is not None and cur[0] == n and cur[1] == hb and cur[2] == eligible and cur[3] is model
        if same_state and cur[4] == crisk:
            return cur[5]
        if not plain:  # a model that overrides the per-row risk: ask it, as it says
            feats = cur[5][0] if same_state else self.evidence_features(acct_id, t_us) if eligible else {}
            _, score, flagged = model.risk_one(feats, crisk)
            a: _Assessed = (feats, None, None, score, flagged)
            m[0] = (n, hb, eligible, model, crisk, a)
            return a
        if same_state:
            feats, ps, own = cur[5][:3]
        else:
            feats = self.evidence_features(acct_id, t_us) if eligible else {}
            prev = m[1]  # (model, intervals, ps, own) of the last computation, kept across changes
            if prev is not None and prev[0] is not model:
                prev = None
            ps, bounds = model.tail_ps_reuse_one(feats, None if prev is None else prev[1])
            same = prev is not None and prev[1][-1] is bounds[-1] and ps == prev[2]  # same calibration, same ps
            own = prev[3] if same else self._own_of(model, ps, bounds[-1])
            m[1] = (model, bounds, ps, own)
        # the cluster's risk counts only for a member that asks for what its campaign asks for; the gate
        # reads the untruncated ps (cluster_q is above truncate_p) and matters only when the cluster's
        # risk is above the account's own (the risk is the larger of the two)
        if crisk is not None and eligible and not crisk <= own and not self._inherits(feats, model, m):
            crisk = None
        _, score, flagged = model.risk_from_own_one(own, crisk)
        a = (feats, ps, own, score, flagged)
        m[0] = (n, hb, eligible, model, crisk, a)
        return a

    def _inherits(self, feats: dict[str, Any], model: RiskModel, m: list[Any] | None = None) -> bool:
        """``model.inherits_cluster_one`` of the account's evidence (no features: judged on its cluster).
        The gate asks whether a p is at most ``cluster_q``, so it reads the ps truncated at ``cluster_q``
        (not at ``truncate_p``): those of a copy of the model that truncates there, which keep every p
        the gate can see and reuse the account's intervals in ``m`` like the own-risk ps. The last answer
        is kept with its features dict (the decision's reasons ask again about the same one)."""
        if not feats:
            return True
        memo = self._inh_memo
        if memo[0] is feats and memo[1] is model:
            return memo[2]
        g = self._gate
        if g[0] is not model or g[1] is not model.reference_ or g[2] != model.cluster_q:
            g = self._gate = (model, model.reference_, model.cluster_q,
                              _replace(model, truncate_p=model.cluster_q))
        prev = m[2] if m is not None and len(m) > 2 else None
        ps, bounds = g[3].tail_ps_reuse_one(feats, prev)
        if m is not None:
            if len(m) > 2:
                m[2] = bounds
            else:
                m.append(bounds)
        hit = model.inherits_cluster_one(ps)
        self._inh_memo = (feats, model, hit)
        return hit

    def _own_of(self, model: RiskModel, ps: list[float], token: Any) -> float:
        """``model.own_risk_from_ps_one(ps)``, memoized on the truncated ps (a pure function of them and
        the calibration, whose token ``tail_ps_reuse_one`` returns): accounts whose evidence sits at the
        same reference ranks share it (most ps are 1.0, the extreme ones repeat)."""
        memo = self._own_memo
        if memo[0] is not model or memo[1] is not token:
            memo = self._own_memo = (model, token, {})
        key = tuple(ps)
        own = memo[2].get(key)
        if own is None:
            own = model.own_risk_from_ps_one(ps)
            if len(memo[2]) >= 1 << 16:  # bounded: start over rather than grow without limit
                memo[2].clear()
            memo[2][key] = own
        return own

    def score_many(self, exchanges: Sequence[dict]) -> list[Decision]:
        """Decide several concurrent requests on one view of the state (one Redis round trip for all):
        each is decided as :meth:`score_one` would, but none sees the others' learning, as when they
        arrive at the same instant. Follow with :meth:`learn_many`."""
        rule = self.policy.replacement
        young = rule.young_max_requests if rule.enabled else 0
        self.state.prefetch([(x["account_id"], _extras(x, x.get("signals")), young) for x in exchanges])
        return [self.score_one(x) for x in exchanges]

    def learn_many(self, items: Sequence[tuple[dict, dict | None, Decision | None]]) -> None:
        """:meth:`learn_one` for each ``(exchange, signals, decision)``, after :meth:`score_many`."""
        try:
            for x, sig, d in items:
                self.learn_one(x, sig, d)
        finally:
            self.state.end_batch()

    def _mark(self, score: float, contained: bool, ba: BatchAccount | None, watched: bool) -> bool:
        """Serve watermarked (policy ``mark``): suspects, contained accounts, members of a cluster whose
        batch risk is over the threshold, and watchlisted accounts, as long as they are still served."""
        m = self.policy.mark
        if not m.enabled:
            return False
        if score >= m.min_score:
            return True
        if not m.contained:
            return False
        thr = self.model.threshold_
        return contained or watched or (ba is not None and ba.cluster_risk is not None and thr is not None
                                        and ba.cluster_risk >= thr)

    def _evidence_reasons(self, a: _Assessed, ba: BatchAccount | None, action: str) -> list[str]:
        m = self.model
        feats, ps = a[0], a[1]
        strong: list[tuple[float, int, Any, Any, float]] = []
        trunc = m.truncate_p
        if ps is None:  # a model with its own per-row risk
            own = m.own_risk_one(feats) if feats else 0.0
            for j, (ev, v, p) in enumerate(m.evidence_one(feats)):
                if p <= trunc:
                    strong.append((2.0 * math.log(p) * ev.weight, j, ev, v, p))
        else:
            own = a[2] if feats else 0.0  # the model's own combination (groups, caps)
            for j, ev in enumerate(m.evidence):  # as m.evidence_one(feats): present values, their tail p
                p = ps[j]
                if p > trunc:
                    continue
                v = feats.get(ev.column)
                if v is None or v != v:
                    continue
                strong.append((2.0 * math.log(p) * ev.weight, j, ev, v, p))  # strongest (most negative) first
        strong.sort()  # by (strength, evidence index): the index is unique, so later items never compare
        reasons = []
        rmemo = self._reason_memo
        if rmemo[0] is not m:
            rmemo = self._reason_memo = (m, {})
        cache = rmemo[1]
        for _, j, ev, v, p in strong[: m.max_reasons]:  # format only what is shown
            key = (j, v, p, v.__class__, v == 0 and repr(v))  # the same evidence, value (0.0 vs -0.0 apart) and p
            r = cache.get(key)
            if r is None:
                r99 = self._ref99.get(ev.code)
                if r99 is None:
                    r99 = self._ref99[ev.code] = m.reference_value(ev.code, 0.99)
                try:
                    msg = ev.message.format(value=v, ref=r99)
                except (ValueError, TypeError):
                    msg = f"{ev.column} = {v}"
                r = f"{ev.code}: {msg} (benign tail p={p:.1g})"
                if len(cache) >= 1 << 16:
                    cache.clear()
                cache[key] = r
            reasons.append(r)
        if ba is not None and ba.cluster_risk is not None and ba.cluster_risk > own and self._inherits(feats, m):
            ckey = ("cluster", id(ba), own, own == 0 and repr(own), m.threshold_)
            hit = cache.get(ckey)  # the same batch row (kept alive by the entry) and own risk: the same text
            if hit is None or hit[0] is not ba:
                if len(cache) >= 1 << 16:
                    cache.clear()
                hit = cache[ckey] = (ba, f"CLUSTER_RISK: member of {ba.cluster_id} ({ba.cluster_size} accounts) "
                                         f"whose median risk {ba.cluster_risk:.0f} exceeds its own {own:.0f} "
                                         f"(threshold {m.threshold_:.0f})")
            reasons.insert(0, hit[1])
        if not reasons and action != "allow":
            reasons.append(f"SCORE: {action} by policy")
        return reasons

    # -- state -------------------------------------------------------------------------------
    def snapshot(self, path: Path | str) -> Path:
        """Write all mutable state to ``path`` atomically (temp file, fsync, rename). With the Redis
        backend this flushes buffered writes and writes only a marker: Redis persists the state."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with tmp.open("wb") as fh:
            pickle.dump({"version": _SNAPSHOT_VERSION, "state": self.state.dump()}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        return path

    def restore(self, path: Path | str) -> None:
        """Load state written by :meth:`snapshot` (same model, policy and backend kind are the caller's
        to supply)."""
        with Path(path).open("rb") as fh:
            st = pickle.load(fh)  # noqa: S301 - our own snapshot file
        if st.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"{path}: snapshot version {st.get('version')} != {_SNAPSHOT_VERSION}")
        self.state.load(st["state"])
