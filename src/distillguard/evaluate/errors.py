"""The one error the harness raises for bad input, so callers can tell it from a bug."""

from __future__ import annotations

from pathlib import Path

__all__ = ["EvaluationInputError"]


class EvaluationInputError(ValueError):
    """An input file breaks the contract; the message names the file, line/row and field.

    The harness scores any detector's output, so a malformed file must fail loudly and point at
    the exact place to fix rather than be skipped (a skipped row silently changes the metrics).
    """

    def __init__(self, path: Path | str, reason: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        what = reason if field is None else f"field {field!r}: {reason}"
        super().__init__(f"{where}: {what}")
