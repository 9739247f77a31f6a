"""The embedded default engine: one DuckDB connection on the store file."""

from __future__ import annotations

import contextlib
import queue
import threading
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
        # Three-stage pipeline: a reader thread fetches the next batch from DuckDB and a writer thread
        # appends finished ones while this thread runs ``fn`` (both DuckDB and Arrow release the GIL,
        # so on two cores the scan and the insert hide behind the computation). Batches stay in
        # order; at most two wait in each queue.
        inbox: queue.Queue[Any] = queue.Queue(maxsize=2)
        outbox: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for batch in reader:
                    while not stop.is_set():
                        try:
                            inbox.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)
            finally:
                _put(inbox, _END, stop)

        written = [0]

        def write() -> None:
            try:
                while True:
                    out = outbox.get()
                    if out is _END:
                        return
                    if stop.is_set():
                        continue  # drain so that the producer never blocks
                    writer.register("_out", pa.Table.from_batches([out]).cast(schema))
                    writer.execute(f"INSERT INTO {tmp} SELECT * FROM _out")
                    writer.unregister("_out")
                    written[0] += out.num_rows
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)
                stop.set()
                while outbox.get() is not _END:
                    pass

        threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=write, daemon=True)]
        for t in threads:
            t.start()
        try:
            while not errors:
                batch = inbox.get()
                if batch is _END:
                    break
                out = fn(batch)
                if out.num_rows:
                    outbox.put(out)
        except BaseException:
            stop.set()
            raise
        finally:
            if errors:
                stop.set()
            # unblock the reader (it may wait on a full inbox), then let the writer finish
            while threads[0].is_alive():
                with contextlib.suppress(queue.Empty):
                    inbox.get(timeout=0.1)
            outbox.put(_END)
            threads[1].join()
            with contextlib.suppress(Exception):
                reader.close()  # a stopped scan must not keep the connection's result open
        if errors:
            raise errors[0]
        writer.execute("BEGIN TRANSACTION")
        writer.execute(f"CREATE OR REPLACE TABLE {into} AS SELECT * FROM {tmp}")
        writer.execute(f"DROP TABLE {tmp}")
        writer.execute("COMMIT")
        return written[0]


_END = object()


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` even when the consumer has stopped reading (drop the oldest entries then)."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()
