"""Keyed green-list text watermark (KGW family): numpy core over token ids and logits.

Scheme. For the token at position *t*, the preceding ``context_width`` token ids (the *context*)
and the secret key give a 64-bit seed ``s = HMAC-SHA256(secret, "distillguard/kgw/v1" | ctx)[:8]``.
A token ``v`` is *green* in that context when ``SplitMix64(s + (v+1)·φ) < gamma·2^64``: each
(context, token) pair is green with probability ``gamma``, independently of every other pair, for
anyone without the secret. Generation adds ``delta`` to the logits of the green tokens (a soft bias:
low-entropy steps barely change, high-entropy steps tilt towards green). Membership of one
(context, token) pair costs one HMAC and a few integer operations, so detection never builds a
vocabulary permutation.

Detection (:func:`detect_ids`, :func:`detect_text`, :func:`detect_many`) counts green tokens among the
*unique* (context, token) pairs of a text and reports the exact one-sided binomial tail
``P[Binomial(n, gamma) >= green]``. Scoring each distinct pair once is what keeps the p-value valid:
a phrase repeated 100 times is one observation, not 100 (without de-duplication the test's level is
wrong, see ``tests/test_provenance_watermark.py``). With several keys in the ring, the smallest
p-value is multiplied by the number of keys tested (Bonferroni), so the reported p-value stays valid
whichever key happens to fit best.

>>> ring = KeyRing([WatermarkKey("k1", bytes(range(32)))], params=WatermarkParams(context_width=1))
>>> rng = np.random.default_rng(0)
>>> ids = rng.integers(0, 500, size=300)                 # never watermarked
>>> d = detect_ids(ids, ring)
>>> d.tokens_scored <= 299, d.p_value > 1e-3
(True, True)
>>> logits = np.zeros(500)
>>> out = [int(rng.integers(500))]
>>> for _ in range(299):                                 # greedy on flat logits + watermark bias
...     z = watermark_logits(logits, np.array(out), ring.active_key, ring.params)
...     out.append(int(np.argmax(z + rng.gumbel(size=500))))
>>> detect_ids(out, ring).p_value < 1e-20
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.provenance.keys import WatermarkKey

__all__ = [
    "Detection",
    "DetectionBatch",
    "KeyRing",
    "UnknownKeyError",
    "WatermarkKey",
    "WatermarkParams",
    "Watermarker",
    "binomial_p",
    "context_seeds",
    "detect_ids",
    "detect_many",
    "detect_pairs",
    "detect_text",
    "encode",
    "green_mask",
    "is_green",
    "tokenizer_fingerprint",
    "unique_pairs",
    "watermark_logits",
    "with_tokenizer",
]

_DOMAIN = b"distillguard/kgw/v1"
_PHI = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class WatermarkParams:
    """Parameters shared by generation and detection (both sides must use the same ones).

    - ``context_width``: preceding tokens that seed the green list (h). 1-2 survive local edits best
      and make a student inherit the mark more easily; wider contexts are harder to reverse-engineer
      from outputs but every substituted token breaks ``context_width + 1`` scored pairs.
    - ``gamma``: expected share of the vocabulary that is green in a context (null green rate).
    - ``delta``: logit bias added to green tokens at generation; 2 is a small quality cost, 4+ is
      visible in perplexity.
    - ``vocab_size``: when set, token ids outside ``[0, vocab_size)`` are refused (wrong tokenizer).
    - ``tokenizer_fingerprint``: when set, :func:`detect_text` refuses a different tokenizer.
    """

    context_width: int = 2
    gamma: float = 0.25
    delta: float = 2.0
    vocab_size: int | None = None
    tokenizer_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.context_width < 1:
            raise ValueError("context_width must be >= 1")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must be in (0, 1)")
        if self.delta < 0:
            raise ValueError("delta must be >= 0")


class UnknownKeyError(KeyError):
    """A key id that the key ring does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown key id"


class KeyRing:
    """Watermark keys detectable at once; the *active* one marks new outputs.

    Rotation: :meth:`rotate` adds a new key and makes it active; old keys stay in the ring so text
    served under them is still detected. Detection over ``k`` keys pays a factor ``k`` in p-value
    (Bonferroni), so retire keys whose outputs no longer matter.
    """

    def __init__(self, keys: Iterable[WatermarkKey], active: str | None = None,
                 params: WatermarkParams | None = None) -> None:
        self.keys: dict[str, WatermarkKey] = {}
        for k in keys:
            if k.key_id in self.keys:
                raise ValueError(f"duplicate key id {k.key_id!r} in key ring")
            self.keys[k.key_id] = k
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        self.active = active if active is not None else list(self.keys)[-1]
        self.params = params or WatermarkParams()
        self.get(self.active)

    def __repr__(self) -> str:
        return f"KeyRing(keys={list(self.keys)}, active={self.active!r}, params={self.params})"

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def active_key(self) -> WatermarkKey:
        return self.keys[self.active]

    def get(self, key_id: str) -> WatermarkKey:
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownKeyError(f"unknown watermark key id {key_id!r}; the ring holds {sorted(self.keys)}") from None

    def rotate(self, new_key: WatermarkKey) -> KeyRing:
        """A ring with ``new_key`` added and active; the old keys stay detectable."""
        return KeyRing([*self.keys.values(), new_key], active=new_key.key_id, params=self.params)

    def select(self, key_ids: Sequence[str] | None) -> list[WatermarkKey]:
        return list(self.keys.values()) if key_ids is None else [self.get(k) for k in key_ids]

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active, "params": asdict(self.params),
                "keys": [k.to_dict() for k in self.keys.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyRing:
        """A ring file (``{"keys": [...], "active", "params"}``) or a single key file (``{key_id, secret_hex}``)."""
        params = WatermarkParams(**d["params"]) if d.get("params") else None
        if "keys" in d:
            keys = [WatermarkKey.from_dict(k) for k in d["keys"]]
            return cls(keys, active=d.get("active"), params=params)
        return cls([WatermarkKey.from_dict(d)], params=params)

    @classmethod
    def load(cls, path: Path | str) -> KeyRing:
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as e:
            raise ValueError(f"{path}: not a JSON key file ({e})") from e
        return cls.from_dict(data)

    def save(self, path: Path | str) -> Path:
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        return Path(path)


def _as_ring(keys: KeyRing | WatermarkKey, params: WatermarkParams | None) -> KeyRing:
    if isinstance(keys, KeyRing):
        return keys if params is None else KeyRing(keys.keys.values(), keys.active, params)
    return KeyRing([keys], params=params)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (uint64 arrays wrap on overflow, as intended)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _threshold(gamma: float) -> np.uint64:
    return np.uint64(min(int(gamma * 2.0**64), 2**64 - 1))


def context_seeds(key: WatermarkKey, contexts: np.ndarray) -> np.ndarray:
    """64-bit seed per context row: the first 8 bytes of HMAC-SHA256(secret, domain | ids as uint32 LE)."""
    ctx = np.ascontiguousarray(np.atleast_2d(contexts), dtype="<u4")
    step = 4 * ctx.shape[1]
    buf = ctx.tobytes()
    secret, dig = key.secret, hmac.digest
    out = b"".join([dig(secret, _DOMAIN + buf[i:i + step], "sha256")[:8] for i in range(0, len(buf), step)])
    return np.frombuffer(out, dtype="<u8").astype(np.uint64)


def _token_u64(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return _mix64(seeds + (tokens.astype(np.uint64) + np.uint64(1)) * _PHI)


def is_green(key: WatermarkKey, contexts: np.ndarray, tokens: np.ndarray, gamma: float) -> np.ndarray:
    """Green flag for each (context row, token) pair; no vocabulary-sized work."""
    seeds = context_seeds(key, contexts)
    return _token_u64(seeds, np.asarray(tokens).reshape(-1)) < _threshold(gamma)


def green_mask(key: WatermarkKey, contexts: np.ndarray, vocab_size: int, gamma: float) -> np.ndarray:
    """Boolean ``(rows, vocab_size)`` green list for each context row (used at generation)."""
    seeds = context_seeds(key, contexts)
    v = (np.arange(vocab_size, dtype=np.uint64) + np.uint64(1)) * _PHI
    return _mix64(seeds[:, None] + v[None, :]) < _threshold(gamma)


def watermark_logits(logits: np.ndarray, input_ids: np.ndarray, key: WatermarkKey,
                     params: WatermarkParams) -> np.ndarray:
    """``logits + delta`` on the green tokens of the next position; ``logits`` is ``(V,)`` or ``(B, V)``,
    ``input_ids`` the ids so far, ``(L,)`` or ``(B, L)``. Rows with fewer than ``context_width`` ids
    are returned unchanged (no context to seed from, and detection skips those positions too)."""
    logits = np.asarray(logits)
    ids = np.asarray(input_ids)
    one = logits.ndim == 1
    lg = np.atleast_2d(logits).astype(np.float64, copy=True)
    ids2 = np.atleast_2d(ids)
    w = params.context_width
    if ids2.shape[1] >= w:
        mask = green_mask(key, ids2[:, -w:], lg.shape[1], params.gamma)
        lg += params.delta * mask
    return lg[0] if one else lg


class Watermarker:
    """Callable ``(input_ids, logits) -> logits`` that marks with the ring's active key.

    Framework-neutral: plug it in wherever a sampler sees the logits of the next token.
    """

    def __init__(self, keys: KeyRing | WatermarkKey, params: WatermarkParams | None = None) -> None:
        self.ring = _as_ring(keys, params)

    @property
    def key_id(self) -> str:
        return self.ring.active

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return watermark_logits(logits, input_ids, self.ring.active_key, self.ring.params)


# ---------------------------------------------------------------------------------------------- detection

def _void_rows(a: np.ndarray) -> np.ndarray:
    """One comparable scalar per row, for ``np.unique``/``np.isin`` on rows: the columns packed into an
    int64 when their bit widths fit (several times faster to sort), else the row's raw bytes."""
    a = np.ascontiguousarray(a)
    if a.size and a.dtype.kind in "iu" and a.min() >= 0:
        bits = [max(1, int(c).bit_length()) for c in a.max(axis=0)]
        if sum(bits) <= 63:
            out = np.zeros(len(a), dtype=np.int64)
            for j, b in enumerate(bits):
                out = (out << b) | a[:, j].astype(np.int64)
            return out
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


def unique_pairs(ids: np.ndarray, context_width: int) -> np.ndarray:
    """The distinct (context..., token) rows of one token sequence, shape ``(n, context_width + 1)``."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size <= context_width:
        return np.empty((0, context_width + 1), dtype=np.int64)
    win = np.lib.stride_tricks.sliding_window_view(ids, context_width + 1)
    _, first = np.unique(_void_rows(win), return_index=True)
    return win[np.sort(first)]


def _check_ids(ids: np.ndarray, params: WatermarkParams, where: str = "") -> None:
    if ids.size and (ids.min() < 0 or (params.vocab_size is not None and ids.max() >= params.vocab_size)):
        raise ValueError(f"{where}token ids outside [0, {params.vocab_size}): not this generator's tokenizer")


@dataclass(frozen=True)
class Detection:
    """Result of testing one text (or one pooled set of texts) for the watermark.

    ``p_value`` is exact (binomial tail) and Bonferroni-corrected over ``keys_tested``; ``score`` is
    the z-score of the best key, for ranking only.
    """

    key_id: str | None
    score: float
    p_value: float
    tokens_scored: int
    green: int
    tokens_total: int
    keys_tested: int
    gamma: float
    p_per_key: dict[str, float] = field(default_factory=dict)

    @property
    def green_fraction(self) -> float:
        return self.green / self.tokens_scored if self.tokens_scored else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"green_fraction": self.green_fraction}


@dataclass(frozen=True)
class DetectionBatch:
    """Per-text arrays from :func:`detect_many` (vectorised; for large honesty and robustness runs)."""

    key_ids: list[str]
    tokens_total: np.ndarray  # (S,)
    tokens_scored: np.ndarray  # (S,) unique pairs (or all pairs when dedup=False)
    green: np.ndarray  # (S, K)
    p_per_key: np.ndarray  # (S, K) exact binomial tails
    gamma: float

    @property
    def p_value(self) -> np.ndarray:
        """Bonferroni-corrected best p-value per text."""
        return np.minimum(1.0, self.p_per_key.min(axis=1) * len(self.key_ids))

    @property
    def best_key(self) -> np.ndarray:
        return self.p_per_key.argmin(axis=1)

    def __len__(self) -> int:
        return len(self.tokens_total)

    def detection(self, i: int) -> Detection:
        k = int(self.best_key[i])
        n, g = int(self.tokens_scored[i]), int(self.green[i, k])
        return Detection(self.key_ids[k], _z(g, n, self.gamma), float(self.p_value[i]), n, g,
                         int(self.tokens_total[i]), len(self.key_ids), self.gamma,
                         {kid: float(p) for kid, p in zip(self.key_ids, self.p_per_key[i], strict=True)})


def _z(green: int | np.ndarray, n: int | np.ndarray, gamma: float) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (green - gamma * n) / np.sqrt(n * gamma * (1 - gamma))


def binomial_p(green: np.ndarray | int, n: np.ndarray | int, gamma: float) -> Any:
    """Exact one-sided p-value ``P[Binomial(n, gamma) >= green]``."""
    from scipy.stats import binom  # imported here: scipy.stats costs ~0.5 s, the CLI starts without it

    return binom.sf(np.asarray(green) - 1, n, gamma)


def _pair_rows(seqs: Sequence[np.ndarray], w: int) -> tuple[np.ndarray, np.ndarray]:
    """All (seq index, context..., token) rows of many sequences, and each sequence's token count."""
    parts, total = [], np.zeros(len(seqs), dtype=np.int64)
    for i, s in enumerate(seqs):
        total[i] = s.size
        if s.size > w:
            win = np.lib.stride_tricks.sliding_window_view(s, w + 1)
            parts.append(np.column_stack([np.full(len(win), i, dtype=np.int64), win]))
    rows = np.concatenate(parts) if parts else np.empty((0, w + 2), dtype=np.int64)
    return rows, total


def _green_of_rows(keys: Sequence[WatermarkKey], ctx: np.ndarray, tok: np.ndarray, gamma: float) -> np.ndarray:
    """``(rows, K)`` green flags; one HMAC per distinct context per key."""
    out = np.zeros((len(tok), len(keys)), dtype=bool)
    if not len(tok):
        return out
    _, first, inv = np.unique(_void_rows(ctx), return_index=True, return_inverse=True)
    uctx_ids = ctx[first]
    thr = _threshold(gamma)
    for j, key in enumerate(keys):
        seeds = context_seeds(key, uctx_ids)[inv.reshape(-1)]
        out[:, j] = _token_u64(seeds, tok) < thr
    return out


def detect_many(seqs: Iterable[Sequence[int] | np.ndarray], keys: KeyRing | WatermarkKey, *,
                params: WatermarkParams | None = None, key_ids: Sequence[str] | None = None,
                dedup: bool = True) -> DetectionBatch:
    """Test many token sequences at once, each on its own (vectorised hashing and tails).

    ``dedup=False`` counts every position, repeats included: the statistic is then *not* binomial and
    its p-value is invalid on repetitive text; it exists only to show why de-duplication is needed.
    """
    ring = _as_ring(keys, params)
    p, w = ring.params, ring.params.context_width
    klist = ring.select(key_ids)
    arrs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]
    for i, a in enumerate(arrs):
        _check_ids(a, p, f"sequence {i}: ")
    rows, total = _pair_rows(arrs, w)
    if dedup and len(rows):
        _, first = np.unique(_void_rows(rows), return_index=True)
        rows = rows[first]
    green_rows = _green_of_rows(klist, rows[:, 1:-1], rows[:, -1], p.gamma)
    seq_idx = rows[:, 0]
    n = np.bincount(seq_idx, minlength=len(arrs))
    green = np.stack([np.bincount(seq_idx, weights=green_rows[:, j], minlength=len(arrs))
                      for j in range(len(klist))], axis=1).astype(np.int64)
    pk = binomial_p(green, n[:, None], p.gamma)
    pk = np.where(n[:, None] > 0, pk, 1.0)
    return DetectionBatch([k.key_id for k in klist], total, n, green, pk, p.gamma)


def detect_ids(ids: Sequence[int] | np.ndarray | Sequence[Sequence[int]], keys: KeyRing | WatermarkKey, *,
               params: WatermarkParams | None = None, key_ids: Sequence[str] | None = None,
               dedup: bool = True) -> Detection:
    """Test token ids for the watermark of any key in the ring.

    ``ids`` is one sequence, or a list of sequences pooled into one test (each distinct
    (context, token) pair across all of them scored once), e.g. several responses to one account.
    Raises ``ValueError`` on empty or too-short input (nothing to score) and
    :class:`UnknownKeyError` on a ``key_ids`` entry the ring does not hold.
    """
    ring = _as_ring(keys, params)
    w = ring.params.context_width
    if isinstance(ids, np.ndarray) and ids.ndim == 1 or (
            not isinstance(ids, np.ndarray) and (len(ids) == 0 or np.isscalar(ids[0]))):
        seqs = [np.asarray(ids, dtype=np.int64)]
    else:
        seqs = [np.asarray(s, dtype=np.int64) for s in ids]
    total = sum(s.size for s in seqs)
    if total == 0:
        raise ValueError("empty text: no tokens to score")
    if all(s.size <= w for s in seqs):
        raise ValueError(f"too short: a text needs more than context_width={w} tokens to score any (got {total})")
    for i, s in enumerate(seqs):
        _check_ids(s, ring.params, f"sequence {i}: " if len(seqs) > 1 else "")
    rows = np.concatenate([np.lib.stride_tricks.sliding_window_view(s, w + 1) for s in seqs if s.size > w])
    return detect_pairs(rows, ring, key_ids=key_ids, dedup=dedup, tokens_total=total)


def detect_pairs(rows: np.ndarray, keys: KeyRing | WatermarkKey, *, params: WatermarkParams | None = None,
                 key_ids: Sequence[str] | None = None, dedup: bool = True,
                 tokens_total: int | None = None) -> Detection:
    """The binomial test on explicit ``(context..., token)`` rows, shape ``(n, context_width + 1)``.

    The building block of :func:`detect_ids` and of the radioactivity tests, where the token of a
    row is a suspect model's prediction rather than the next token of a text.
    """
    ring = _as_ring(keys, params)
    klist = ring.select(key_ids)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != ring.params.context_width + 1:
        raise ValueError(f"rows must have shape (n, context_width + 1 = {ring.params.context_width + 1})")
    total = len(rows) if tokens_total is None else tokens_total
    if dedup and len(rows):
        _, first = np.unique(_void_rows(rows), return_index=True)
        rows = rows[first]
    if not len(rows):
        raise ValueError("nothing to score: no (context, token) pairs")
    g = _green_of_rows(klist, rows[:, :-1], rows[:, -1], ring.params.gamma).sum(axis=0)
    n = len(rows)
    pk = binomial_p(g, n, ring.params.gamma)
    b = int(np.argmin(pk))
    return Detection(klist[b].key_id, float(_z(int(g[b]), n, ring.params.gamma)),
                     float(min(1.0, pk[b] * len(klist))), n, int(g[b]), total, len(klist), ring.params.gamma,
                     {k.key_id: float(pv) for k, pv in zip(klist, pk, strict=True)})


# --------------------------------------------------------------------------------------------- tokenizers

def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of a tokenizer's vocabulary (``get_vocab()``): tells two tokenizers apart."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens; works for ``tokenizers.Tokenizer`` and
    ``transformers`` tokenizers."""
    out = tokenizer.encode(text, add_special_tokens=False)
    return list(out.ids) if hasattr(out, "ids") else list(out)


def detect_text(text: str | Sequence[str], keys: KeyRing | WatermarkKey, tokenizer: Any, *,
                params: WatermarkParams | None = None, key_ids: Sequence[str] | None = None) -> Detection:
    """:func:`detect_ids` on text tokenized with the generator's tokenizer (a list of texts is pooled).

    Raises ``ValueError`` when the ring's params record a different tokenizer (fingerprint or
    vocabulary size): green lists live in token-id space, so another tokenizer gives noise.
    """
    ring = _as_ring(keys, params)
    p = ring.params
    if p.tokenizer_fingerprint is not None and tokenizer_fingerprint(tokenizer) != p.tokenizer_fingerprint:
        raise ValueError("wrong tokenizer: its fingerprint differs from the one the watermark was generated with "
                         f"({tokenizer_fingerprint(tokenizer)} != {p.tokenizer_fingerprint})")
    if p.vocab_size is not None and len(tokenizer.get_vocab()) > p.vocab_size:
        raise ValueError(f"wrong tokenizer: {len(tokenizer.get_vocab())} tokens, the generator's has {p.vocab_size}")
    texts = [text] if isinstance(text, str) else list(text)
    if not any(t.strip() for t in texts):
        raise ValueError("empty text: no tokens to score")
    return detect_ids([encode(tokenizer, t) for t in texts], ring, key_ids=key_ids)


def with_tokenizer(params: WatermarkParams, tokenizer: Any) -> WatermarkParams:
    """``params`` pinned to ``tokenizer`` (fingerprint and vocabulary size) for later detection."""
    return replace(params, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                   vocab_size=len(tokenizer.get_vocab()))
