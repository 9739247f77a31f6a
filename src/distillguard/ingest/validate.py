"""Turn what readers produce into contract-typed Arrow tables, setting aside every unusable row.

Two steps, shared by every source format:

1. *Typing*: readers either hand over an Arrow table that already has the contract's types
   (timestamps may still be strings), or :class:`~distillguard.ingest.records.RawRecord` rows
   that :func:`records_to_chunk` types one by one, naming the first field of the wrong type.
2. *Checking* (:func:`check_chunk`, vectorised): required fields present and non-empty,
   timestamps in RFC 3339, no NUL bytes, no field over its size limit.

A rejected row becomes a :class:`Rejection` naming its row and field; nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.contract import Table
from distillguard.ingest.records import RawRecord

__all__ = ["Chunk", "Rejection", "check_chunk", "loose_schema", "records_to_chunk", "RAW_MAX"]

#: Raw text kept in the quarantine per row (characters).
RAW_MAX = 65_536
ROW_COL = "_row"

# RFC 3339 date-time (a space instead of "T" is tolerated; an offset or "Z" is required).
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339)


@dataclass(slots=True)
class Rejection:
    """One row set aside: where it was, which field, why, and the row as read."""

    row: int | None
    field: str | None
    reason: str
    raw: str


@dataclass
class Chunk:
    """A batch of rows from one source, typed as far as the reader could.

    ``table`` has the contract's columns (timestamps may be strings) plus ``_row``, the 1-based
    position in the source; ``raw(i)`` gives the raw text of table row ``i`` for the quarantine;
    ``rejected`` holds rows that failed before they could become columns.
    """

    table: pa.Table
    raw: Callable[[int], str]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.table.num_rows + len(self.rejected)


def loose_schema(table: Table) -> pa.Schema:
    """The contract schema with timestamps as strings: what JSON sources parse into."""
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type) for f in table.fields
    ]
    return pa.schema(fields)


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "an RFC 3339 timestamp string"
    if pa.types.is_string(t):
        return "a string"
    if pa.types.is_int64(t):
        return "an integer"
    if pa.types.is_boolean(t):
        return "a boolean"
    return str(t)


def _json_kind(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), type(v).__name__
    )


def _conforms(value: Any, t: pa.DataType) -> bool:
    if pa.types.is_string(t) or pa.types.is_timestamp(t):
        return isinstance(value, str)
    if pa.types.is_int64(t):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if pa.types.is_boolean(t):
        return isinstance(value, bool)
    return True


def type_record(value: dict[str, Any], table: Table) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """Check one parsed record's JSON types; return (typed row, bad field, reason)."""
    if not isinstance(value, dict):
        return None, None, f"row is a JSON {_json_kind(value)}, not an object"
    row: dict[str, Any] = {}
    for f in table.fields:
        v = value.get(f.name)
        if v is not None and not _conforms(v, f.type):
            shown = orjson.dumps(v)[:60].decode("utf-8", "replace")
            return None, f.name, f"wrong type: expected {_type_name(f.type)}, got {_json_kind(v)} {shown}"
        row[f.name] = v
    return row, None, None


def records_to_chunk(records: Iterable[RawRecord], table: Table) -> Chunk:
    """Type rows one by one (the careful path, used when a fast reader cannot)."""
    rows: list[dict[str, Any]] = []
    raws: list[str] = []
    rejected: list[Rejection] = []
    for rec in records:
        if rec.value is None:
            fld, reason = rec.error or (None, "unreadable row")
            rejected.append(Rejection(rec.row, fld, reason, rec.raw[:RAW_MAX]))
            continue
        typed, fld, reason = type_record(rec.value, table)
        if typed is None:
            rejected.append(Rejection(rec.row, fld, reason or "unreadable row", rec.raw[:RAW_MAX]))
            continue
        typed[ROW_COL] = rec.row
        rows.append(typed)
        raws.append(rec.raw)
    schema = loose_schema(table).append(pa.field(ROW_COL, pa.int64()))
    tbl = pa.Table.from_pylist(rows, schema=schema)
    return Chunk(tbl, lambda i: raws[i][:RAW_MAX], rejected)


def _single_array(col: pa.ChunkedArray) -> pa.Array:
    """The column as one array, without copying when it already is one chunk."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _cast_column(col: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast a column, returning the result and a mask of values that would not cast (set to null)."""
    col = _single_array(col) if isinstance(col, pa.ChunkedArray) else col
    try:
        return pc.cast(col, target), np.zeros(len(col), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        pass
    bad = np.zeros(len(col), dtype=bool)
    out = []
    for i, v in enumerate(col):
        try:
            out.append(pc.cast(pa.array([v.as_py()], type=col.type), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            bad[i] = True
            out.append(None)
    return pa.array(out, type=target), bad


def _may_hold_nul(col: pa.Array) -> bool:
    """Cheap pre-check on the whole character buffer (a vectorised byte scan); only a column whose
    buffer holds a zero byte is searched value by value."""
    data = col.buffers()[2]
    return data is not None and bool((np.frombuffer(data, dtype=np.uint8) == 0).any())


def check_chunk(chunk: Chunk, table: Table) -> tuple[pa.Table, list[Rejection]]:
    """Vectorised checks; returns the usable rows in the exact contract schema, and the rejections."""
    tbl = chunk.table
    n = tbl.num_rows
    rejected = list(chunk.rejected)
    if n == 0:
        return table.schema.empty_table(), rejected
    reason: list[tuple[str, str] | None] = [None] * n
    failed = np.zeros(n, dtype=bool)

    def mark(mask: np.ndarray, fld: str, why: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask & ~failed):
            reason[i] = (fld, why(i))
        failed[:] |= mask

    columns: dict[str, pa.Array] = {}
    for f in table.fields:
        if f.name not in tbl.column_names:
            if f.required:
                mark(np.ones(n, dtype=bool), f.name, lambda i, f=f: f"missing required column {f.name!r}")
            columns[f.name] = pa.nulls(n, f.type)
            continue
        col = _single_array(tbl.column(f.name))
        if f.required:
            mark(col.is_null().to_numpy(zero_copy_only=False), f.name, lambda i: "missing required field")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            if f.required:
                empty = pc.fill_null(pc.equal(pc.binary_length(col), 0), False).to_numpy(zero_copy_only=False)
                mark(empty, f.name, lambda i: "empty value for a required field")
            if _may_hold_nul(col):
                nul = pc.fill_null(pc.match_substring(col, "\x00"), False).to_numpy(zero_copy_only=False)
                mark(nul, f.name, lambda i: "contains a NUL byte")
            # Bytes bound characters from above, and byte lengths come free from the offsets:
            # count characters only when some value could be over the limit.
            if f.max_len is not None and (pc.max(pc.binary_length(col)).as_py() or 0) > f.max_len:
                lengths = pc.fill_null(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
                mark(
                    lengths > f.max_len,
                    f.name,
                    lambda i, lengths=lengths, f=f: f"too long: {lengths[i]} characters, limit {f.max_len}",
                )
        if pa.types.is_timestamp(f.type) and not pa.types.is_timestamp(col.type):
            if pa.types.is_string(col.type):
                ok = pc.fill_null(pc.match_substring_regex(col, RFC3339), True).to_numpy(zero_copy_only=False)
                mark(~ok, f.name, lambda i, col=col: f"not an RFC 3339 timestamp: {str(col[i].as_py())[:60]!r}")
                col = pc.if_else(pa.array(~ok), pa.nulls(n, pa.string()), col)
            col, bad = _cast_column(col, f.type)
            mark(bad, f.name, lambda i: "unparsable timestamp")
        elif col.type != f.type:
            orig = col
            col, bad = _cast_column(col, f.type)
            mark(
                bad,
                f.name,
                lambda i, orig=orig, f=f: f"wrong type: expected {_type_name(f.type)}, got {orig.type} "
                f"{str(orig[i].as_py())[:60]!r}",
            )
        columns[f.name] = col

    for i in np.flatnonzero(failed):
        fld, why = reason[i]
        rejected.append(Rejection(int(tbl.column(ROW_COL)[i].as_py()), fld, why, chunk.raw(int(i))))
    good = pa.table([columns[f.name] for f in table.fields], schema=pa.schema(
        [pa.field(f.name, f.type) for f in table.fields]))
    if failed.any():
        good = good.filter(pa.array(~failed))
    return good.cast(table.schema), rejected
