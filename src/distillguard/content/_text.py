"""Vectorised text plumbing shared by every content signal: normalise, tokenise, hash.

Everything runs as Arrow compute kernels (C++, one pass per batch) plus NumPy on the flattened
tokens; Python touches only each *distinct* token once (its 64-bit hash, cached across batches).
CJK scripts have no spaces, so each Han/kana character becomes its own token (bigrams of them then
act as character bigrams).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "HEAD_CHARS", "TAIL_CHARS", "Tokens", "clip", "hash_strings", "interleave", "mix64", "subtokens", "take_rows",
    "tokenize",
]

#: Only the head and tail of a long text are analysed: instructions, role preambles and coercion
#: demands sit at the start or the end of a prompt; the middle is the (varying) task content.
HEAD_CHARS = 1500
TAIL_CHARS = 500

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_CACHE: dict[str, int] = {}
_CACHE_MAX = 2_000_000


def clip(arr: pa.Array, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> pa.Array:
    """Keep the first ``head`` and last ``tail`` characters of each string (all of a short one)."""
    arr = pc.fill_null(arr, "")
    n = pc.utf8_length(arr)
    long = pc.greater(n, head + tail)
    if not pc.any(long).as_py():
        return arr
    # utf8_slice_codeunits takes no per-row start, so the tail is the reversed head of the reverse.
    tails = pc.utf8_reverse(pc.utf8_slice_codeunits(pc.utf8_reverse(arr), 0, tail))
    heads = pc.utf8_slice_codeunits(arr, 0, head)
    joined = pc.binary_join_element_wise(heads, tails, " \n ")
    return pc.if_else(long, joined, arr)


def hash_strings(values: list[str]) -> np.ndarray:
    """Stable signed 64-bit hashes (BLAKE2b) of strings; Python's ``hash`` is salted per process."""
    out = np.empty(len(values), dtype=np.int64)
    cache = _CACHE
    for i, s in enumerate(values):
        h = cache.get(s)
        if h is None:
            h = int.from_bytes(hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                               "little", signed=True)
            if len(cache) < _CACHE_MAX:
                cache[s] = h
        out[i] = h
    return out


#: Row-wise content functions compute each distinct input once per batch and gather, when the batch has
#: at least this many rows ...
DEDUP_MIN_ROWS = 256
#: ... and at most this share of them are distinct (otherwise the gather costs more than it saves).
DEDUP_MAX_SHARE = 0.8


def mix64(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Combine two uint64 hash arrays into one (order-sensitive, splitmix-style finaliser)."""
    a = np.asarray(a, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = a * np.uint64(0x9E3779B97F4A7C15)
        x += np.asarray(b, dtype=np.uint64)
        t = x >> np.uint64(30)
        x ^= t
        x *= np.uint64(0xBF58476D1CE4E5B9)
        np.right_shift(x, np.uint64(27), out=t)
        x ^= t
        x *= np.uint64(0x94D049BB133111EB)
        np.right_shift(x, np.uint64(31), out=t)
        x ^= t
    return x


class Tokens:
    """Tokens of a batch of texts, flattened: ``hashes[offsets[i]:offsets[i+1]]`` are row i's."""

    __slots__ = ("_row", "hashes", "offsets")

    def __init__(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        self.hashes = hashes  # uint64, one per token
        self.offsets = offsets  # int64, len rows + 1
        self._row: np.ndarray | None = None

    @property
    def row(self) -> np.ndarray:
        """Row index of every token (built on first use; the hot paths need only ``offsets``)."""
        if self._row is None:
            self._row = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        return self._row

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


_SUB = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\d+|[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def subtokens(raw: str) -> list[str]:
    """Normalise one whitespace-delimited chunk: lower-case, digits to ``0``, punctuation dropped,
    each CJK character its own token."""
    return ["0" if t[0].isdigit() else t for t in _SUB.findall(raw.lower())]


_SUBCACHE: dict[str, np.ndarray] = {}


def _sub_hashes(raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct raw chunk, the hashes of its sub-tokens: (flat hashes, counts)."""
    parts: list[np.ndarray] = []
    counts = np.empty(len(raw), dtype=np.int64)
    cache = _SUBCACHE
    for i, r in enumerate(raw):
        h = cache.get(r)
        if h is None:
            h = hash_strings(subtokens(r)).view(np.uint64)
            if len(cache) < _CACHE_MAX:
                cache[r] = h
        parts.append(h)
        counts[i] = len(h)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return flat, counts


def _local_index(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without the Python loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


def tokenize(arr: pa.Array) -> Tokens:
    """Hash every normalised token of every string in ``arr`` (nulls are empty).

    Arrow splits on whitespace and dictionary-encodes the chunks; only distinct chunks reach
    Python (cached across batches), so the cost per batch is a few C++ passes plus NumPy gathers.
    Most chunks are exactly one sub-token: those are a single gather; only the (few) occurrences of
    chunks with several sub-tokens go through the general repeat/scatter path.
    """
    lists = pc.ascii_split_whitespace(pc.fill_null(arr, ""))
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    flat = lists.flatten()
    if len(flat) == 0:
        return Tokens(np.zeros(0, np.uint64), offsets)
    enc = pc.dictionary_encode(flat)
    codes = np.asarray(enc.indices)
    sub, counts = _sub_hashes(enc.dictionary.to_pylist())
    if (counts == 1).all():
        return Tokens(sub[codes], offsets)
    starts = np.cumsum(counts) - counts
    occ = counts[codes]  # sub-tokens per chunk occurrence
    csum = np.empty(len(occ) + 1, dtype=np.int64)
    csum[0] = 0
    np.cumsum(occ, out=csum[1:])
    total = int(csum[-1])
    # Every occurrence writes its first sub-token at its start (one pad slot each side absorbs the
    # writes of chunks without sub-tokens, which later occurrences at the same start overwrite) ...
    hashes = np.empty(total + 1, dtype=np.uint64)
    first = starts[codes]
    hashes[csum[:-1]] = np.append(sub, np.uint64(0))[first]
    # ... then chunks with several sub-tokens (few) fill in the rest.
    multi = np.flatnonzero(occ > 1)
    if multi.size:
        m_occ = occ[multi] - 1
        local = _local_index(m_occ) + 1
        hashes[np.repeat(csum[multi], m_occ) + local] = sub[np.repeat(first[multi], m_occ) + local]
    return Tokens(hashes[:total], csum[offsets])


def interleave(first: Tokens, second: Tokens) -> Tokens:
    """Row-wise concatenation: row i's tokens are ``first``'s row i then ``second``'s row i."""
    if len(first.hashes) == 0 and len(first.offsets) == len(second.offsets):
        return second
    la, lb = first.lengths, second.lengths
    off = np.concatenate([[0], np.cumsum(la + lb)])
    out = np.empty(int(off[-1]), dtype=np.uint64)
    # second's token j of row r lands at j + (first's tokens in rows <= r)
    out[np.arange(len(second.hashes)) + np.repeat(first.offsets[1:], lb)] = second.hashes
    out[np.arange(len(first.hashes)) + np.repeat(second.offsets[:-1], la)] = first.hashes
    return Tokens(out, off)


def take_rows(tok: Tokens, idx: np.ndarray) -> Tokens:
    """Rows ``idx`` of ``tok`` (a gather; used to expand the tokens of distinct values to rows)."""
    lens = tok.lengths[idx]
    off = np.concatenate([[0], np.cumsum(lens)])
    if off[-1] == 0:
        return Tokens(np.zeros(0, np.uint64), off)
    src = np.repeat(tok.offsets[:-1][idx], lens) + _local_index(lens)
    return Tokens(tok.hashes[src], off)
