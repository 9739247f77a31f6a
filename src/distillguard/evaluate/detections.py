"""Read any detector's ``detections`` (JSONL or Parquet) and check it against the contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.evaluate._io import (
    check_bool,
    check_object,
    check_score,
    check_str,
    iter_json_lines,
    parse_ts,
    type_name,
)
from distillguard.evaluate.errors import EvaluationInputError

__all__ = ["Detection", "load_detections"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One scored account; only the fields the metrics use are kept."""

    account_id: str
    score: float
    flagged: bool
    cluster_id: str | None
    first_flagged_at: datetime | None


def load_detections(path: Path) -> dict[str, Detection]:
    """Detections by account id; ``.parquet`` (file or directory) is read as Parquet, all else as JSONL."""
    if not path.exists():
        raise EvaluationInputError(path, "file not found")
    rows = _parquet_rows(path) if path.suffix == ".parquet" or path.is_dir() else iter_json_lines(path)
    out: dict[str, Detection] = {}
    for line, row in rows:
        det = _detection(path, line, row)
        if det.account_id in out:
            raise EvaluationInputError(
                path, f"duplicate account {det.account_id!r}", line=line, field="account_id"
            )
        out[det.account_id] = det
    return out


def _detection(path: Path, line: int, row: Any) -> Detection:
    row = check_object(path, line, row, ("account_id", "score", "flagged"))
    reasons = row.get("reasons")
    if reasons is not None and (
        not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)
    ):
        raise EvaluationInputError(path, "expected a list of strings", line=line, field="reasons")
    return Detection(
        account_id=check_str(path, line, "account_id", row["account_id"]) or "",
        score=check_score(path, line, "score", row["score"]),
        flagged=check_bool(path, line, "flagged", row["flagged"]),
        cluster_id=_cluster(path, line, row.get("cluster_id")),
        first_flagged_at=parse_ts(path, line, "first_flagged_at", row.get("first_flagged_at")),
    )


def _cluster(path: Path, line: int, value: Any) -> str | None:
    # Some detectors number their clusters; an integer id is as good as a string one.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise EvaluationInputError(
        path, f"expected a string or null, got {type_name(value)}", line=line, field="cluster_id"
    )


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(1-based row, dict)``; rows are numbered across the files of a directory in name order."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise EvaluationInputError(path, f"not readable as Parquet ({exc})") from None
    for name in ("account_id", "score", "flagged"):
        if name not in table.column_names:
            raise EvaluationInputError(path, "missing column (required)", field=name)
    keep = [
        c
        for c in ("account_id", "score", "flagged", "cluster_id", "first_flagged_at", "reasons")
        if c in table.column_names
    ]
    yield from enumerate(table.select(keep).to_pylist(), 1)
