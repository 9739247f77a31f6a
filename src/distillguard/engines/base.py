"""The engine interface every relational stage uses, and the registry of portable SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

__all__ = ["Engine", "portable_sql", "registered_sql", "to_spark_sql"]

_REGISTRY: dict[str, str] = {}


def portable_sql(name: str, sql: str) -> str:
    """Register a stage's SQL statement under a name so the transpile test checks it; returns it.

    Use ``{placeholders}`` only for table names and constants that are filled with ``str.format``.
    """
    _REGISTRY[name] = sql
    return sql


def registered_sql() -> dict[str, str]:
    """Every statement registered so far (import the stage modules first)."""
    return dict(_REGISTRY)


def to_spark_sql(sql: str) -> str:
    """Transpile one DuckDB statement to Spark SQL with SQLGlot; raises on what Spark cannot run."""
    import sqlglot

    out = sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    return ";\n".join(out)


class Engine(Protocol):
    """What a stage may ask of an engine."""

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run a statement for its effect."""

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run a query and return the result as an Arrow table (small results only)."""

    def create_table_as(self, name: str, sql: str, params: list[Any] | None = None, *, temp: bool = False) -> None:
        """Replace table ``name`` with the result of ``sql``, atomically; ``temp``: a working table
        of this session only (never written to the store file)."""

    def map_batches(
        self,
        sql: str,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        into: str,
        schema: pa.Schema,
        batch_rows: int = 65_536,
    ) -> int:
        """Stream ``sql``'s result through ``fn`` batch by batch (like Spark's ``mapInArrow``) and
        replace table ``into`` (typed by ``schema``) with the output, atomically; return rows written."""

    def has_table(self, name: str) -> bool:
        """Whether a table (or view) of that name exists, so a stage can degrade when an optional
        input (e.g. ``signals``) is absent."""

    def register(self, name: str, table: pa.Table) -> None:
        """Make an Arrow table visible to SQL under ``name`` (for small inputs like lookup tables)."""
