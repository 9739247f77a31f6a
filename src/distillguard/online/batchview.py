"""What the online path takes from the latest batch run: cluster membership, cluster risk, flags."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from distillguard.scoring.risk import RiskModel

__all__ = ["BatchAccount", "BatchView", "load_batch"]


@dataclass(frozen=True, slots=True)
class BatchAccount:
    cluster_id: str | None
    cluster_size: int
    cluster_risk: float | None  # median own risk of its cluster, only for clusters >= model.min_cluster
    flagged: bool


@dataclass
class BatchView:
    """account_id → :class:`BatchAccount` as of ``as_of`` (None: no batch run yet)."""

    as_of: datetime | None = None
    accounts: dict[str, BatchAccount] = field(default_factory=dict)

    @property
    def flagged(self) -> set[str]:
        return {a for a, b in self.accounts.items() if b.flagged}

    @classmethod
    def from_scored(cls, model: RiskModel, features: pa.Table, clusters: pa.Table | None,
                    as_of: datetime | None = None) -> BatchView:
        """From the batch stages' output (``run_stages``): own risk per account with the model, the
        median own risk of every cluster of at least ``model.min_cluster`` members, and the flag
        exactly as :meth:`RiskModel.score` sets it."""
        ids = features.column("account_id").to_pylist()
        if not features.num_rows:
            return cls._build(model, ids, np.zeros(0), clusters, as_of)
        assessed = model._assess(features, clusters)  # one pass: own risk, the cluster gate, the total
        view = cls._build(model, ids, assessed["own"], clusters, as_of)
        # the flag is the batch's own verdict (cluster gates and joint evidence included); an account the
        # batch did not let inherit keeps no cluster risk (online, once it has its own evidence, the
        # scorer applies the same gate to its live features)
        flags = assessed["total"] >= model.threshold_
        view.accounts = {acct: BatchAccount(b.cluster_id, b.cluster_size, b.cluster_risk if g else None, bool(f))
                         for (acct, b), f, g in zip(view.accounts.items(), flags, assessed["inherits"],
                                                    strict=True)}
        return view

    @classmethod
    def from_tables(cls, model: RiskModel, detections: pa.Table, clusters: pa.Table | None = None,
                    as_of: datetime | None = None) -> BatchView:
        """From a contract ``detections`` table (+ optional ``clusters`` for sizes). Own risk is not in
        the contract, so it is read back from the score (``risk = threshold + scale·logit(score)``);
        the cluster median is then the median of members' final risk (an upper bound of the batch's)."""
        ids = detections.column("account_id").to_pylist()
        s = np.clip(np.asarray(detections.column("score").to_pylist(), dtype=float), 1e-12, 1 - 1e-12)
        risk = model.threshold_ + model.scale_ * np.log(s / (1 - s))
        if clusters is None and "cluster_id" in detections.column_names:
            cid = detections.column("cluster_id").to_pylist()
            sizes: dict[str, int] = {}
            for c in cid:
                if c is not None:
                    sizes[c] = sizes.get(c, 0) + 1
            clusters = pa.table({"account_id": ids, "cluster_id": cid,
                                 "cluster_size": [sizes.get(c, 1) if c else 1 for c in cid]})
        view = cls._build(model, ids, risk, clusters, as_of)
        flags = dict(zip(ids, detections.column("flagged").to_pylist(), strict=True))
        view.accounts = {a: BatchAccount(b.cluster_id, b.cluster_size, b.cluster_risk, bool(flags.get(a)))
                         for a, b in view.accounts.items()}
        return view

    @classmethod
    def _build(cls, model: RiskModel, ids: list[str], own: np.ndarray, clusters: pa.Table | None,
               as_of: datetime | None) -> BatchView:
        lookup: dict[str, tuple[str | None, int]] = {}
        if clusters is not None and clusters.num_rows:
            lookup = {a: (c, s or 1) for a, c, s in zip(clusters.column("account_id").to_pylist(),
                                                         clusters.column("cluster_id").to_pylist(),
                                                         clusters.column("cluster_size").to_pylist(), strict=True)}
        members: dict[str, list[int]] = {}
        for i, a in enumerate(ids):
            c = lookup.get(a, (None, 1))[0]
            if c is not None:
                members.setdefault(c, []).append(i)
        med = {c: float(np.median(own[idx])) for c, idx in members.items()}
        accounts = {}
        thr = model.threshold_
        for i, a in enumerate(ids):
            c, size = lookup.get(a, (None, 1))
            crisk = med.get(c) if c is not None and size >= model.min_cluster else None
            total = float(own[i]) if crisk is None else max(float(own[i]), crisk)
            accounts[a] = BatchAccount(c, int(size), crisk, bool(total >= thr) and not math.isnan(total))
        return cls(as_of, accounts)


def load_batch(model: RiskModel, detections: pa.Table | Path | str, clusters: pa.Table | Path | str | None = None,
               as_of: datetime | None = None) -> BatchView:
    """A :class:`BatchView` from ``detections`` / ``clusters`` tables or files (JSONL or Parquet)."""
    return BatchView.from_tables(model, _table(detections), None if clusters is None else _table(clusters), as_of)


def _table(x: Any) -> pa.Table:
    if isinstance(x, pa.Table):
        return x
    import duckdb

    p = str(x)
    fn = "read_parquet" if p.endswith(".parquet") or Path(p).is_dir() else "read_json_auto"
    if Path(p).is_dir():
        p = p.rstrip("/") + "/*.parquet"
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM {fn}($p)", params={"p": p}).to_arrow_table()
    finally:
        con.close()
