"""Output files: ``accounts.parquet``, ``exchanges.parquet`` (streamed, one row group per day) and
``truth.jsonl`` - the only file that names labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.contract import ACCOUNTS, EXCHANGES, TIMESTAMP
from distillguard.simulate._util import ip_strings, rfc3339
from distillguard.simulate.population import Population

__all__ = ["ExchangeStats", "account_order", "write_accounts", "write_truth", "exchange_writer"]

COMPRESSION = "zstd"


def account_order(pop: Population) -> np.ndarray:
    """Rows sorted by (random) account id, so row order says nothing about who is who."""
    return pc.sort_indices(pop.account_id).to_numpy()


def write_accounts(pop: Population, path: Path, order: np.ndarray, chunk: int = 100_000) -> None:
    with pq.ParquetWriter(path, ACCOUNTS.schema, compression=COMPRESSION) as w:
        for lo in range(0, pop.n, chunk):
            o = order[lo : lo + chunk]
            ta = pa.array(o)
            arrays = [
                pop.account_id.take(ta),
                pa.array(pop.created_at[o], TIMESTAMP),
                pop.org_id.take(ta),
                pa.array(pop.tier[o].astype(str), pa.string()),
                pa.array(pop.email_domain[o].astype(str), pa.string()),
                pop.payment.take(ta),
                ip_strings(pop.signup_ip[o]),
                pa.array(pop.country[o].astype(str), pa.string()),
                pa.array(pop.verified[o].astype(bool)),
            ]
            w.write_table(pa.Table.from_arrays(arrays, schema=ACCOUNTS.schema))


def exchange_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, EXCHANGES.schema, compression=COMPRESSION)


class ExchangeStats:
    """Counts per account and first/last ts per group, taken from the rows actually written."""

    def __init__(self, n_accounts: int, n_groups: int) -> None:
        self.per_account = np.zeros(n_accounts, np.int64)
        self.first = np.full(n_groups, np.iinfo(np.int64).max)
        self.last = np.full(n_groups, np.iinfo(np.int64).min)
        self.n = 0
        self.min_ts: int | None = None
        self.max_ts: int | None = None

    def update(self, day: pa.Table) -> None:
        if day.num_rows == 0:
            return
        acc = day["_acc"].to_numpy()
        grp = day["_grp"].to_numpy()
        ts = day["ts"].cast(pa.int64()).to_numpy()
        self.per_account += np.bincount(acc, minlength=self.per_account.size)
        np.minimum.at(self.first, grp, ts)
        np.maximum.at(self.last, grp, ts)
        self.n += ts.size
        self.min_ts = int(ts[0]) if self.min_ts is None else self.min_ts
        self.max_ts = int(ts[-1])


def _truth_lines(pop: Population, order: np.ndarray, stats: ExchangeStats) -> Iterator[str]:
    ids = pop.account_id.to_pylist()
    for i in order:
        g = pop.groups[int(pop.group[i])]
        camp = g.kind == "campaign"
        yield json.dumps({
            "kind": "account", "account_id": ids[i],
            "label": f"campaign:{g.name}" if camp else f"benign:{g.name}",
            "persona": None if camp else g.name, "campaign_id": g.name if camp else None,
            "hard_negative": bool(g.hard_negative), "role": pop.role[i],
        })
    for g in pop.groups:
        n_acc = int(g.members.size)
        n_ex = int(stats.per_account[g.members].sum())
        if g.kind == "campaign":
            assert g.campaign is not None
            seen = n_ex > 0
            yield json.dumps({
                "kind": "campaign", "campaign_id": g.name, "style": g.campaign.style, "params": g.campaign.params(),
                "first_ts": rfc3339(int(stats.first[g.index])) if seen else None,
                "last_ts": rfc3339(int(stats.last[g.index])) if seen else None,
                "n_accounts": n_acc, "n_exchanges": n_ex,
            })
        else:
            yield json.dumps({"kind": "persona", "persona": g.name, "hard_negative": bool(g.hard_negative),
                              "n_accounts": n_acc, "n_exchanges": n_ex})


def write_truth(pop: Population, path: Path, order: np.ndarray, stats: ExchangeStats) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for line in _truth_lines(pop, order, stats):
            fh.write(line)
            fh.write("\n")
