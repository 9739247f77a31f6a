"""Account risk from its own evidence plus its cluster's, calibrated on benign-only traffic.

Why this shape: a provider has no labelled campaigns, but it does have traffic it trusts (vetted
customers, or a period before the attack). So every piece of evidence is turned into a one-sided
tail probability *against benign accounts* ("how many benign accounts look at least this
suspicious on this feature?"), the tail probabilities are combined with Fisher's method, and the
operating threshold is the benign quantile that gives the target false-positive rate. Nothing is
fitted on attack examples, so the detector cannot memorise one simulator's campaigns.

Cluster evidence: an account inherits its cluster's median risk when the cluster has at least
``min_cluster`` members and the account itself asks for what a campaign asks for (it exceeds the
benign 95th percentile in two content groups), so a low-and-slow member of a hydra network is flagged
with its siblings, while benign clusters (a university NAT, a company sharing a card) inherit a benign
median and a bystander caught in a campaign's cluster inherits nothing.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import binom

__all__ = ["DEFAULT_TARGET_FPR", "Evidence", "RiskModel", "simes"]

#: Share of benign accounts the operating threshold is set to flag: 0.02%, below the 0.05% a provider
#: might promise, for margin. Calibrated at 0.05%, a world with 2,500 benign accounts expects 1.25 false
#: positives (and exceeds 0.05%, i.e. 1, about one time in three); the tuning seeds agreed: 5 vs 2
#: (seed-2026 at 0.01, seed 1), same recall and first flags.
DEFAULT_TARGET_FPR = 0.0002


def simes(p: np.ndarray) -> np.ndarray:
    """Simes' combination of each row's p-values: ``min_j m·p_(j) / j``. Valid (never more often
    below alpha than alpha) for independent and positively dependent evidence, unlike Fisher's
    product, which counts the same underlying trait once per correlated feature."""
    m = p.shape[1]
    if m == 1:
        return p[:, 0].copy()
    return np.minimum(1.0, (np.sort(p, axis=1) * m / np.arange(1, m + 1)).min(axis=1))


@dataclass(frozen=True)
class Evidence:
    """One feature column read as evidence, with the direction that is risky and how to say it.

    ``message`` is formatted with ``value`` (the account's) and ``ref`` (benign 99th percentile).
    ``group``: evidence that moves together in benign traffic (a power user is at the max-tokens
    ceiling, thinks and sends volume, all at once) shares a group and counts once, combined with
    Simes' test, which stays valid under such positive dependence; ``None`` is a group of its own.
    ``behaviour``: evidence about how much and when an account works rather than what it asks
    for. Every big paying customer has some; together it adds at most ``RiskModel.behaviour_cap``.
    """

    code: str
    column: str
    message: str
    higher_is_riskier: bool = True
    weight: float = 1.0
    group: str | None = None
    behaviour: bool = False


@dataclass
class RiskModel:
    """Benign-calibrated risk: ``fit`` on benign accounts' features, ``score`` any accounts.

    Parameters
    ----------
    evidence: the evidence list (feature columns, directions, messages).
    target_fpr: share of benign accounts the operating threshold may flag.
    min_cluster: clusters smaller than this lend no evidence to their members.
    max_reasons: reasons listed per account (strongest first).
    truncate_p: evidence whose benign tail probability is above this counts for nothing.
    cluster_q, cluster_min_own: cluster evidence counts members beyond the benign ``1 − cluster_q``
        quantile; a member inherits it only if it exceeds that quantile itself in at least
        ``cluster_min_own`` evidence groups (a benign household that shares a proxy exit with a
        campaign does not).
    cluster_null: the share of a benign cluster's members taken to exceed that quantile under the
        null. Not ``cluster_q``: a real benign cluster (a campus behind one NAT, a company on one
        card) is not a random draw from all benign accounts, and with hundreds of members a
        binomial test at ``cluster_q`` flags its slightest over-dispersion. A hydra network
        exceeds at far higher rates.
    behaviour_cap: the most that behaviour evidence (volume, timing, max-tokens, ...) adds to an
        account's own risk, in risk units (9.2 = one benign tail of 1e-2). Kept well below the
        threshold, so volume and machine timing can strengthen a case built on what an account
        asks for, but never flag a reseller or a production backend on their own, nor put them in
        the online policy's suspect tiers (their score stays near 0.1). None: no cap.
    behaviour_min_content: behaviour evidence counts only for an account with at least this many
        content groups (what it asks for: reasoning traces, grades, focus, templates) under
        ``truncate_p``. One content signal plus volume is a busy LLM-as-judge or eval pipeline
        grading its own outputs, not a campaign; a distiller shows several content signals at once.
    behaviour_strong_p: ... or one content group at least this rare among benign accounts (a
        grader-harvesting network sends grades at a share one benign account in a thousand reaches;
        the evaluation pipeline a little above the benign p99).
    cluster_min_content: a member inherits its cluster's median risk only if it exceeds the benign
        ``1 − cluster_q`` quantile itself in at least this many content groups. A benign user who
        shares a NAT, a proxy exit or a card with a campaign asks for ordinary things; a hydra member
        asks for what the campaign asks for, even when too little to be flagged alone.
    joint_min_content: the same gate for joint cluster evidence (on top of ``cluster_min_own``). One
        content group is enough here: joint evidence is already a test of the members' shared
        excess, and a grader-harvesting network asks for one thing only (grades), at a share a
        single member cannot be flagged on.
    """

    evidence: tuple[Evidence, ...]
    target_fpr: float = DEFAULT_TARGET_FPR
    min_cluster: int = 3
    max_reasons: int = 5
    truncate_p: float = 0.01
    cluster_q: float = 0.05
    cluster_min_own: int = 3
    cluster_null: float = 0.2
    behaviour_cap: float | None = 9.2
    behaviour_min_content: int = 2
    behaviour_strong_p: float = 1e-3
    cluster_min_content: int = 2
    joint_min_content: int = 1
    reference_: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    threshold_: float | None = None
    scale_: float = 1.0
    n_benign_: int = 0
    _lists: dict[str, list[float]] | None = field(default=None, repr=False, compare=False)
    _plan: list[tuple[str, float, list[float], float, float]] | None = field(default=None, repr=False,
                                                                               compare=False)
    _groups: list[tuple[list[int], float, bool]] = field(default_factory=list, repr=False, compare=False)
    _above: tuple[Any, float, list[Any]] | None = field(default=None, repr=False, compare=False)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, features: pa.Table, clusters: pa.Table | None = None) -> RiskModel:
        """Learn the benign distribution of every evidence column and the operating threshold.

        ``features``: one row per *benign* account (account_id + the evidence columns), or, with a
        ``step`` column, one row per account per as-of moment (what stepwise detection scores);
        ``clusters``: account_id, cluster_id, cluster_size for those accounts (with ``step`` when
        ``features`` has it; optional).

        With steps, the evidence tails come from all (account, moment) rows, and the threshold bounds
        the share of benign accounts that exceed it *at any moment*: stepwise detection gives every
        account one chance per step, so a threshold set on the end-of-log state alone lets through
        more false positives than ``target_fpr`` (young accounts with few requests have noisy shares).
        """
        if features.num_rows == 0:
            raise ValueError("cannot calibrate on zero benign accounts")
        self.reference_ = {}
        self._lists = None
        self._plan = None
        for ev in self.evidence:
            values = _column(features, ev.column)
            values = values[~np.isnan(values)]
            self.reference_[ev.code] = _thin(np.sort(values if ev.higher_is_riskier else -values))
        total = self._peak_total(features, clusters)
        self.n_benign_ = len(total)
        q = 1.0 - self.target_fpr
        self.threshold_ = float(np.quantile(total, q, method="higher")) + 1e-9
        spread = np.subtract(*np.quantile(total, [0.99, 0.5]))
        self.scale_ = float(max(spread / 4.0, 1.0))
        return self

    def _peak_total(self, features: pa.Table, clusters: pa.Table | None) -> np.ndarray:
        """Each account's combined risk; with a ``step`` column, its largest over the steps (each step
        assessed with that step's clusters)."""
        if "step" not in features.column_names:
            return self.total_risk(features, clusters)
        accounts, inverse = np.unique(np.asarray(features.column("account_id").to_pylist(), dtype=object),
                                      return_inverse=True)
        peak = np.full(len(accounts), -np.inf)
        steps = features.column("step")
        csteps = clusters.column("step") if clusters is not None else None
        for step in pc.unique(steps).to_pylist():
            rows = np.flatnonzero(np.asarray(pc.equal(steps, step)))
            f = features.take(pa.array(rows))
            c = clusters.filter(pc.equal(csteps, step)) if clusters is not None else None
            np.maximum.at(peak, inverse[rows], self.total_risk(f, c))
        return peak

    # -- scoring -------------------------------------------------------------------------------
    def tail_logp(self, features: pa.Table) -> np.ndarray:
        """−2·ln p per account and evidence (rows × evidence): p = share of benign at least as risky."""
        return self.tail_logp_values(self._values(features))

    def tail_logp_values(self, values: np.ndarray) -> np.ndarray:
        """:meth:`tail_logp` on a (rows × evidence) float array of raw feature values (NaN: missing)."""
        p = self.tail_p_values(values)
        # Truncated product (Zaykin et al. 2002): evidence weaker than truncate_p adds nothing, so
        # many mildly unusual features (a busy, round-the-clock backend) do not add up to a flag.
        p[p > self.truncate_p] = 1.0
        return -2.0 * np.log(p) * self._weights()

    def groups(self) -> list[tuple[list[int], float, bool]]:
        """Evidence indices of each group (first-appearance order), the group's weight (its largest)
        and whether it is behaviour evidence (its first member's kind)."""
        order: dict[str, list[int]] = {}
        for j, ev in enumerate(self.evidence):
            order.setdefault(ev.group or f"\0{ev.code}", []).append(j)
        return [(idx, max(self.evidence[j].weight for j in idx), self.evidence[idx[0]].behaviour)
                for idx in order.values()]

    def own_risk_from_p(self, p: np.ndarray) -> np.ndarray:
        """An account's own risk from its tail probabilities (rows × evidence): per group, Simes'
        combination, truncated at ``truncate_p``; across groups, Fisher's −2·Σ ln p, weighted, with
        behaviour groups adding at most ``behaviour_cap``, and only alongside at least
        ``behaviour_min_content`` content groups or one at ``p ≤ behaviour_strong_p``."""
        content = np.zeros(p.shape[0])
        behaviour = np.zeros(p.shape[0])
        n_content = np.zeros(p.shape[0], dtype=int)
        strongest = np.ones(p.shape[0])
        for idx, w, is_behaviour in self.groups():
            pg = simes(p[:, idx])
            part = np.where(pg <= self.truncate_p, -2.0 * np.log(np.maximum(pg, 1e-300)), 0.0) * w
            if is_behaviour:
                behaviour += part
            else:
                content += part
                n_content += pg <= self.truncate_p
                strongest = np.minimum(strongest, pg)
        if self.behaviour_cap is not None:
            behaviour = np.minimum(behaviour, self.behaviour_cap)
        counts = (n_content >= self.behaviour_min_content) | (strongest <= self.behaviour_strong_p)
        return content + np.where(counts, behaviour, 0.0)

    def groups_exceeded(self, exceed: np.ndarray, content_only: bool = False) -> np.ndarray:
        """Per row, the number of evidence groups (only content groups with ``content_only``) with at
        least one member flagged in ``exceed``."""
        return sum((exceed[:, idx].any(axis=1).astype(int) for idx, _, b in self.groups()
                    if not (content_only and b)), np.zeros(exceed.shape[0], dtype=int))

    def own_risk(self, features: pa.Table) -> np.ndarray:
        """Own risk of every row of ``features`` (no cluster evidence)."""
        return self.own_risk_from_p(self.tail_p_values(self._values(features)))

    def tail_p_values(self, values: np.ndarray) -> np.ndarray:
        """Benign tail probability of every value (rows × evidence); 1.0 where the value is missing."""
        if not self.reference_:
            self._check_fitted()
        out = np.ones(values.shape)
        for j, ev in enumerate(self.evidence):
            ref = self.reference_[ev.code]
            x = values[:, j]
            x = x if ev.higher_is_riskier else -x
            n = len(ref)
            at_least = n - np.searchsorted(ref, np.nan_to_num(x, nan=-np.inf), side="left")
            p = _tail_p(at_least, n)
            p[np.isnan(x)] = 1.0
            out[:, j] = p
        return out

    def _weights(self) -> np.ndarray:
        return np.array([ev.weight for ev in self.evidence], dtype=float)

    def _values(self, features: pa.Table) -> np.ndarray:
        if not self.evidence:
            return np.zeros((features.num_rows, 0))
        return np.column_stack([_column(features, ev.column) for ev in self.evidence])

    def _ref_lists(self) -> dict[str, list[float]]:
        if self._lists is None:
            self._lists = {k: v.tolist() for k, v in self.reference_.items()}
        return self._lists

    def own_risk_one(self, features: dict[str, Any]) -> float:
        """:meth:`tail_logp_values` summed for one row, in scalar Python (a request path needs
        microseconds, numpy's per-call overhead is more than the whole computation): the account's
        own risk before cluster evidence. ``features`` maps column -> value; missing/NaN: no evidence."""
        return self.own_risk_from_ps_one(self.tail_ps_one(features))

    def tail_ps_one(self, features: dict[str, Any]) -> list[float]:
        """Benign tail probability of each evidence for one row, in evidence order (1.0 where the value
        is missing or NaN), as :meth:`tail_p_values`; :meth:`own_risk_from_ps_one` combines them."""
        plan = self._plan
        if plan is None or self._lists is None:
            plan = self._one_plan()
        ps = []
        for col, sign, ref, n1, _ in plan:
            v = features.get(col)
            if v is None or v != v:  # missing or NaN: no evidence
                ps.append(1.0)
                continue
            ps.append((n1 - bisect_left(ref, sign * float(v))) / n1)  # _tail_p: (1 + at_least) / (n + 1)
        return ps

    def tail_ps_reuse_one(self, features: dict[str, Any], bounds: list[Any] | None
                          ) -> tuple[list[float], list[Any]]:
        """The tail ps of one row *truncated* (a p above ``truncate_p`` is given as 1.0: it counts for
        nothing in the own risk, and :meth:`own_risk_from_ps_one` of these ps equals that of
        :meth:`tail_ps_one`'s), plus per evidence the interval ``(lo, hi, p)`` of risky-direction values
        that get the same truncated p (None where missing), in evidence order, then a token of the
        calibration. Pass an earlier call's intervals as ``bounds``: a value still inside its interval
        reuses its p without a search, which is most of them when an account's features move a little
        per request (intervals from before a refit or a ``truncate_p`` change are ignored)."""
        plan = self._plan
        if plan is None or self._lists is None:
            plan = self._one_plan()
        above = self._above
        if above is None or above[0] is not plan or above[1] != self.truncate_p:
            above = self._above = (plan, self.truncate_p, [(col, sign, ref, n1, self._above_bound(ref, n1))
                                                           for col, sign, ref, n1, _ in plan])
        rows = above[2]
        if bounds is not None and bounds[-1] is not rows:  # from another calibration (or a refit): unusable
            bounds = None
        get = features.get
        ps: list[float] = []
        out: list[Any] = []
        add_p, add_b = ps.append, out.append
        inf = math.inf
        for (col, sign, ref, n1, top), b in zip(rows, bounds or [None] * len(rows), strict=False):  # + token
            v = get(col)
            if v is None or v != v:  # missing or NaN: no evidence
                add_p(1.0)
                add_b(None)
                continue
            x = sign * float(v)
            if b is None or not b[0] < x <= b[1]:
                if top is not None and x <= top[1]:
                    b = top
                else:
                    pos = bisect_left(ref, x)  # ref[pos - 1] < x <= ref[pos]: any x in there gets this pos
                    b = (ref[pos - 1] if pos else -inf, ref[pos] if pos < len(ref) else inf, (n1 - pos) / n1)
            add_p(b[2])
            add_b(b)
        add_b(rows)  # last item: what the intervals were computed against
        return ps, out

    def _above_bound(self, ref: list[float], n1: float) -> tuple[float, float, float] | None:
        """The values whose tail p is above ``truncate_p`` (ranks below the first rank whose p is not):
        ``(-inf, hi, 1.0)``, or None when there are none."""
        def above(k: int) -> bool:
            return k < len(ref) + 1 and (n1 - k) / n1 > self.truncate_p

        k = max(0, min(len(ref) + 1, int(n1 * (1.0 - self.truncate_p)) - 2))  # near the answer, then exact
        while k > 0 and not above(k - 1):
            k -= 1
        while above(k):
            k += 1
        if k == 0:
            return None
        return (-math.inf, ref[k - 1] if k <= len(ref) else math.inf, 1.0)

    def own_risk_from_ps_one(self, ps: list[float]) -> float:
        """:meth:`own_risk_from_p` for one row of :meth:`tail_ps_one` (scalar Python)."""
        if self._plan is None or self._lists is None:
            self._one_plan()
        trunc = self.truncate_p
        log = math.log
        content = behaviour = 0.0
        n_content = 0
        strongest = 1.0
        for idx, w, is_behaviour in self._groups:  # Simes within a group, as own_risk_from_p
            if len(idx) == 1:
                p = ps[idx[0]]
            else:
                if min([ps[j] for j in idx]) > trunc:  # Simes p >= its smallest p: adds nothing
                    continue
                m = len(idx)
                p = min(1.0, min(q * m / r for r, q in enumerate(sorted([ps[j] for j in idx]), 1)))
            if p <= trunc:
                if is_behaviour:
                    behaviour += -2.0 * log(max(p, 1e-300)) * w
                else:
                    content += -2.0 * log(max(p, 1e-300)) * w
                    n_content += 1
                    if p < strongest:
                        strongest = p
        if n_content < self.behaviour_min_content and strongest > self.behaviour_strong_p:
            return content
        cap = self.behaviour_cap
        return content + (behaviour if cap is None or behaviour < cap else cap)

    def inherits_cluster_one(self, ps: list[float]) -> bool:
        """Whether one account (its :meth:`tail_ps_one`) may inherit its cluster's median risk: it
        exceeds the benign ``1 − cluster_q`` quantile in at least ``cluster_min_content``
        content groups (as :meth:`score` decides)."""
        if self._plan is None or self._lists is None:
            self._one_plan()
        q = self.cluster_q
        n = sum(1 for idx, _, b in self._groups if not b and any(ps[j] <= q for j in idx))
        return n >= self.cluster_min_content

    def _one_plan(self) -> list[tuple[str, float, list[float], float, float]]:
        lists = self._ref_lists()
        plan = self._plan = [(ev.column, 1.0 if ev.higher_is_riskier else -1.0, lists[ev.code],
                              len(lists[ev.code]) + 1.0, ev.weight) for ev in self.evidence]
        self._groups = self.groups()
        return plan

    _own_risk_one = own_risk_one  # old private name

    def evidence_one(self, features: dict[str, Any]) -> list[tuple[Evidence, Any, float]]:
        """``(evidence, value, p)`` for every evidence present in one row (p: benign tail probability
        as in :meth:`tail_p_values`, before truncation); what a per-request reason is built from."""
        lists = self._ref_lists()
        out = []
        for ev in self.evidence:
            v = features.get(ev.column)
            if v is None or v != v:
                continue
            x = float(v) if ev.higher_is_riskier else -float(v)
            ref = lists[ev.code]
            out.append((ev, v, _tail_p(len(ref) - bisect_left(ref, x), len(ref))))
        return out

    def reference_value(self, code: str, q: float) -> float:
        """The benign reference at quantile ``q`` of the risky direction (nearest rank, no
        interpolation), in the feature's own sign: ``q=0.99`` is the benign p99 of a higher-is-riskier
        feature and the benign p1 of a lower-is-riskier one. NaN when the reference is empty."""
        ref = self._ref_lists()[code]
        if not ref:
            return float("nan")
        r = ref[min(len(ref) - 1, int(q * (len(ref) - 1)))]
        ev = next(e for e in self.evidence if e.code == code)
        return r if ev.higher_is_riskier else -r

    def risk_one(self, features: dict[str, Any], cluster_risk: float | None = None) -> tuple[float, float, bool]:
        """One account, online: ``features`` maps feature column → value (missing: no evidence);
        ``cluster_risk`` is its cluster's median own risk from the latest batch run, when the
        cluster has at least ``min_cluster`` members. Returns (risk, score, flagged): the same
        numbers :meth:`score` gives for that row."""
        self._check_fitted()
        ps = self.tail_ps_one(features)
        if cluster_risk is not None and features and not self.inherits_cluster_one(ps):
            cluster_risk = None  # no features read (too young online): judged on the batch's view
        return self.risk_from_own_one(self.own_risk_from_ps_one(ps), cluster_risk)

    def risk_from_own_one(self, own: float, cluster_risk: float | None = None) -> tuple[float, float, bool]:
        """:meth:`risk_one` from an own risk already computed (:meth:`own_risk_one`)."""
        self._check_fitted()
        risk = own
        if cluster_risk is not None:
            risk = max(risk, float(cluster_risk))
        z = (risk - self.threshold_) / self.scale_
        return risk, float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))), risk >= self.threshold_

    def total_risk(self, features: pa.Table, clusters: pa.Table | None = None) -> np.ndarray:
        """Each row's combined risk (own and cluster evidence): what :meth:`score` compares with the
        threshold, without the reasons."""
        return self._assess(features, clusters)["total"]

    def _assess(self, features: pa.Table, clusters: pa.Table | None) -> dict[str, Any]:
        """Own evidence, then the two kinds of cluster evidence, for every row."""
        values = self._values(features)
        p = self.tail_p_values(values)
        parts = np.where(p <= self.truncate_p, -2.0 * np.log(p), 0.0) * self._weights()
        own = self.own_risk_from_p(p)
        groups = _cluster_groups(features, clusters, self.min_cluster)
        median = np.zeros(len(own))
        joint = np.zeros(len(own))
        joint_why: list[str | None] = [None] * len(own)
        exceed = p <= self.cluster_q
        n_content = self.groups_exceeded(exceed, content_only=True)
        inherits = n_content >= self.cluster_min_content
        gate = (n_content >= self.joint_min_content) & (self.groups_exceeded(exceed) >= self.cluster_min_own)
        for cid, idx in groups.members.items():
            median[idx] = np.where(inherits[idx], np.median(own[idx]), 0.0)
            stat, why = self._joint_evidence(cid, exceed[idx])
            for i in idx:
                if gate[i]:
                    joint[i], joint_why[i] = stat, why
        total = np.maximum(own, np.maximum(median, joint))
        return {"parts": parts, "own": own, "median": median, "joint": joint, "joint_why": joint_why,
                "inherits": inherits,
                "total": total, "cluster_id": groups.ids, "cluster_size": groups.sizes}

    def _joint_evidence(self, cluster_id: str, exceed: np.ndarray) -> tuple[float, str]:
        """How unlikely it is that benign accounts would exceed the benign ``1 − cluster_q`` quantile
        this often together: per evidence, a binomial tail over the cluster's members (truncated like
        own evidence), combined with Fisher's method. A hydra network whose members each stay under
        the radar still stands out as a group."""
        n = exceed.shape[0]
        k = exceed.sum(axis=0)
        tail = binom.sf(k - 1, n, max(self.cluster_null, self.cluster_q))
        stat = float(self.own_risk_from_p(tail[None, :])[0])  # grouped like own evidence
        shown = np.where(tail <= self.truncate_p, tail, 1.0)
        contrib = -2.0 * np.log(np.maximum(shown, 1e-300)) * self._weights()
        top = np.argsort(-contrib)[:3]
        said = ", ".join(f"{self.evidence[j].code} {k[j]}/{n} (p={tail[j]:.1g})" for j in top if contrib[j] > 0)
        why = (f"CLUSTER_EVIDENCE: in {cluster_id} ({n} accounts) many members exceed the benign "
               f"{1 - self.cluster_q:.0%} quantile together: {said}")
        return stat, why

    def score(self, features: pa.Table, clusters: pa.Table | None = None) -> dict[str, Any]:
        """Scores, flags and reasons for every row of ``features`` (plain arrays, aligned)."""
        self._check_fitted()
        a = self._assess(features, clusters)
        total = a["total"]
        z = (total - self.threshold_) / self.scale_
        score = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        flagged = total >= self.threshold_
        reasons = [self._reasons(i, features, a, bool(flagged[i])) for i in range(features.num_rows)]
        return {"account_id": features.column("account_id").to_pylist(), "score": score,
                "flagged": flagged, "cluster_id": a["cluster_id"], "reasons": reasons, "risk": total,
                "cluster_risk": np.maximum(a["median"], a["joint"])}

    def _reasons(self, i: int, features: pa.Table, a: dict[str, Any], flagged: bool) -> list[str]:
        """Strongest evidence first: the account's own (rarer than 1% of benign accounts), then, when
        its cluster lifted it, why."""
        parts = a["parts"][i]
        out = []
        for j in np.argsort(-parts):
            if len(out) == self.max_reasons or parts[j] <= 0:
                break
            ev = self.evidence[j]
            value = features.column(ev.column)[i].as_py()
            ref = self.reference_[ev.code]
            ref99 = float(np.quantile(ref, 0.99)) if len(ref) else float("nan")
            ref99 = ref99 if ev.higher_is_riskier else -ref99
            p = math.exp(-parts[j] / (2.0 * ev.weight))
            out.append(f"{ev.code}: " + ev.message.format(value=value, ref=ref99) + f" (benign tail p={p:.1g})")
        own, total = a["own"][i], a["total"][i]
        cid, size = a["cluster_id"][i], a["cluster_size"][i]
        if total > own and a["joint"][i] >= a["median"][i] and a["joint_why"][i]:
            out.insert(0, a["joint_why"][i])
        elif total > own:
            out.insert(0, f"CLUSTER_RISK: member of {cid} ({size} accounts) whose median risk "
                          f"{a['median'][i]:.0f} exceeds its own {own:.0f} (threshold {self.threshold_:.0f})")
        return out

    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise RuntimeError("RiskModel is not calibrated: call fit() on benign accounts or load() one")

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the calibration as JSON (benign reference quantiles, threshold), atomically."""
        self._check_fitted()
        data = {
            "target_fpr": self.target_fpr, "min_cluster": self.min_cluster, "threshold": self.threshold_,
            "truncate_p": self.truncate_p, "cluster_q": self.cluster_q, "cluster_min_own": self.cluster_min_own,
            "cluster_null": self.cluster_null, "behaviour_cap": self.behaviour_cap,
            "behaviour_min_content": self.behaviour_min_content, "behaviour_strong_p": self.behaviour_strong_p,
            "cluster_min_content": self.cluster_min_content, "joint_min_content": self.joint_min_content,
            "scale": self.scale_, "n_benign": self.n_benign_,
            "evidence": [ev.__dict__ for ev in self.evidence],
            "reference": {k: _compress(v) for k, v in self.reference_.items()},
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RiskModel:
        data = json.loads(Path(path).read_text())
        model = cls(tuple(Evidence(**e) for e in data["evidence"]), target_fpr=data["target_fpr"],
                    min_cluster=data["min_cluster"], truncate_p=data.get("truncate_p", 1.0),
                    cluster_q=data.get("cluster_q", 0.05), cluster_min_own=data.get("cluster_min_own", 3),
                    cluster_null=data.get("cluster_null", data.get("cluster_q", 0.05)),
                    behaviour_cap=data.get("behaviour_cap"),
                    # calibrations written before these gates existed were fitted without them
                    behaviour_min_content=data.get("behaviour_min_content", 0),
                    behaviour_strong_p=data.get("behaviour_strong_p", 1.0),
                    cluster_min_content=data.get("cluster_min_content", 0),
                    joint_min_content=data.get("joint_min_content", 0))
        model.threshold_, model.scale_, model.n_benign_ = data["threshold"], data["scale"], data["n_benign"]
        model.reference_ = {k: _expand(v) for k, v in data["reference"].items()}
        model._lists = None
        model._plan = None
        return model


def _tail_p(at_least: Any, n: int) -> Any:
    """One-sided tail probability with the +1 correction (never 0: the account itself counts)."""
    return (1.0 + at_least) / (n + 1.0)


def _column(t: pa.Table, name: str) -> np.ndarray:
    if name not in t.column_names:
        return np.full(t.num_rows, np.nan)
    col = t.column(name)
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.float64())
    return col.to_numpy(zero_copy_only=False).astype(float)


@dataclass
class _Groups:
    ids: list[str | None]
    sizes: np.ndarray
    members: dict[str, list[int]]  # clusters of at least min_cluster accounts -> row indices


def _cluster_groups(features: pa.Table, clusters: pa.Table | None, min_cluster: int) -> _Groups:
    n = features.num_rows
    ids: list[str | None] = [None] * n
    sizes = np.ones(n, dtype=int)
    members: dict[str, list[int]] = {}
    if clusters is None or clusters.num_rows == 0:
        return _Groups(ids, sizes, members)
    lookup = {a: (c, s) for a, c, s in zip(clusters.column("account_id").to_pylist(),
                                             clusters.column("cluster_id").to_pylist(),
                                             clusters.column("cluster_size").to_pylist(), strict=True)}
    for i, a in enumerate(features.column("account_id").to_pylist()):
        c, s = lookup.get(a, (None, 1))
        ids[i], sizes[i] = c, s or 1
        if c is not None and (s or 1) >= min_cluster:
            members.setdefault(c, []).append(i)
    return _Groups(ids, sizes, members)


#: Most reference values kept per evidence. A stepwise reference has one row per account per day
#: (10k accounts x 45 days = 450k); evenly spaced ranks keep the distribution, tail probabilities
#: down to 1/50,001 (-2 ln p = 21.6, so one evidence beyond every benign row can still flag), and
#: keep the online scorer's per-evidence lists small. Applied before the threshold is chosen, so the
#: threshold is set on the same tail probabilities that scoring uses.
MAX_REFERENCE = 50_001


def _thin(sorted_values: np.ndarray, k: int = MAX_REFERENCE) -> np.ndarray:
    if len(sorted_values) <= k:
        return sorted_values
    return sorted_values[np.linspace(0, len(sorted_values) - 1, k).round().astype(int)]


def _compress(sorted_values: np.ndarray, k: int = 2001) -> dict[str, Any]:
    """Keep at most k quantiles of a sorted reference (plus n) so calibration files stay small."""
    n = len(sorted_values)
    if n <= k:
        return {"n": n, "q": sorted_values.tolist()}
    idx = np.linspace(0, n - 1, k).round().astype(int)
    return {"n": n, "q": sorted_values[idx].tolist()}


def _expand(d: dict[str, Any]) -> np.ndarray:
    q = np.asarray(d["q"], dtype=float)
    n = int(d["n"])
    if len(q) == n:
        return q
    return np.interp(np.linspace(0, len(q) - 1, n), np.arange(len(q)), q)
