"""Secret keys for provenance: watermark keys, evidence-log keys and canary keys.

A key is a public ``key_id`` plus a secret. The id is what reports, the evidence log and detection
results name; the secret never leaves the key file. Key files are JSON ``{"key_id", "secret_hex"}``
(written 0600 by :func:`save_key`); a watermark key file may also carry ``params`` (see
:class:`~distillguard.provenance.watermark.WatermarkParams`).

>>> k = WatermarkKey("wm-2026-01", bytes(32))
>>> k.key_id, len(k.secret)
('wm-2026-01', 32)
>>> WatermarkKey.from_dict(k.to_dict()) == k
True
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EvidenceKey", "Key", "WatermarkKey", "generate_key", "load_key", "save_key"]

#: Secrets shorter than this are refused: a short secret makes the green lists guessable.
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Key:
    """A key id and its secret bytes (``repr`` hides the secret, so logs never print it)."""

    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not self.key_id or not isinstance(self.key_id, str):
            raise ValueError("key_id must be a non-empty string")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"secret of key {self.key_id!r} must be at least {MIN_SECRET_BYTES} bytes")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r}, secret=<{len(self.secret)} bytes>)"

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "secret_hex": self.secret.hex()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Key:
        try:
            return cls(str(d["key_id"]), bytes.fromhex(str(d["secret_hex"])))
        except KeyError as e:
            raise ValueError(f"key file needs 'key_id' and 'secret_hex' (missing {e.args[0]!r})") from e


class WatermarkKey(Key):
    """Seeds the green lists of the text watermark."""


class EvidenceKey(Key):
    """Signs (HMAC) the records of the evidence log."""


def generate_key(key_id: str, cls: type[Key] = Key, nbytes: int = 32) -> Key:
    """A fresh random key from the OS CSPRNG."""
    return cls(key_id, secrets.token_bytes(nbytes))


def save_key(key: Key, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``key`` as JSON readable by its owner only (0600); refuses to overwrite a key file."""
    path = Path(path)
    data = key.to_dict() | (extra or {})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return path


def load_key(path: Path | str, cls: type[Key] = Key) -> Key:
    """Read a key file written by :func:`save_key` (or by hand: ``{"key_id", "secret_hex"}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise ValueError(f"{path}: not a JSON key file ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a key file is a JSON object with key_id and secret_hex")
    return cls.from_dict(data)
