"""Pure metric functions on plain arrays and lists, so each can be checked by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ActionShares",
    "Confusion",
    "PRCurve",
    "Timing",
    "action_shares",
    "confusion",
    "k_of_90",
    "pr_curve",
    "ratio",
    "timing",
]


def ratio(num: int, den: int) -> float | None:
    """``num / den``, or None (undefined, shown as "n/a") when ``den`` is 0."""
    return num / den if den else None


@dataclass
class Confusion:
    """Account-level counts at the detector's own threshold (its ``flagged`` column)."""

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None


def confusion(positive: np.ndarray, flagged: np.ndarray) -> Confusion:
    """Precision/recall/F1 of ``flagged`` against ``positive`` (campaign account); None when undefined."""
    positive, flagged = positive.astype(bool), flagged.astype(bool)
    tp = int(np.sum(positive & flagged))
    fp = int(np.sum(~positive & flagged))
    fn = int(np.sum(positive & ~flagged))
    tn = int(np.sum(~positive & ~flagged))
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Confusion(tp, fp, fn, tn, precision, recall, f1)


@dataclass
class PRCurve:
    """One point per distinct score, highest threshold first; a point counts accounts with score >= it.

    ``average_precision`` is sum over points of (recall step) x precision, as scikit-learn computes it
    (no interpolation). Points are thinned to at most ``max_points`` for JSON; AP uses all of them.
    """

    average_precision: float | None
    thresholds: list[float]
    precision: list[float]
    recall: list[float]
    n_thresholds: int


def pr_curve(positive: np.ndarray, scores: np.ndarray, max_points: int = 1000) -> PRCurve:
    """Precision-recall over every distinct score; ties enter together (one threshold)."""
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    if len(scores) == 0:
        return PRCurve(None, [], [], [], 0)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    n_in = last_of_tie + 1
    precision = tp / n_in
    recall = tp / n_pos if n_pos else np.full(len(tp), np.nan)
    ap = None
    if n_pos:
        ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    keep = np.arange(len(tp))
    if len(keep) > max_points:  # thin evenly, always keeping both endpoints
        keep = np.unique(np.r_[np.linspace(0, len(tp) - 1, max_points).round().astype(int), len(tp) - 1])
    return PRCurve(
        average_precision=ap,
        thresholds=[float(v) for v in s[last_of_tie][keep]],
        precision=[float(v) for v in precision[keep]],
        recall=[float(v) for v in recall[keep]] if n_pos else [],
        n_thresholds=len(tp),
    )


def k_of_90(n: int) -> int:
    """Accounts needed for "90% flagged": ceil(0.9 n) in integer arithmetic (0.9*70 is 63.000...01)."""
    return (9 * n + 9) // 10


@dataclass
class Timing:
    """Seconds from a campaign's first exchange to its first flag and to 90% of its accounts flagged.

    ``*_status``: ``exact``; ``upper_bound`` (some flagged accounts have no first_flagged_at, and
    they may have been flagged earlier); ``unknown`` (reached, but only through accounts without
    a time); ``not_reached``; ``no_first_ts`` (the truth gives no campaign start).
    """

    first_flag_s: float | None
    first_flag_status: str
    ninety_s: float | None
    ninety_status: str


def timing(n_accounts: int, offsets_s: Sequence[float], n_unknown: int, has_start: bool = True) -> Timing:
    """From flagged accounts' offsets (s since the campaign's first exchange) and how many lack a time."""
    known = sorted(offsets_s)
    n_flagged = len(known) + n_unknown
    bound = "exact" if n_unknown == 0 else "upper_bound"

    def reach(k: int) -> tuple[float | None, str]:
        if k == 0 or n_flagged < k:
            return None, "not_reached"
        if not has_start:
            return None, "no_first_ts"
        if len(known) >= k:
            return known[k - 1], bound
        return None, "unknown"

    first, first_status = reach(1)
    ninety, ninety_status = reach(k_of_90(n_accounts))
    return Timing(first, first_status, ninety, ninety_status)


@dataclass
class ActionShares:
    """What happened to one group's exchanges. Shares are over *decided* exchanges.

    served_full = allow; served_incl_degrade = allow + degrade (the answer went out, maybe
    degraded); not_allowed = everything but allow; blocked = block. Exchanges in the log without a
    decision are counted in ``n_undecided`` and left out of every share.
    """

    n_exchanges: int
    n_decided: int
    n_undecided: int
    counts: dict[str, int]
    served_full: float | None
    served_incl_degrade: float | None
    not_allowed: float | None
    blocked: float | None


def action_shares(counts: Mapping[str, int], actions: Sequence[str], undecided: str) -> ActionShares:
    """Shares from per-action counts (``undecided`` is the key for exchanges without a decision)."""
    full = {a: int(counts.get(a, 0)) for a in actions}
    n_undecided = int(counts.get(undecided, 0))
    n = sum(full.values())
    return ActionShares(
        n_exchanges=n + n_undecided,
        n_decided=n,
        n_undecided=n_undecided,
        counts=full,
        served_full=ratio(full.get("allow", 0), n),
        served_incl_degrade=ratio(full.get("allow", 0) + full.get("degrade", 0), n),
        not_allowed=ratio(n - full.get("allow", 0), n),
        blocked=ratio(full.get("block", 0), n),
    )
