"""Account risk from its own evidence plus its cluster's, calibrated on benign-only traffic.

Why this shape: a provider has no labelled campaigns, but it does have traffic it trusts (vetted
customers, or a period before the attack). So every piece of evidence is turned into a one-sided
tail probability *against benign accounts* ("how many benign accounts look at least this
suspicious on this feature?"), the tail probabilities are combined with Fisher's method, and the
operating threshold is the benign quantile that gives the target false-positive rate. Nothing is
fitted on attack examples, so the detector cannot memorise one simulator's campaigns.

Cluster evidence: an account inherits its cluster's median risk when the cluster has at least
``min_cluster`` members, so a low-and-slow member of a hydra network is flagged with its siblings,
while benign clusters (a university NAT, a company sharing a card) inherit a benign median.
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

__all__ = ["Evidence", "RiskModel"]


@dataclass(frozen=True)
class Evidence:
    """One feature column read as evidence, with the direction that is risky and how to say it.

    ``message`` is formatted with ``value`` (the account's) and ``ref`` (benign 99th percentile).
    """

    code: str
    column: str
    message: str
    higher_is_riskier: bool = True
    weight: float = 1.0


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
    """

    evidence: tuple[Evidence, ...]
    target_fpr: float = 0.0005
    min_cluster: int = 3
    max_reasons: int = 5
    truncate_p: float = 0.01
    reference_: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    threshold_: float | None = None
    scale_: float = 1.0
    n_benign_: int = 0
    _lists: dict[str, list[float]] | None = field(default=None, repr=False, compare=False)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, features: pa.Table, clusters: pa.Table | None = None) -> RiskModel:
        """Learn the benign distribution of every evidence column and the operating threshold.

        ``features``: one row per *benign* account (account_id + the evidence columns);
        ``clusters``: account_id, cluster_id, cluster_size for those accounts (optional).
        """
        self.n_benign_ = features.num_rows
        if self.n_benign_ == 0:
            raise ValueError("cannot calibrate on zero benign accounts")
        self.reference_ = {}
        self._lists = None
        for ev in self.evidence:
            values = _column(features, ev.column)
            values = values[~np.isnan(values)]
            self.reference_[ev.code] = np.sort(values if ev.higher_is_riskier else -values)
        total = self._combined(features, clusters)
        q = 1.0 - self.target_fpr
        self.threshold_ = float(np.quantile(total, q, method="higher")) + 1e-9
        spread = np.subtract(*np.quantile(total, [0.99, 0.5]))
        self.scale_ = float(max(spread / 4.0, 1.0))
        return self

    # -- scoring -------------------------------------------------------------------------------
    def tail_logp(self, features: pa.Table) -> np.ndarray:
        """−2·ln p per account and evidence (rows × evidence): p = share of benign at least as risky."""
        values = np.column_stack([_column(features, ev.column) for ev in self.evidence]) if self.evidence \
            else np.zeros((features.num_rows, 0))
        return self.tail_logp_values(values)

    def tail_logp_values(self, values: np.ndarray) -> np.ndarray:
        """:meth:`tail_logp` on a (rows × evidence) float array of raw feature values (NaN: missing)."""
        if not self.reference_:
            self._check_fitted()
        out = np.zeros(values.shape)
        for j, ev in enumerate(self.evidence):
            ref = self.reference_[ev.code]
            x = values[:, j]
            x = x if ev.higher_is_riskier else -x
            n = len(ref)
            at_least = n - np.searchsorted(ref, np.nan_to_num(x, nan=-np.inf), side="left")
            p = _tail_p(at_least, n)
            p[np.isnan(x)] = 1.0
            # Truncated product (Zaykin et al. 2002): evidence weaker than truncate_p adds nothing, so
            # many mildly unusual features (a busy, round-the-clock backend) do not add up to a flag.
            p[p > self.truncate_p] = 1.0
            out[:, j] = -2.0 * np.log(p) * ev.weight
        return out

    def _own_risk_one(self, features: dict[str, Any]) -> float:
        """:meth:`tail_logp_values` for one row, in scalar Python (a request path needs microseconds)."""
        if self._lists is None:
            self._lists = {k: v.tolist() for k, v in self.reference_.items()}
        risk = 0.0
        for ev in self.evidence:
            v = features.get(ev.column)
            if v is None or v != v:  # missing or NaN: no evidence
                continue
            x = float(v) if ev.higher_is_riskier else -float(v)
            ref = self._lists[ev.code]
            p = _tail_p(len(ref) - bisect_left(ref, x), len(ref))
            if p <= self.truncate_p:
                risk += -2.0 * math.log(p) * ev.weight
        return risk

    def risk_one(self, features: dict[str, Any], cluster_risk: float | None = None) -> tuple[float, float, bool]:
        """One account, online: ``features`` maps feature column → value (missing: no evidence);
        ``cluster_risk`` is its cluster's median own risk from the latest batch run, when the
        cluster has at least ``min_cluster`` members. Returns (risk, score, flagged): the same
        numbers :meth:`score` gives for that row."""
        self._check_fitted()
        risk = self._own_risk_one(features)
        if cluster_risk is not None:
            risk = max(risk, float(cluster_risk))
        z = (risk - self.threshold_) / self.scale_
        return risk, float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))), risk >= self.threshold_

    def _combined(self, features: pa.Table, clusters: pa.Table | None) -> np.ndarray:
        own = self.tail_logp(features).sum(axis=1)
        return _with_cluster(own, features, clusters, self.min_cluster)[0]

    def score(self, features: pa.Table, clusters: pa.Table | None = None) -> dict[str, Any]:
        """Scores, flags and reasons for every row of ``features`` (plain arrays, aligned)."""
        self._check_fitted()
        parts = self.tail_logp(features)
        own = parts.sum(axis=1)
        total, cluster_ids, cluster_med, cluster_sizes = _with_cluster(own, features, clusters, self.min_cluster)
        z = (total - self.threshold_) / self.scale_
        score = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        flagged = total >= self.threshold_
        reasons = [self._reasons(i, parts[i], features, own[i], total[i], cluster_ids[i], cluster_med[i],
                                 cluster_sizes[i], bool(flagged[i])) for i in range(features.num_rows)]
        return {"account_id": features.column("account_id").to_pylist(), "score": score,
                "flagged": flagged, "cluster_id": cluster_ids, "reasons": reasons, "risk": total}

    def _reasons(self, i: int, parts: np.ndarray, features: pa.Table, own: float, total: float,
                 cluster_id: str | None, cluster_med: float, cluster_size: int, flagged: bool) -> list[str]:
        """Strongest evidence first. A flagged account lists whatever pushed it over (anything rarer
        than half of benign accounts); an unflagged one only evidence rarer than 1% of them."""
        order = np.argsort(-parts)
        out = []
        floor = 0.5 if flagged else 0.01
        for j in order:
            if len(out) == self.max_reasons:
                break
            if parts[j] <= -2.0 * math.log(floor) * self.evidence[j].weight:
                continue
            ev = self.evidence[j]
            value = features.column(ev.column)[i].as_py()
            ref = self.reference_[ev.code]
            ref99 = float(np.quantile(ref, 0.99)) if len(ref) else float("nan")
            ref99 = ref99 if ev.higher_is_riskier else -ref99
            p = math.exp(-parts[j] / (2.0 * ev.weight))
            out.append(f"{ev.code}: " + ev.message.format(value=value, ref=ref99) + f" (benign tail p={p:.1g})")
        if cluster_id is not None and total > own:
            out.insert(0, f"CLUSTER_RISK: member of {cluster_id} ({cluster_size} accounts) whose median risk "
                          f"{cluster_med:.0f} exceeds its own {own:.0f} (threshold {self.threshold_:.0f})")
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
            "truncate_p": self.truncate_p,
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
                    min_cluster=data["min_cluster"], truncate_p=data.get("truncate_p", 1.0))
        model.threshold_, model.scale_, model.n_benign_ = data["threshold"], data["scale"], data["n_benign"]
        model.reference_ = {k: _expand(v) for k, v in data["reference"].items()}
        model._lists = None
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


def _with_cluster(own: np.ndarray, features: pa.Table, clusters: pa.Table | None, min_cluster: int):
    """Total risk = max(own, median own risk of the account's cluster) for clusters ≥ min_cluster."""
    n = len(own)
    ids: list[str | None] = [None] * n
    med = np.zeros(n)
    sizes = np.ones(n, dtype=int)
    if clusters is None or clusters.num_rows == 0:
        return own.copy(), ids, med, sizes
    lookup = {a: (c, s) for a, c, s in zip(clusters.column("account_id").to_pylist(),
                                             clusters.column("cluster_id").to_pylist(),
                                             clusters.column("cluster_size").to_pylist(), strict=True)}
    accounts = features.column("account_id").to_pylist()
    members: dict[str, list[int]] = {}
    for i, a in enumerate(accounts):
        c, s = lookup.get(a, (None, 1))
        ids[i], sizes[i] = c, s or 1
        if c is not None:
            members.setdefault(c, []).append(i)
    total = own.copy()
    for idx in members.values():
        m = float(np.median(own[idx]))
        med[idx] = m
        if sizes[idx[0]] >= min_cluster:
            total[idx] = np.maximum(own[idx], m)
    return total, ids, med, sizes


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
