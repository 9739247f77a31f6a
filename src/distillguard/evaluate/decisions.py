"""Join an online replay's ``decisions`` to the exchanges and the truth, in DuckDB.

Decisions carry only ``request_id``; the account and time come from the exchanges log. At full
scale both are ~30M rows, so the join, the validation and the tallies all run in DuckDB (which
spills to disk) and only small aggregates come back to Python. A file that fails validation is
re-read line by line only to name the first bad line and field.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from distillguard.contract import ACTIONS
from distillguard.evaluate._io import check_object, check_score, check_str, iter_json_lines
from distillguard.evaluate.errors import EvaluationInputError
from distillguard.evaluate.truth import Truth

__all__ = ["DecisionTally", "find_exchanges", "tally_decisions", "TIMELINE_BINS"]

#: Each campaign's span (truth first_ts..last_ts) is cut into this many bins for the leakage timeline.
TIMELINE_BINS = 200
#: DuckDB's memory cap for validation and the join; past it, DuckDB spills to a temporary directory.
MEMORY_LIMIT = os.environ.get("DISTILLGUARD_EVAL_MEMORY", "3GB")
UNDECIDED = "undecided"


@dataclass
class DecisionTally:
    """Action counts per truth group, plus a per-campaign time series for the leakage plot.

    ``by_group[("campaign"|"benign", name)][action]`` counts that group's exchanges by action;
    exchanges with no decision count under ``"undecided"``. ``timeline[campaign]`` is a sorted list of
    ``(seconds from the first exchange to the bin's end, {action: count})``; exchanges before
    the truth's first_ts fall in the first bin.
    """

    n_decisions: int = 0
    n_orphan_decisions: int = 0  # request_id not found in the exchanges
    n_unknown_account_exchanges: int = 0  # exchange's account is not in the truth
    by_group: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    timeline: dict[str, list[tuple[float, dict[str, int]]]] = field(default_factory=dict)
    bin_seconds: dict[str, float] = field(default_factory=dict)


def find_exchanges(truth_path: Path, exchanges: Path | None) -> Path:
    """The exchanges to join: the given path, else ``exchanges.{parquet,jsonl,jsonl.gz}`` beside truth."""
    if exchanges is not None:
        if not exchanges.exists():
            raise EvaluationInputError(exchanges, "file not found")
        return exchanges
    for name in ("exchanges.parquet", "exchanges", "exchanges.jsonl", "exchanges.jsonl.gz"):
        candidate = truth_path.parent / name
        if candidate.is_file() or (candidate.is_dir() and any(candidate.rglob("*.parquet"))):
            return candidate
    raise EvaluationInputError(
        truth_path.parent,
        "decisions need the exchanges log to map request_id to account and time: "
        "none found beside the truth (exchanges.parquet, exchanges.jsonl[.gz]); pass --exchanges",
    )


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...] | None:
    """First row of a query, or None; fetches all so the connection is free for the next query."""
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".parquet"


def _parquet_glob(path: Path) -> str:
    return _lit(path / "**" / "*.parquet") if path.is_dir() else _lit(path)


def _exchanges_sql(path: Path) -> str:
    if _is_parquet(path):
        return f"SELECT request_id, account_id, ts FROM read_parquet({_parquet_glob(path)})"
    cols = "{'request_id': 'VARCHAR', 'account_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'}"
    return f"SELECT * FROM read_json({_lit(path)}, format='newline_delimited', columns={cols})"


def _decisions_sql(path: Path) -> str:
    if _is_parquet(path):
        return f"SELECT request_id, action FROM read_parquet({_parquet_glob(path)})"
    cols = "{'request_id': 'VARCHAR', 'action': 'VARCHAR'}"
    return f"SELECT * FROM read_json({_lit(path)}, format='newline_delimited', columns={cols})"


_ACTIONS_SQL = ", ".join(f"'{a}'" for a in ACTIONS)

# One boolean per JSONL row: does it meet the decisions contract? Mirrors _check_decision below.
_JSON_OK = f"""coalesce(
    json_type(json) = 'OBJECT'
    AND json_type(json, '$.request_id') = 'VARCHAR' AND length(json ->> 'request_id') > 0
    AND json_type(json, '$.action') = 'VARCHAR' AND (json ->> 'action') IN ({_ACTIONS_SQL})
    AND json_type(json, '$.score') IN ('DOUBLE', 'BIGINT', 'UBIGINT')
    AND try_cast(json ->> 'score' AS DOUBLE) BETWEEN 0 AND 1
    AND (json_type(json, '$.reasons') IS NULL OR json_type(json, '$.reasons') = 'NULL'
         OR (json_type(json, '$.reasons') = 'ARRAY'
             AND len(list_filter(json_extract(json, '$.reasons[*]'),
                                 lambda x: json_type(x) <> 'VARCHAR')) = 0)),
    false)"""


def _check_decision(path: Path, line: int, row: Any) -> str:
    """Python twin of ``_JSON_OK``: raise naming the field, else return the request_id."""
    row = check_object(path, line, row, ("request_id", "action", "score"))
    request_id = check_str(path, line, "request_id", row["request_id"]) or ""
    if row["action"] not in ACTIONS:
        raise EvaluationInputError(
            path,
            f"unknown action {row['action']!r}, expected one of {', '.join(ACTIONS)}",
            line=line,
            field="action",
        )
    check_score(path, line, "score", row["score"])
    reasons = row.get("reasons")
    if reasons is not None and (
        not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)
    ):
        raise EvaluationInputError(path, "expected a list of strings", line=line, field="reasons")
    return request_id


def _locate_jsonl_error(path: Path, duplicate: str | None, fallback: str) -> EvaluationInputError:
    """Find the first line that breaks the contract (or repeats ``duplicate``)."""
    seen = False
    for line, row in iter_json_lines(path):  # raises itself on bad JSON
        request_id = _check_decision(path, line, row)
        if duplicate is not None and request_id == duplicate:
            if seen:
                return EvaluationInputError(
                    path, f"duplicate request {duplicate!r}", line=line, field="request_id"
                )
            seen = True
    return EvaluationInputError(path, fallback)


def _validate_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    src = f"read_ndjson_objects({_lit(path)})"
    try:
        n, bad = _one(con, f"SELECT count(*), count(*) FILTER (WHERE NOT {_JSON_OK}) FROM {src}") or (0, 0)
        if bad:
            raise _locate_jsonl_error(path, None, f"{bad} rows break the decisions contract")
        dup = _one(
            con, f"SELECT json ->> 'request_id' AS r FROM {src} GROUP BY r HAVING count(*) > 1 LIMIT 1"
        )
    except duckdb.Error as exc:
        raise _locate_jsonl_error(path, None, f"could not be validated ({exc})") from None
    if dup:
        raise _locate_jsonl_error(path, dup[0], f"duplicate request {dup[0]!r}")
    return int(n)


def _validate_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    src = f"read_parquet({_parquet_glob(path)}, file_row_number = true)"
    try:
        rel = con.sql(f"SELECT * FROM {src}")
        types = {name: str(t) for name, t in zip(rel.columns, rel.types, strict=True)}
    except duckdb.Error as exc:
        raise EvaluationInputError(path, f"not readable as Parquet ({exc})") from None
    for name, want in (
        ("request_id", ("VARCHAR",)),
        ("action", ("VARCHAR",)),
        ("score", ("DOUBLE", "FLOAT", "DECIMAL", "BIGINT", "INTEGER")),
    ):
        if name not in types:
            raise EvaluationInputError(path, "missing column (required)", field=name)
        if not str(types[name]).startswith(want):
            raise EvaluationInputError(path, f"column has type {types[name]}", field=name)
    checks = (
        ("request_id", "request_id IS NULL OR request_id = ''", "missing or empty"),
        (
            "action",
            f"action IS NULL OR action NOT IN ({_ACTIONS_SQL})",
            f"unknown action, expected one of {', '.join(ACTIONS)}",
        ),
        (
            "score",
            "score IS NULL OR isnan(score::DOUBLE) OR score < 0 OR score > 1",
            "null, NaN or outside [0, 1]",
        ),
    )
    for name, cond, reason in checks:
        hit = _one(con, f"SELECT file_row_number + 1, {name} FROM {src} WHERE {cond} LIMIT 1")
        if hit:
            raise EvaluationInputError(path, f"{hit[1]!r}: {reason}", line=int(hit[0]), field=name)
    dup = _one(con, f"SELECT request_id FROM {src} GROUP BY 1 HAVING count(*) > 1 LIMIT 1")
    if dup:
        raise EvaluationInputError(path, f"duplicate request {dup[0]!r}", field="request_id")
    return int((_one(con, f"SELECT count(*) FROM {src}") or (0,))[0])


def _truth_table(truth: Truth, groups: list[tuple[str, str]]) -> tuple[pa.Table, dict[str, float]]:
    """account_id → group index, and for campaign accounts the campaign's t0 and timeline bin width."""
    index = {g: i for i, g in enumerate(groups)}
    bins: dict[str, float] = {}
    for cid, c in truth.campaigns.items():
        if c.first_ts is not None:
            span = (c.last_ts - c.first_ts).total_seconds() if c.last_ts else 0.0
            bins[cid] = max(span / TIMELINE_BINS, 1.0)
    ids, gids, t0s, widths = [], [], [], []
    for account_id, cid in truth.campaign_of.items():
        c = truth.campaigns[cid]
        ids.append(account_id)
        gids.append(index[("campaign", cid)])
        t0s.append(c.first_ts.timestamp() if c.first_ts else None)
        widths.append(bins.get(cid))
    for account_id, persona in truth.persona_of.items():
        ids.append(account_id)
        gids.append(index[("benign", persona)])
        t0s.append(None)
        widths.append(None)
    table = pa.table(
        {
            "account_id": pa.array(ids, pa.string()),
            "gid": pa.array(gids, pa.int32()),
            "t0": pa.array(t0s, pa.float64()),
            "bin_s": pa.array(widths, pa.float64()),
        }
    )
    return table, bins


def tally_decisions(truth: Truth, decisions: Path, exchanges: Path) -> DecisionTally:
    """Validate the decisions, join them to exchanges and truth, and count actions per group and time bin."""
    if not decisions.exists():
        raise EvaluationInputError(decisions, "file not found")
    with tempfile.TemporaryDirectory(prefix="distillguard-eval-") as spill:
        con = _connect(Path(spill))
        try:
            return _tally(truth, decisions, exchanges, con)
        finally:
            con.close()


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB that stays under MEMORY_LIMIT by spilling to ``spill`` (30M-row joins, bounded RSS)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = {_lit(spill)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def _tally(truth: Truth, decisions: Path, exchanges: Path, con: duckdb.DuckDBPyConnection) -> DecisionTally:
    tally = DecisionTally()
    tally.n_decisions = (_validate_parquet if _is_parquet(decisions) else _validate_jsonl)(con, decisions)
    groups = [("campaign", c) for c in truth.campaigns] + [("benign", p) for p in truth.personas]
    table, tally.bin_seconds = _truth_table(truth, groups)
    con.register("truth_accounts", table)
    query = f"""
        WITH x AS ({_exchanges_sql(exchanges)}), d AS ({_decisions_sql(decisions)})
        SELECT x.request_id IS NULL AS orphan, t.gid, coalesce(d.action, '{UNDECIDED}') AS action,
               CASE WHEN t.t0 IS NOT NULL
                    THEN greatest(0, floor((epoch(x.ts) - t.t0) / t.bin_s))::BIGINT END AS bin,
               count(*) AS n
        FROM x FULL OUTER JOIN d ON x.request_id = d.request_id
        LEFT JOIN truth_accounts t ON x.account_id = t.account_id
        GROUP BY ALL"""
    try:
        rows = con.execute(query).fetchall()
    except duckdb.Error as exc:
        raise EvaluationInputError(exchanges, f"could not join exchanges to decisions ({exc})") from None
    by_group: dict[tuple[str, str], dict[str, int]] = {g: defaultdict(int) for g in groups}
    bins: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for orphan, gid, action, b, n in rows:
        if orphan:
            tally.n_orphan_decisions += n
        elif gid is None:
            tally.n_unknown_account_exchanges += n
        else:
            kind, name = groups[gid]
            by_group[(kind, name)][action] += n
            if kind == "campaign" and b is not None:
                bins[name][int(b)][action] += n
    tally.by_group = {g: dict(c) for g, c in by_group.items()}
    tally.timeline = {
        cid: [((b + 1) * tally.bin_seconds[cid], dict(counts)) for b, counts in sorted(series.items())]
        for cid, series in bins.items()
    }
    return tally


def iter_actions() -> Iterator[str]:
    """Every action a tally may hold, contract order, then undecided."""
    yield from ACTIONS
    yield UNDECIDED
