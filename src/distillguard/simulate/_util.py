"""Vectorised helpers: seeded child generators, random-looking ids, IPv4 text, time units.

Every random draw in the simulator comes from a generator derived here from (seed, keys...), so a
chunk's output depends only on its own keys: days and populations can be generated in any order
and still give byte-identical files.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DAY_US", "HOUR_US", "child_rng", "hex_ids", "ip_strings", "to_us", "from_us", "rfc3339"]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def child_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (order-independent chunks)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def hex_ids(prefix: str, rng: np.random.Generator, n: int, nbytes: int = 10) -> pa.StringArray:
    """``n`` ids ``prefix + 2*nbytes hex digits`` built straight into Arrow buffers (no Python loop).

    Every population uses this one function with the same prefixes, so id formats cannot leak labels.
    """
    raw = np.frombuffer(rng.bytes(n * nbytes), dtype=np.uint8).reshape(n, nbytes)
    p = np.frombuffer(prefix.encode(), dtype=np.uint8)
    lp = len(p)
    width = lp + 2 * nbytes
    out = np.empty((n, width), dtype=np.uint8)
    out[:, :lp] = p
    out[:, lp::2] = _HEX[raw >> 4]
    out[:, lp + 1 :: 2] = _HEX[raw & 15]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def ip_strings(ips: np.ndarray) -> pa.Array:
    """Dotted-quad text of uint32 IPv4 addresses, vectorised through Arrow compute."""
    ips = ips.astype(np.uint32, copy=False)
    octs = [pc.cast(pa.array(((ips >> s) & 255).astype(np.uint8)), pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octs, ".")


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware (or naive = UTC) datetime."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def rfc3339(us: int) -> str:
    """RFC 3339 UTC text with microseconds, as truth.jsonl carries it."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
