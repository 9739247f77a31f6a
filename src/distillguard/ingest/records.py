"""What a reader hands the validator: one source row, parsed or not, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RawRecord"]


@dataclass(slots=True)
class RawRecord:
    """One row read from a source, before validation.

    ``value`` uses the contract's field names with JSON-native values (timestamps as RFC 3339
    strings); it is ``None`` when the row could not be parsed at all, and then ``error`` says
    why as ``(field or None, reason)``. ``raw`` is what the quarantine keeps.
    """

    row: int
    raw: str
    value: dict[str, Any] | None
    error: tuple[str | None, str] | None = None
