"""Where relational stages run: DuckDB by default; Apache Spark later, with no rewrite of the stages.

A stage is written as (1) SQL in the portable subset of DuckDB's dialect that SQLGlot transpiles to
Spark SQL (``tests/test_engines.py`` transpiles every registered statement), and (2) per-exchange
functions that take and return Arrow record batches, which is what Spark's ``mapInArrow`` calls.
Stages only talk to an :class:`Engine`, never to DuckDB directly.
"""

from distillguard.engines.base import Engine, portable_sql, registered_sql, to_spark_sql
from distillguard.engines.duckdb_engine import DuckDBEngine

__all__ = ["DuckDBEngine", "Engine", "portable_sql", "registered_sql", "to_spark_sql"]
