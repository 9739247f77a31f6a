"""Readers: find the traffic-log files under a path and stream them as typed chunks.

JSON Lines (plain or gzip) go through Arrow's multi-threaded JSON parser block by block; a block
the fast parser refuses is split in halves until the bad lines are isolated, and those are read
one by one so the quarantine can name the row and field. Parquet is read in record batches.
Nothing reads a whole file into memory.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from distillguard.contract import ACCOUNTS, EXCHANGES, Table
from distillguard.ingest.records import RawRecord
from distillguard.ingest.validate import RAW_MAX, ROW_COL, Chunk, loose_schema, records_to_chunk

__all__ = ["Source", "SourceError", "find_sources", "read_source", "MAX_LINE_BYTES"]

#: A JSON line longer than this is quarantined unread ("huge field").
MAX_LINE_BYTES = 8 * 1024 * 1024
_READ_BYTES = 16 * 1024 * 1024
_BLOCK_BYTES = 128 * 1024 * 1024  # a batch ends at batch_rows lines or this many bytes (bounds memory)
_SLOW_BELOW = 256  # lines: below this a refused block is read line by line

TABLES = {"accounts": ACCOUNTS, "exchanges": EXCHANGES}
_BINARY_MAGIC = {b"PK\x03\x04": "zip", b"(\xb5/\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


class SourceError(Exception):
    """A whole file is unusable (not the format it claims, unreadable); it is quarantined as one entry."""

    def __init__(self, path: Path, reason: str, raw: str = "") -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.raw = path, reason, raw


@dataclass(frozen=True)
class Source:
    """One input file (or Parquet directory) and the table it feeds."""

    path: Path
    table: Table
    format: str  # "jsonl", "parquet" or "otel"

    def size_hint(self) -> int:
        """Work units for a progress bar: rows for Parquet, bytes otherwise."""
        if self.format == "parquet":
            try:
                return sum(pq.ParquetFile(p).metadata.num_rows for p in _parquet_files(self.path))
            except Exception:
                return 0
        return self.path.stat().st_size


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".otlp.json", ".otlp.jsonl", ".otlp.json.gz", ".otlp.jsonl.gz")):
        return "otel"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")):
        return "jsonl"
    if name.endswith(".parquet") or (path.is_dir() and any(path.glob("*.parquet"))):
        return "parquet"
    return None


def _table_of(path: Path) -> Table | None:
    stem = path.name.split(".")[0].lower()
    return TABLES.get(stem)


def find_sources(paths: list[Path]) -> list[Source]:
    """Resolve the given paths into sources, accounts first so exchanges can be joined to them.

    A path may be a traffic-log directory (holding ``accounts.*`` and ``exchanges.*``), one such
    file, a Parquet directory named ``accounts``/``exchanges``, or an OpenTelemetry export
    (``*.otlp.json[l][.gz]``, feeding ``exchanges``).
    """
    found: list[Source] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        fmt = _format_of(path)
        if path.is_file() or fmt == "parquet" and _table_of(path):
            if fmt is None:
                raise ValueError(f"{path}: unknown format (expected .jsonl, .jsonl.gz, .parquet or .otlp.json)")
            table = EXCHANGES if fmt == "otel" else _table_of(path)
            if table is None:
                raise ValueError(f"{path}: cannot tell the table from the name (expected accounts.* or exchanges.*)")
            found.append(Source(path, table, fmt))
            continue
        inner = [p for p in sorted(path.iterdir()) if _table_of(p) or _format_of(p) == "otel"]
        if not inner:
            raise ValueError(f"{path}: no accounts.* or exchanges.* files in this directory")
        found.extend(find_sources(inner))
    found.sort(key=lambda s: 0 if s.table is ACCOUNTS else 1)
    return found


def read_source(source: Source, batch_rows: int, on_progress: Callable[[int], None] | None = None) -> Iterator[Chunk]:
    """Stream a source as chunks of at most about ``batch_rows`` rows."""
    progress = on_progress or (lambda n: None)
    if source.format == "parquet":
        yield from _read_parquet(source, batch_rows, progress)
    elif source.format == "otel":
        yield from _read_otel(source, batch_rows, progress)
    else:
        yield from _read_jsonl(source, batch_rows, progress)


# -- Parquet ---------------------------------------------------------------------------------------


def _parquet_files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.parquet")) if path.is_dir() else [path]


def _read_parquet(source: Source, batch_rows: int, progress: Callable[[int], None]) -> Iterator[Chunk]:
    for path in _parquet_files(source.path):
        try:
            # Unbuffered pre-reads off and a small read buffer: pages stream in, so memory follows
            # the batch size rather than the writer's row-group size.
            pf = pq.ParquetFile(path, buffer_size=8 * 1024 * 1024, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as e:
            head = path.read_bytes()[:200] if path.is_file() else b""
            raise SourceError(path, f"not a Parquet file ({e})", head.decode("utf-8", "replace")) from e
        present = [n for n in source.table.names if n in pf.schema_arrow.names]
        meta = pf.metadata
        row_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / max(meta.num_rows, 1)
        rows = max(1_000, min(batch_rows, int(_BLOCK_BYTES / max(row_bytes, 1))))
        offset = 0
        for batch in pf.iter_batches(batch_size=rows, columns=present):
            tbl = pa.Table.from_batches([batch])
            rows = pa.array(range(offset + 1, offset + 1 + tbl.num_rows), pa.int64())
            tbl = tbl.append_column(ROW_COL, rows)
            offset += tbl.num_rows
            progress(tbl.num_rows)
            yield Chunk(tbl, _parquet_raw(tbl))


def _parquet_raw(tbl: pa.Table) -> Callable[[int], str]:
    def raw(i: int) -> str:
        row = tbl.slice(i, 1).to_pylist()[0]
        row.pop(ROW_COL, None)
        return orjson.dumps(row, default=str).decode()[:RAW_MAX]

    return raw


# -- JSON Lines ------------------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """Wraps a file to report how many compressed bytes were consumed, for the progress bar."""

    def __init__(self, f: io.BufferedReader, progress: Callable[[int], None]) -> None:
        self._f, self._progress = f, progress

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = self._f.readinto(b)
        self._progress(n or 0)
        return n or 0


def _open_text_stream(path: Path, progress: Callable[[int], None]) -> io.BufferedIOBase:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the returned stream
    head = raw.read(4096)
    raw.seek(0)
    counted = io.BufferedReader(_CountingReader(raw, progress))
    if path.name.lower().endswith(".gz"):
        if not head.startswith(b"\x1f\x8b"):
            raw.close()
            raise SourceError(path, "named .gz but is not gzip-compressed", head[:200].decode("utf-8", "replace"))
        return gzip.GzipFile(fileobj=counted)  # type: ignore[return-value]
    if head.startswith(b"PAR1"):
        raw.close()
        raise SourceError(path, "named JSON Lines but is a Parquet file")
    if head.startswith(b"\x1f\x8b"):
        raw.close()
        raise SourceError(path, "named JSON Lines but is gzip-compressed (name it .jsonl.gz)")
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raw.close()
            raise SourceError(path, f"named JSON Lines but is a {what} file")
    # Anything else is read line by line: a line that is not JSON is quarantined and counted.
    return counted


def _iter_line_blocks(
    path: Path, batch_rows: int, progress: Callable[[int], None]
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (number of the first line, lines) blocks of ``batch_rows`` lines (or ~64 MiB)."""
    stream = _open_text_stream(path, progress)
    lineno = 1
    rest = b""
    block: list[bytes] = []
    size = 0
    try:
        with stream:
            while True:
                try:
                    data = stream.read(_READ_BYTES)
                except (OSError, EOFError, zlib.error) as e:
                    raise SourceError(path, f"unreadable after line {lineno - 1 + len(block)}: {e}") from e
                if not data:
                    break
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                while lines:
                    take = batch_rows - len(block)
                    block.extend(lines[:take])
                    size += sum(map(len, lines[:take]))
                    del lines[:take]
                    if len(block) >= batch_rows or size >= _BLOCK_BYTES:
                        yield lineno, block
                        lineno += len(block)
                        block, size = [], 0
            if rest:
                block.append(rest)
            if block:
                yield lineno, block
    finally:
        stream.close()


def _read_jsonl(source: Source, batch_rows: int, progress: Callable[[int], None]) -> Iterator[Chunk]:
    schema = loose_schema(source.table)
    for first, lines in _iter_line_blocks(source.path, batch_rows, progress):
        numbers = [first + i for i, ln in enumerate(lines) if ln.strip()]
        kept = [ln for ln in lines if ln.strip()]
        if kept:
            yield _parse_lines(numbers, kept, schema, source.table)


def _parse_lines(numbers: list[int], lines: list[bytes], schema: pa.Schema, table: Table) -> Chunk:
    """Parse a block with Arrow's JSON reader; bisect around lines it refuses."""
    if len(lines) >= _SLOW_BELOW and max(map(len, lines)) <= MAX_LINE_BYTES:
        buf = b"\n".join(lines)
        try:
            tbl = pj.read_json(
                io.BytesIO(buf),
                read_options=pj.ReadOptions(block_size=len(buf) + 1, use_threads=True),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, pa.ArrowNotImplementedError):
            tbl = None
        if tbl is not None and tbl.num_rows == len(lines):
            tbl = tbl.select(schema.names).append_column(ROW_COL, pa.array(numbers, pa.int64()))
            return Chunk(tbl, lambda i: lines[i][:RAW_MAX].decode("utf-8", "replace"))
        mid = len(lines) // 2
        left = _parse_lines(numbers[:mid], lines[:mid], schema, table)
        right = _parse_lines(numbers[mid:], lines[mid:], schema, table)
        return _concat(left, right)
    return records_to_chunk((_parse_line(n, ln) for n, ln in zip(numbers, lines, strict=True)), table)


def _concat(a: Chunk, b: Chunk) -> Chunk:
    na = a.table.num_rows
    tbl = pa.concat_tables([a.table, b.table.cast(a.table.schema)])
    return Chunk(tbl, lambda i: a.raw(i) if i < na else b.raw(i - na), a.rejected + b.rejected)


def _parse_line(number: int, line: bytes) -> RawRecord:
    """Parse one JSON line, naming the field when its text is not valid UTF-8."""
    shown = line[:RAW_MAX].decode("utf-8", "replace")
    if len(line) > MAX_LINE_BYTES:
        return RawRecord(number, shown, None, (None, f"line too long: {len(line)} bytes, limit {MAX_LINE_BYTES}"))
    try:
        return RawRecord(number, shown, orjson.loads(line))
    except orjson.JSONDecodeError as e:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return RawRecord(number, shown, None, (_field_with_bad_utf8(line), "invalid UTF-8"))
        msg = str(e).split(": line 1 column")[0]  # the position is within this one line: drop it
        return RawRecord(number, shown, None, (None, f"not valid JSON: {msg}"))


def _field_with_bad_utf8(line: bytes) -> str | None:
    import json

    try:
        obj = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any("\udc80" <= c <= "\udcff" for c in f"{k}{v}"):
                return str(k)
    return None


# -- OpenTelemetry GenAI spans ---------------------------------------------------------------------


def _read_otel(source: Source, batch_rows: int, progress: Callable[[int], None]) -> Iterator[Chunk]:
    from distillguard.ingest.otel import iter_otlp_exchanges

    progress(source.path.stat().st_size)
    pending: list[RawRecord] = []
    for rec in iter_otlp_exchanges(source.path):
        pending.append(rec)
        if len(pending) >= batch_rows:
            yield records_to_chunk(pending, source.table)
            pending = []
    if pending:
        yield records_to_chunk(pending, source.table)
