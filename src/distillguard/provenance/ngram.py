"""A numpy bigram language model: a fast stand-in teacher/student for radioactivity tests.

Not a good language model, a *fast* one: it lets the test suite run teacher -> watermarked outputs ->
student -> radioactivity test in about a second. The torch experiment is ``benchmarks/radioactivity.py``.

>>> rng = np.random.default_rng(0)
>>> teacher = BigramLM.random(50, concentration=0.2, rng=rng)
>>> seqs = teacher.generate(4, 20, rng=rng)
>>> [len(s) for s in seqs]
[20, 20, 20, 20]
>>> student = BigramLM(50).fit(seqs)
>>> student.top_next(seqs)[0].shape
(20,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["BigramLM"]


class BigramLM:
    """Bigram LM with additive smoothing; ``logprobs_`` is the ``(V, V)`` table after ``fit``."""

    def __init__(self, vocab_size: int, smoothing: float = 0.01) -> None:
        self.vocab_size = vocab_size
        self.smoothing = smoothing

    @classmethod
    def random(cls, vocab_size: int, concentration: float = 0.1, rng: np.random.Generator | None = None) -> BigramLM:
        """A teacher with Dirichlet(concentration) next-token distributions (small = peaky, text-like)."""
        rng = rng or np.random.default_rng()
        lm = cls(vocab_size)
        probs = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
        lm.logprobs_ = np.log(np.maximum(probs, 1e-300))
        return lm

    def fit(self, seqs: Sequence[Sequence[int]]) -> BigramLM:
        counts = np.full((self.vocab_size, self.vocab_size), self.smoothing)
        for s in seqs:
            a = np.asarray(s, dtype=np.int64)
            if a.size > 1:
                np.add.at(counts, (a[:-1], a[1:]), 1.0)
        self.logprobs_ = np.log(counts / counts.sum(axis=1, keepdims=True))
        return self

    def logits(self, prev: np.ndarray) -> np.ndarray:
        """Next-token log-probabilities after each id in ``prev`` (``(B,)`` -> ``(B, V)``)."""
        return self.logprobs_[np.asarray(prev, dtype=np.int64)]

    def generate(self, n: int, length: int, *, rng: np.random.Generator,
                 processor: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 prompts: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
        """Sample ``n`` sequences of ``length`` new tokens (after ``prompts``, default one random token,
        which is not returned); ``processor(ids_so_far (B, L), logits (B, V))`` e.g. a ``Watermarker``."""
        if prompts is None:
            prompts = rng.integers(0, self.vocab_size, size=(n, 1)).tolist()
        ids = np.asarray(prompts, dtype=np.int64)
        start, V = ids.shape[1], self.vocab_size
        out = np.empty((len(ids), start + length), dtype=np.int64)
        out[:, :start] = ids
        if processor is None:  # inverse CDF on all rows at once: one searchsorted in the stacked CDFs
            cdf = np.cumsum(np.exp(self.logprobs_), axis=1)
            cdf = (cdf / cdf[:, -1:] + np.arange(V)[:, None]).ravel()
        for t in range(start, start + length):
            prev = out[:, t - 1]
            if processor is None:
                nxt = np.searchsorted(cdf, prev + rng.random(len(prev)) * (1 - 1e-12)) - prev * V
            else:
                lg = processor(out[:, :t], self.logits(prev))
                nxt = np.argmax(lg + rng.gumbel(size=lg.shape), axis=1)
            out[:, t] = np.clip(nxt, 0, V - 1)
        return out[:, start:].tolist()

    def top_next(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Argmax next token after every prefix (teacher forcing), for the white-box test."""
        return [np.argmax(self.logprobs_[np.asarray(s, dtype=np.int64)], axis=1) for s in seqs]
