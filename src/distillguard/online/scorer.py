"""Per-request decisions: :class:`OnlineScorer` (``score_one`` pure, ``learn_one`` updates state).

Account behaviour comes from :class:`distillguard.features.online.OnlineFeatures` (the batch feature
definitions, run incrementally); cluster membership and cluster risk from the latest batch run
(:class:`BatchView`); the risk is :meth:`RiskModel.risk_one`, so an account scored online and in
batch on the same data gets the same number. See ``docs/online.md``.
"""

from __future__ import annotations

import math
import os
import pickle
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from distillguard.features.account import HOUR_US, _ip_block
from distillguard.features.batch import to_us
from distillguard.features.online import Context, OnlineFeatures
from distillguard.online.batchview import BatchAccount, BatchView
from distillguard.online.policy import Policy, TokenBuckets
from distillguard.scoring.risk import RiskModel

__all__ = ["SEVERITY", "Decision", "OnlineScorer"]

#: How much each action withholds, for combining rules (a challenge withholds more than a degrade).
SEVERITY = {"allow": 0, "throttle": 1, "degrade": 2, "challenge": 3, "block": 4}
_SERVED = frozenset({"allow", "degrade"})
_SNAPSHOT_VERSION = 1
_CAP = 32  # per account: distinct client blocks / templates / preambles / user agents remembered
_KINDS = ("payment", "signup_block", "client_block", "user_agent", "template", "preamble")


@dataclass(slots=True)
class Decision:
    """One request's decision. ``request_id, action, score, reasons`` is the contract's ``decisions``
    row; ``strip_reasoning`` / ``max_tokens`` tell the gateway how to degrade, ``retry_after_s`` how long a
    throttled client should wait."""

    request_id: str
    action: str
    score: float
    reasons: list[str] = field(default_factory=list)
    account_id: str | None = None
    strip_reasoning: bool = False
    max_tokens: int | None = None
    retry_after_s: float | None = None

    def to_contract(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "action": self.action, "score": round(self.score, 6),
                "reasons": self.reasons}


class _Acct:
    __slots__ = ("contained", "n", "suspect", "values")

    def __init__(self) -> None:
        self.n = 0
        self.contained = False
        self.suspect = False
        self.values: dict[str, set] = {}


@lru_cache(maxsize=1 << 16)
def _block(ip: str | None) -> str | None:
    return _ip_block(ip) or None


def _t_us(ts: Any) -> int:
    return int(ts) if isinstance(ts, int) else to_us(ts)


class OnlineScorer:
    """Online containment for one process.

    >>> from distillguard.scoring.defaults import default_model
    >>> s = OnlineScorer(default_model(), Policy.default())
    >>> ex = {"request_id": "r1", "account_id": "a", "ts": "2026-05-01T00:00:00Z", "model": "m"}
    >>> d = s.score_one(ex); s.learn_one(ex, None, d); d.action
    'allow'
    """

    def __init__(self, model: RiskModel, policy: Policy | None = None, context: Context | None = None) -> None:
        self.model = model
        self.policy = policy or Policy.default()
        self.features = OnlineFeatures(context=context)
        self.batch = BatchView()
        self.buckets = TokenBuckets()
        self._acct: dict[str, _Acct] = {}
        self._users: dict[tuple[str, Any], set[str]] = {}  # (kind, value) -> accounts that use it
        self._contained_users: dict[tuple[str, Any], set[str]] = {}  # ... of which contained
        self._plan = self._read_plan()
        self._ref99: dict[str, float] = {}

    # -- feature reads ---------------------------------------------------------------------------
    def _read_plan(self) -> list[tuple[str, int, int | None]] | None:
        """(column, feature index, window hours) of each evidence column: the scorer finalizes only those."""
        by_col = {f.column(w): (i, w.hours) for i, f in enumerate(self.features.features) for w in f.windows}
        cols = [ev.column for ev in self.model.evidence]
        if not all(c in by_col for c in cols):
            return None
        return [(c, *by_col[c]) for c in dict.fromkeys(cols)]

    def evidence_features(self, account_id: str, as_of_us: int) -> dict[str, Any]:
        """The evidence columns of ``features_one(account_id, as_of)``, without finalizing the other ~60."""
        if self._plan is None:
            return self.features.features_one(account_id, as_of_us)
        st = self.features._state.get(account_id)
        if st is None:
            return {}
        feats = self.features.features
        out: dict[str, Any] = {}
        hb_now = as_of_us // HOUR_US
        for col, i, hours in self._plan:
            op = feats[i].op
            if hours is None:
                out[col] = op.finalize(st.all[i])
                continue
            s = op.init()
            for hb, bucket in st.hours.items():
                if hb_now - hours < hb <= hb_now and bucket[i] is not None:
                    s = op.merge(s, bucket[i])
            out[col] = op.finalize(s)
        return out

    # -- accounts and batch --------------------------------------------------------------------
    def learn_account(self, row: dict) -> None:
        """An ``accounts`` row (sign-up attributes: payment_fingerprint, signup_ip, org_id, created_at ...)."""
        self.features.learn_account(row)
        a = self._get(row["account_id"])
        for kind, v in (("payment", row.get("payment_fingerprint")), ("signup_block", _block(row.get("signup_ip")))):
            if v is not None:
                self._note(row["account_id"], a, kind, v)

    def load_batch(self, view: BatchView) -> None:
        """Refresh cluster membership / risk from a batch run; its flagged accounts become contained."""
        self.batch = view
        for acct_id, b in view.accounts.items():
            if b.flagged:
                self._contain(acct_id)

    def contained(self) -> set[str]:
        return {k for k, a in self._acct.items() if a.contained}

    def _get(self, account_id: str) -> _Acct:
        a = self._acct.get(account_id)
        if a is None:
            a = self._acct[account_id] = _Acct()
        return a

    def _note(self, account_id: str, a: _Acct, kind: str, v: Any) -> None:
        vals = a.values.setdefault(kind, set())
        if v in vals or len(vals) >= _CAP:
            return
        vals.add(v)
        key = (kind, v)
        self._users.setdefault(key, set()).add(account_id)
        if a.contained:
            self._contained_users.setdefault(key, set()).add(account_id)

    def _contain(self, account_id: str) -> None:
        a = self._get(account_id)
        if a.contained:
            return
        a.contained = True
        for kind, vals in a.values.items():
            for v in vals:
                self._contained_users.setdefault((kind, v), set()).add(account_id)

    # -- learning ------------------------------------------------------------------------------
    def learn_one(self, exchange: dict, signals: dict | None = None, decision: Decision | None = None) -> None:
        """Update state with one exchange (after it was decided). With ``decision``, a token is spent
        only when the request was served; without, one is spent when the bucket has one."""
        acct_id = exchange["account_id"]
        t_us = _t_us(exchange["ts"])
        self.features.learn_one(exchange, signals)
        a = self._get(acct_id)
        a.n += 1
        blk = _block(exchange.get("client_ip"))
        if blk is not None:
            self._note(acct_id, a, "client_block", blk)
        ua = exchange.get("user_agent")
        if ua is not None:
            self._note(acct_id, a, "user_agent", ua)
        if signals:
            for kind in ("template", "preamble"):
                fp = signals.get(f"{kind}_fp")
                if fp is not None:
                    self._note(acct_id, a, kind, fp)
        pol = self.policy
        if decision is not None:
            a.suspect = decision.score >= pol.throttle_min
        if decision is None or decision.action in _SERVED:
            cid = self._cluster(acct_id)
            acc_b, clu_b = (pol.suspect_account, pol.suspect_cluster) if a.suspect else \
                (pol.default_account, pol.default_cluster)
            pre = "s" if a.suspect else ""
            self.buckets.take(pre + "a:" + acct_id, acc_b, t_us)
            if cid is not None:
                self.buckets.take(pre + "c:" + cid, clu_b, t_us)
        rule = pol.replacement
        if not a.contained and a.n >= pol.min_requests and a.n % max(1, rule.recheck_every) == 0:
            ba = self.batch.accounts.get(acct_id)
            _, score, flagged = self.model.risk_one(self.evidence_features(acct_id, t_us),
                                                    ba.cluster_risk if ba else None)
            a.suspect = score >= pol.throttle_min
            if flagged:
                self._contain(acct_id)
        if rule.enabled and not a.contained and a.n <= rule.young_max_requests:
            w, _ = self._replacement(acct_id, a, None, None)
            if w >= rule.block_at:
                self._contain(acct_id)

    def _cluster(self, account_id: str) -> str | None:
        b = self.batch.accounts.get(account_id)
        return b.cluster_id if b is not None and b.cluster_size >= self.model.min_cluster else None

    # -- deciding ------------------------------------------------------------------------------
    def _allow_listed(self, account_id: str) -> bool:
        pol = self.policy
        if account_id in pol.allow_accounts:
            return True
        if pol.allow_orgs:
            row = self.features.accounts.get(account_id)
            return bool(row and row.get("org_id") in pol.allow_orgs)
        return False

    def _replacement(self, acct_id: str, a: _Acct | None, exchange: dict | None,
                     signals: dict | None) -> tuple[float, list[str]]:
        """Summed weight of the kinds of fingerprint this account shares with contained accounts."""
        rule = self.policy.replacement
        if not self._contained_users:
            return 0.0, []
        extra: dict[str, Any] = {}
        if exchange is not None:
            extra["client_block"] = _block(exchange.get("client_ip"))
            extra["user_agent"] = exchange.get("user_agent")
        if signals:
            extra["template"] = signals.get("template_fp")
            extra["preamble"] = signals.get("preamble_fp")
        w, hits = 0.0, []
        for kind in _KINDS:
            vals = a.values.get(kind, ()) if a is not None else ()
            x = extra.get(kind)
            cands = vals if x is None or x in vals else (*vals, x)
            for v in cands:
                cu = self._contained_users.get((kind, v))
                if not cu or (len(cu) == 1 and acct_id in cu):
                    continue
                users = self._users.get((kind, v), ())
                uncontained = len(users) - len(cu) - (0 if acct_id in users else 1)
                if kind != "payment" and (uncontained > rule.hub_max_accounts
                                          or len(cu) < rule.min_contained_share * (len(cu) + uncontained)):
                    continue
                w += rule.weights.get(kind, 0.0)
                hits.append(kind)
                break
        return w, hits

    def score_one(self, exchange: dict) -> Decision:
        """Decide one request before it is served; pure (reads state, changes nothing).

        ``exchange`` is a contract ``exchanges`` row (prompt text optional); a ``signals`` dict may be
        passed inside it as ``exchange["signals"]`` for the replacement rule's template match."""
        acct_id = exchange["account_id"]
        rid = exchange.get("request_id", "")
        t_us = _t_us(exchange["ts"])
        pol = self.policy
        a = self._acct.get(acct_id)
        n = a.n if a is not None else 0
        ba: BatchAccount | None = self.batch.accounts.get(acct_id)
        feats = self.evidence_features(acct_id, t_us) if n >= pol.min_requests else {}
        crisk = ba.cluster_risk if ba is not None else None
        _, score, _ = self.model.risk_one(feats, crisk)
        if self._allow_listed(acct_id):
            return Decision(rid, "allow", score, ["ALLOW_LIST: vetted customer"], acct_id)
        tier = pol.tier(score)
        action = tier.action if tier is not None else "allow"
        reasons: list[str] = []
        rule = pol.replacement
        if rule.enabled and n < rule.young_max_requests and (a is None or not a.contained):
            w, hits = self._replacement(acct_id, a, exchange, exchange.get("signals"))
            rep = "block" if w >= rule.block_at else "challenge" if w >= rule.challenge_at else None
            if rep is not None and SEVERITY[rep] > SEVERITY[action]:
                action, tier = rep, None
                score = max(score, 0.5)
                reasons.append(f"HYDRA_REPLACEMENT: account with {n} requests shares {', '.join(hits)} with "
                               f"contained accounts (weight {w:g} >= {rule.challenge_at if rep == 'challenge' else rule.block_at:g})")
        d = Decision(rid, action, score, reasons, acct_id)
        if action in ("allow", "throttle"):
            suspect = score >= pol.throttle_min
            acc_b, clu_b = (pol.suspect_account, pol.suspect_cluster) if suspect else \
                (pol.default_account, pol.default_cluster)
            empty = None
            pre = "s" if suspect else ""
            if not self.buckets.peek(pre + "a:" + acct_id, acc_b, t_us):
                empty = ("account", acc_b)
            else:
                cid = self._cluster(acct_id)
                if cid is not None and not self.buckets.peek(pre + "c:" + cid, clu_b, t_us):
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
        if d.action != "allow" or reasons:
            reasons.extend(self._evidence_reasons(feats, ba, d.action))
        d.reasons = reasons
        return d

    def _evidence_reasons(self, feats: dict[str, Any], ba: BatchAccount | None, action: str) -> list[str]:
        m = self.model
        out: list[tuple[float, str]] = []
        own = m._own_risk_one(feats) if feats else 0.0
        if m._lists is None:
            m._own_risk_one({})
        assert m._lists is not None
        for ev in m.evidence:
            v = feats.get(ev.column)
            if v is None or v != v:
                continue
            x = float(v) if ev.higher_is_riskier else -float(v)
            ref = m._lists[ev.code]
            p = (1.0 + len(ref) - bisect_left(ref, x)) / (len(ref) + 1.0)
            if p > m.truncate_p:
                continue
            r99 = self._ref99.get(ev.code)
            if r99 is None:
                r99 = ref[min(len(ref) - 1, int(0.99 * (len(ref) - 1)))] if ref else float("nan")
                r99 = self._ref99[ev.code] = r99 if ev.higher_is_riskier else -r99
            try:
                msg = ev.message.format(value=v, ref=r99)
            except (ValueError, TypeError):
                msg = f"{ev.column} = {v}"
            out.append((-2.0 * math.log(p) * ev.weight, f"{ev.code}: {msg} (benign tail p={p:.1g})"))
        out.sort(key=lambda t: -t[0])
        reasons = [s for _, s in out[: m.max_reasons]]
        if ba is not None and ba.cluster_risk is not None and ba.cluster_risk > own:
            reasons.insert(0, f"CLUSTER_RISK: member of {ba.cluster_id} ({ba.cluster_size} accounts) whose median "
                              f"risk {ba.cluster_risk:.0f} exceeds its own {own:.0f} (threshold {m.threshold_:.0f})")
        if not reasons and action != "allow":
            reasons.append(f"SCORE: {action} by policy")
        return reasons

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        f = self.features
        return {"version": _SNAPSHOT_VERSION, "features": {"state": f._state, "context": f.context,
                                                           "accounts": f.accounts, "clock": f._clock_us},
                "batch": self.batch, "buckets": self.buckets.state, "acct": self._acct, "users": self._users,
                "contained_users": self._contained_users}

    def snapshot(self, path: Path | str) -> Path:
        """Write all mutable state to ``path`` atomically (temp file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with tmp.open("wb") as fh:
            pickle.dump(self._state(), fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        return path

    def restore(self, path: Path | str) -> None:
        """Load state written by :meth:`snapshot` (same model and policy are the caller's to supply)."""
        with Path(path).open("rb") as fh:
            st = pickle.load(fh)  # noqa: S301 - our own snapshot file
        if st.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"{path}: snapshot version {st.get('version')} != {_SNAPSHOT_VERSION}")
        f = self.features
        f._state, f.context, f.accounts, f._clock_us = (st["features"][k] for k in
                                                        ("state", "context", "accounts", "clock"))
        self.batch, self.buckets.state, self._acct = st["batch"], st["buckets"], st["acct"]
        self._users, self._contained_users = st["users"], st["contained_users"]
