"""Line-level readers and value checks shared by the truth, detections and decisions loaders."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from distillguard.evaluate.errors import EvaluationInputError

__all__ = ["check_bool", "check_score", "check_str", "iter_json_lines", "open_text", "parse_ts", "type_name"]


def open_text(path: Path) -> IO[str]:
    """Open a JSONL file, transparently gunzipping ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(1-based line, parsed value)``; blank lines are skipped, bad JSON raises with its line."""
    if not path.exists():
        raise EvaluationInputError(path, "file not found")
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                # orjson rejects NaN/Infinity as bad JSON; the stdlib accepts them, so a value check
                # can then say "score is NaN" instead of a vaguer "bad JSON".
                try:
                    yield lineno, json.loads(line)
                except ValueError:
                    raise EvaluationInputError(path, f"bad JSON ({exc})", line=lineno) from None


def type_name(value: Any) -> str:
    """JSON-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def check_object(path: Path, line: int, row: Any, required: tuple[str, ...]) -> dict[str, Any]:
    """The row as a dict holding every ``required`` key, or an error naming file, line and field."""
    if not isinstance(row, dict):
        raise EvaluationInputError(path, f"expected a JSON object, got {type_name(row)}", line=line)
    for name in required:
        if name not in row:
            raise EvaluationInputError(path, "missing (required)", line=line, field=name)
    return row


def check_str(path: Path, line: int, field: str, value: Any, *, nullable: bool = False) -> str | None:
    """A non-empty string (or null when ``nullable``)."""
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise EvaluationInputError(
            path, f"expected a non-empty string, got {type_name(value)}", line=line, field=field
        )
    return value


def check_bool(path: Path, line: int, field: str, value: Any) -> bool:
    """A real boolean: 0/1 or "true" are rejected, they usually mean a column got mixed up."""
    if not isinstance(value, bool):
        raise EvaluationInputError(
            path, f"expected true or false, got {type_name(value)}", line=line, field=field
        )
    return value


def check_score(path: Path, line: int, field: str, value: Any) -> float:
    """A finite number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationInputError(
            path, f"expected a number in [0, 1], got {type_name(value)}", line=line, field=field
        )
    score = float(value)
    if math.isnan(score):
        raise EvaluationInputError(path, "is NaN, expected a number in [0, 1]", line=line, field=field)
    if not 0.0 <= score <= 1.0:
        raise EvaluationInputError(path, f"{score!r} is outside [0, 1]", line=line, field=field)
    return score


def parse_ts(
    path: Path, line: int | None, field: str, value: Any, *, nullable: bool = True
) -> datetime | None:
    """An RFC 3339 timestamp with an offset, returned in UTC; naive times are refused (ambiguous)."""
    if value is None and nullable:
        return None
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise EvaluationInputError(
                path, f"{value!r} is not an RFC 3339 timestamp", line=line, field=field
            ) from None
    else:
        raise EvaluationInputError(
            path, f"expected an RFC 3339 timestamp string, got {type_name(value)}", line=line, field=field
        )
    if ts.tzinfo is None:
        raise EvaluationInputError(
            path, f"{value!r} has no UTC offset (RFC 3339 needs 'Z' or +hh:mm)", line=line, field=field
        )
    return ts.astimezone(UTC)
