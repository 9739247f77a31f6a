"""Append-only audit log of decisions: Parquet part files written atomically, read back with DuckDB."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.contract import TIMESTAMP

__all__ = ["AUDIT_SCHEMA", "AuditLog"]

AUDIT_SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("account_id", pa.string()),
    pa.field("ts", TIMESTAMP),
    pa.field("action", pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("reasons", pa.list_(pa.string())),
    pa.field("decided_at", TIMESTAMP, nullable=False),
])
_PART = re.compile(r"^part-(\d{9})\.parquet$")


class AuditLog:
    """Every decision, appended to ``path/part-NNNNNNNNN.parquet`` files of ``batch_rows`` rows.

    A part is written to a temporary name, fsynced and renamed, so a crash loses at most the rows
    not yet flushed (call :meth:`flush` or :meth:`close`; also a context manager), never a half
    file. A new ``AuditLog`` on the same directory continues the numbering (survives restarts).
    """

    def __init__(self, path: Path | str, batch_rows: int = 10_000) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.batch_rows = batch_rows
        nums = [int(m.group(1)) for p in self.path.iterdir() if (m := _PART.match(p.name))]
        self._next = max(nums, default=-1) + 1
        self._rows: dict[str, list[Any]] = {f.name: [] for f in AUDIT_SCHEMA}

    def append(self, decision: Any, ts: Any = None) -> None:
        r = self._rows
        r["request_id"].append(decision.request_id)
        r["account_id"].append(getattr(decision, "account_id", None))
        if isinstance(ts, int):
            ts = datetime.fromtimestamp(ts / 1e6, tz=UTC)
        elif isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        r["ts"].append(ts)
        r["action"].append(decision.action)
        r["score"].append(float(decision.score))
        r["reasons"].append(list(decision.reasons))
        r["decided_at"].append(time.time_ns() // 1000)
        if len(r["request_id"]) >= self.batch_rows:
            self.flush()

    def flush(self) -> Path | None:
        if not self._rows["request_id"]:
            return None
        cols = dict(self._rows)
        cols["decided_at"] = pa.array(cols["decided_at"], pa.int64()).cast(TIMESTAMP)
        table = pa.table(cols, schema=AUDIT_SCHEMA)
        final = self.path / f"part-{self._next:09d}.parquet"
        tmp = self.path / f".{final.name}.tmp"
        with tmp.open("wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        self._next += 1
        self._rows = {f.name: [] for f in AUDIT_SCHEMA}
        return final

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, where: str | None = None) -> pa.Table:
        """Everything flushed so far (optionally filtered by a DuckDB ``where`` clause), in write order."""
        import duckdb

        if not any(_PART.match(p.name) for p in self.path.iterdir()):
            return AUDIT_SCHEMA.empty_table()
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            sql = (f"SELECT * EXCLUDE (filename) FROM read_parquet('{self.path}/part-*.parquet', filename = true)"
                   + (f" WHERE {where}" if where else "") + " ORDER BY filename, decided_at")
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()
