"""Hashed n-gram features and the two linear models (capability, CoT coercion) built on them.

Features: hashed unigrams and bigrams of normalised tokens (see ``_text``) in ``2**BITS`` buckets,
each row's counts scaled by ``1/sqrt(n)``. The models are scikit-learn logistic-loss linear models (SGD, fixed seed) trained
on ``_seed`` in a couple of seconds the first time they are needed, then cached in-process; scoring
is a NumPy gather + segment sum over the batch's feature ids (no per-row Python).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from distillguard.content._text import Tokens, clip, mix64, tokenize

__all__ = [
    "BITS", "LinearModel", "capability_model", "cot_model", "features", "linear_scores", "model_scores", "texts_features",
]

BITS = 18
_SHIFT = np.uint64(64 - BITS)
_BIGRAM_SALT = np.uint64(0x5BD1E995)


def features(tok: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Feature ids of every row, flattened, and their per-row offsets (unigrams then bigrams)."""
    h = tok.hashes
    n = len(h)
    uni = (h >> _SHIFT).astype(np.int64)
    same = np.zeros(max(n - 1, 0), dtype=bool)
    if n > 1:
        same = tok.row[1:] == tok.row[:-1]
    bi_h = mix64(h[:-1][same] ^ _BIGRAM_SALT, h[1:][same]) if n > 1 else np.zeros(0, np.uint64)
    bi = (bi_h >> _SHIFT).astype(np.int64)
    bi_row = tok.row[:-1][same] if n > 1 else np.zeros(0, np.int64)
    rows = np.concatenate([tok.row, bi_row])
    ids = np.concatenate([uni, bi])
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=len(tok.offsets) - 1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return ids[order], offsets


def texts_features(texts: list[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    return features(tokenize(clip(arr)))


def to_csr(ids: np.ndarray, offsets: np.ndarray, width: int = 1 << BITS):  # -> scipy.sparse.csr_matrix
    from scipy.sparse import csr_matrix

    n = np.diff(offsets)
    scale = 1.0 / np.sqrt(np.maximum(n, 1))
    data = np.repeat(scale, n)
    m = csr_matrix((data, ids, offsets), shape=(len(n), width))
    m.sum_duplicates()
    return m


def linear_scores(ids: np.ndarray, offsets: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Decision values ``X @ coef + intercept`` for the scaled hashed counts, without building X."""
    n = np.diff(offsets)
    k = coef.shape[1]
    out = np.zeros((len(n), k), dtype=np.float64)
    nz = n > 0
    if ids.size:
        sums = np.add.reduceat(coef.T[:, ids], offsets[:-1][nz], axis=1, dtype=np.float64)  # (k, rows)
        out[nz] = sums.T / np.sqrt(n[nz])[:, None]
    return out + intercept


@dataclass(frozen=True)
class LinearModel:
    classes: tuple[str, ...]
    coef: np.ndarray  # (2**BITS, k) float32
    intercept: np.ndarray  # (k,)

    def decision(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return linear_scores(ids, offsets, self.coef, self.intercept)


def _fit(texts: list[str], labels: list, alpha: float) -> LinearModel:
    from sklearn.linear_model import SGDClassifier

    ids, offsets = texts_features(texts)
    # Train on the buckets that occur only (a few thousand columns, not 2**BITS): much faster.
    used, compact = np.unique(ids, return_inverse=True)
    x = to_csr(compact.astype(np.int64), offsets, width=len(used))
    clf = SGDClassifier(loss="log_loss", alpha=alpha, max_iter=40, tol=None, random_state=0, average=True)
    clf.fit(x, labels)
    coef = np.zeros((clf.coef_.shape[0], 1 << BITS), dtype=np.float32)
    coef[:, used] = clf.coef_
    coef = coef.T  # (2**BITS, k) view over a (k, 2**BITS) C array: row gathers are contiguous
    return LinearModel(tuple(str(c) for c in clf.classes_), coef, clf.intercept_.astype(np.float64))


@functools.cache
def _stacked() -> tuple[np.ndarray, np.ndarray]:
    """Both models' weights side by side, float64, plus one all-zero row (id ``2**BITS``) that
    absorbs the token pairs straddling two rows: (2**BITS + 1, k_cap + k_cot), intercepts."""
    cap, cot = capability_model(), cot_model()
    w = np.zeros((1 + (1 << BITS), cap.coef.shape[1] + cot.coef.shape[1]), dtype=np.float64)
    w[:-1, : cap.coef.shape[1]] = cap.coef
    w[:-1, cap.coef.shape[1]:] = cot.coef
    return w, np.concatenate([cap.intercept, cot.intercept])


_ONES = np.ones(0)


def _ones(n: int) -> np.ndarray:
    """A read-only all-ones float64 vector of length n (reused: the CSR values never change)."""
    global _ONES
    if len(_ONES) < n:
        _ONES = np.ones(n)
        _ONES.flags.writeable = False
    return _ONES[:n]


def _segment_dot(ids: np.ndarray, indptr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``out[r] = sum(w[ids[indptr[r]:indptr[r+1]]])``: a CSR (all ones) times dense product, in C."""
    from scipy.sparse import csr_matrix

    idx = np.int32 if len(ids) < 2**31 else np.int64
    x = csr_matrix((_ones(len(ids)), ids.astype(idx, copy=False), indptr.astype(idx, copy=False)),
                   shape=(len(indptr) - 1, w.shape[0]))
    return np.asarray(x @ w)


def model_scores(tok: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """(capability logits (rows, k), CoT logits (rows,)) for tokenised rows, in one pass.

    Same features as :func:`features` (unigrams and within-row bigrams, scaled by 1/sqrt(n)), but
    without sorting them by row: the unigrams are already in row order, and so are the bigrams of
    all adjacent token pairs once the pairs that straddle two rows are sent to the zero weight row.
    """
    w, intercept = _stacked()
    h, off = tok.hashes, tok.offsets
    n = len(h)
    lens = np.diff(off)
    out = np.zeros((len(lens), w.shape[1]), dtype=np.float64)
    if n:
        out += _segment_dot((h >> _SHIFT).astype(np.int32), off, w)
    if n > 1:
        bi = (mix64(h[:-1] ^ _BIGRAM_SALT, h[1:]) >> _SHIFT).astype(np.int32)
        cross = off[1:-1] - 1
        bi[cross[(cross >= 0) & (cross < n - 1)]] = 1 << BITS
        out += _segment_dot(bi, np.minimum(off, n - 1), w)
    nf = lens + np.maximum(lens - 1, 0)
    nz = nf > 0
    out[nz] /= np.sqrt(nf[nz])[:, None]
    out += intercept
    k = capability_model().coef.shape[1]
    return out[:, :k], out[:, k]


@functools.cache
def capability_model() -> LinearModel:
    """One-vs-rest logistic model over CAPABILITIES, trained on ``_seed.capability_examples``."""
    from distillguard.content._seed import capability_examples

    texts, labels = capability_examples()
    return _fit(texts, labels, alpha=1e-5)


@functools.cache
def cot_model() -> LinearModel:
    """Binary logistic model: does the prompt demand the model's full reasoning trace?"""
    from distillguard.content._seed import cot_examples

    texts, labels = cot_examples()
    return _fit(texts, labels, alpha=1e-5)
