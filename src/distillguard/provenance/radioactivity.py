"""Radioactivity test: was a suspect model trained on our watermarked outputs?

A model fine-tuned on watermarked text inherits a weak preference for the green tokens of the
contexts it saw. Two tests, both with an exact binomial p-value over *distinct* (context, token)
pairs (Sander et al., "Watermarking makes language models radioactive", 2024, describe why the
de-duplication is needed: a model's predictions repeat, and repeats are not independent evidence):

- :func:`whitebox_test` (open weights): feed probe text to the suspect (teacher forcing) and score
  its top next-token prediction at every position against the green list of the probe's context.
- :func:`blackbox_test` (API only): sample text from the suspect on probe prompts and score the
  samples as one pooled text.

Null hypothesis: the suspect never saw text marked with these keys, so its predictions do not depend
on the secret and each distinct pair is green with probability gamma. **Probes must be text that was
never watermarked with the keys under test** (e.g. public text, or the unwatermarked generator):
a suspect that copies from a watermarked probe would inherit the probe's green tokens without any
training on our outputs; pass ``exclude_probe_pairs=True`` when unsure (drops every pair that occurs
in the probe text itself, at a cost in power).

>>> from distillguard.provenance.ngram import BigramLM
>>> from distillguard.provenance.watermark import KeyRing, WatermarkKey, WatermarkParams, Watermarker
>>> rng = np.random.default_rng(1)
>>> ring = KeyRing([WatermarkKey("k", bytes(range(32)))], params=WatermarkParams(context_width=1, delta=3.0))
>>> teacher = BigramLM.random(200, 0.3, rng)
>>> marked = teacher.generate(300, 100, rng=rng, processor=Watermarker(ring))
>>> plain = teacher.generate(900, 100, rng=rng)
>>> probes = teacher.generate(100, 100, rng=rng)
>>> student = BigramLM(200).fit(marked + plain)             # 25 % watermarked
>>> control = BigramLM(200).fit(teacher.generate(1200, 100, rng=rng))
>>> whitebox_test(student.top_next, probes, ring).p_value < 1e-6
True
>>> whitebox_test(control.top_next, probes, ring).p_value > 1e-3
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillguard.provenance.watermark import (
    Detection,
    KeyRing,
    WatermarkKey,
    WatermarkParams,
    _as_ring,
    _void_rows,
    detect_pairs,
)

__all__ = ["RadioactivityResult", "blackbox_test", "whitebox_test"]

TopNext = Callable[[Sequence[Sequence[int]]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class RadioactivityResult:
    """One radioactivity test: its mode, the binomial test on distinct pairs, and how much was probed."""

    mode: str
    detection: Detection
    probes: int

    @property
    def p_value(self) -> float:
        return self.detection.p_value

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "probes": self.probes} | self.detection.to_dict()


def _windows(s: np.ndarray, w: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(s, w + 1) if s.size > w else np.empty((0, w + 1), np.int64)


def whitebox_test(top_next: TopNext, probes: Sequence[Sequence[int]], keys: KeyRing | WatermarkKey, *,
                  params: WatermarkParams | None = None, key_ids: Sequence[str] | None = None,
                  exclude_probe_pairs: bool = False) -> RadioactivityResult:
    """Score the suspect's teacher-forced top predictions on ``probes`` against the green lists.

    ``top_next(seqs)`` returns, per sequence, the argmax next token after each prefix ``seq[:t+1]``
    (:meth:`BigramLM.top_next`, :func:`distillguard.provenance.hf.top_token_fn`).
    """
    ring = _as_ring(keys, params)
    w = ring.params.context_width
    arrs = [np.asarray(p, dtype=np.int64) for p in probes]
    if not any(a.size >= w for a in arrs):
        raise ValueError(f"probes must hold at least context_width={w} tokens")
    preds = top_next([a.tolist() for a in arrs])
    rows = []
    for a, pr in zip(arrs, preds, strict=True):
        pr = np.asarray(pr, dtype=np.int64)
        if a.size < w:
            continue
        ctx = np.lib.stride_tricks.sliding_window_view(a, w)  # ctx[j] = a[j : j+w], prediction at t = j+w-1
        rows.append(np.column_stack([ctx, pr[w - 1: w - 1 + len(ctx)]]))
    allrows = np.concatenate(rows)
    if exclude_probe_pairs:
        seen = np.concatenate([_windows(a, w) for a in arrs])
        both = _void_rows(np.concatenate([allrows, seen]))  # one packing for both, so keys compare
        allrows = allrows[~np.isin(both[:len(allrows)], both[len(allrows):])]
    det = detect_pairs(allrows, ring, key_ids=key_ids, tokens_total=sum(a.size for a in arrs))
    return RadioactivityResult("whitebox", det, len(arrs))


def blackbox_test(samples: Sequence[Sequence[int]], keys: KeyRing | WatermarkKey, *,
                  prompts: Sequence[Sequence[int]] | None = None, params: WatermarkParams | None = None,
                  key_ids: Sequence[str] | None = None) -> RadioactivityResult:
    """Score text sampled from the suspect (token ids of the continuations only), pooled over samples.

    With ``prompts``, the first tokens of each sample are scored in the context of the prompt's last
    tokens; prompt tokens themselves are never scored.
    """
    ring = _as_ring(keys, params)
    w = ring.params.context_width
    rows = []
    for i, s in enumerate(samples):
        head = np.asarray(prompts[i][-w:] if prompts is not None else [], dtype=np.int64)
        full = np.concatenate([head, np.asarray(s, dtype=np.int64)])
        rows.append(_windows(full, w))
    allrows = np.concatenate(rows) if rows else np.empty((0, w + 1), np.int64)
    if not len(allrows):
        raise ValueError(f"no samples longer than context_width={w} tokens")
    det = detect_pairs(allrows, ring, key_ids=key_ids, tokens_total=sum(len(s) for s in samples))
    return RadioactivityResult("blackbox", det, len(samples))
