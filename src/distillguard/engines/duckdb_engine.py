"""The embedded default engine: one DuckDB connection on the store file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from distillguard.store import duckdb_type

__all__ = ["DuckDBEngine"]


class DuckDBEngine:
    """Runs stages on a DuckDB connection (see :class:`distillguard.engines.Engine`).

    >>> import duckdb
    >>> e = DuckDBEngine(duckdb.connect())
    >>> e.create_table_as("t", "SELECT range AS x FROM range(3)")
    >>> e.query("SELECT CAST(sum(x) AS BIGINT) AS s FROM t").to_pylist()
    [{'s': 3}]
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        self.con.execute(sql, params or [])

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def has_table(self, name: str) -> bool:
        rows = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()
        return rows[0][0] > 0

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def create_table_as(self, name: str, sql: str, params: list[Any] | None = None, *, temp: bool = False) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            kind = "TEMP TABLE" if temp else "TABLE"
            self.con.execute(f"CREATE OR REPLACE {kind} {name} AS {sql}", params or [])
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def map_batches(
        self,
        sql: str,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        into: str,
        schema: pa.Schema,
        batch_rows: int = 65_536,
    ) -> int:
        reader = self.con.sql(sql).to_arrow_reader(batch_rows)
        # A second cursor writes while the first streams; one transaction makes the swap atomic.
        writer = self.con.cursor()
        cols = ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in schema)
        tmp = f"_new_{into}"
        writer.execute(f"CREATE OR REPLACE TEMP TABLE {tmp} ({cols})")
        n = 0
        for batch in reader:
            out = fn(batch)
            if out.num_rows:
                writer.register("_out", pa.Table.from_batches([out]).cast(schema))
                writer.execute(f"INSERT INTO {tmp} SELECT * FROM _out")
                writer.unregister("_out")
                n += out.num_rows
        writer.execute("BEGIN TRANSACTION")
        writer.execute(f"CREATE OR REPLACE TABLE {into} AS SELECT * FROM {tmp}")
        writer.execute(f"DROP TABLE {tmp}")
        writer.execute("COMMIT")
        return n
