"""Radioactivity test: was a suspect model trained on our watermarked outputs?

A model fine-tuned on watermarked text inherits a weak preference for the green tokens of the
contexts it saw. Three tests (Sander et al., "Watermarking makes language models radioactive", 2024,
describe why scoring *distinct* (context, token) pairs is needed: a model's predictions repeat, and
repeats are not independent evidence):

- :func:`whitebox_test` (open weights): feed probe text to the suspect (teacher forcing) and score
  its top next-token prediction at every position against the green list of the probe's context;
  exact binomial p over distinct pairs.
- :func:`green_mass_test` (open weights, more powerful): the suspect's whole next-token distribution,
  averaged per distinct context; the statistic is its total probability mass on green tokens, with a
  Chernoff-bound p-value (:func:`chernoff_p`, valid without normal approximation). Optionally
  centred on a key-independent reference model (``reference=``), and a *reading mode* on our own
  watermarked outputs (``exclude_probe_pairs=True``).
- :func:`blackbox_test` (API only): sample text from the suspect on probe prompts and score the
  samples as one pooled text; exact binomial p.

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
from dataclasses import asdict, dataclass
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
    green_mask,
)

__all__ = ["BERRY_ESSEEN_C", "GreenMassResult", "RadioactivityResult", "blackbox_test", "chernoff_p", "green_mass_test",
           "whitebox_test"]

TopNext = Callable[[Sequence[Sequence[int]]], Sequence[np.ndarray]]
#: ``f(seqs) -> [(ids (L, k), probs (L, k)) per sequence]``: the suspect's ``k`` most likely next tokens
#: and their probabilities after every prefix ``seq[:t+1]`` (teacher forcing).
TopKNext = Callable[[Sequence[Sequence[int]]], Sequence[tuple[np.ndarray, np.ndarray]]]


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
        stat = {"whitebox": "top1", "blackbox": "samples"}.get(self.mode, self.mode)
        return {"mode": self.mode, "statistic": stat, "probes": self.probes} | self.detection.to_dict()


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


# ------------------------------------------------------------------------------ green-mass (distribution) test

#: Berry-Esseen constant for independent, not identically distributed summands (Shevtsova 2010)
BERRY_ESSEEN_C = 0.56


def chernoff_p(weights: np.ndarray, observed: float, gamma: float, *, refine: bool = True) -> float:
    """Upper bound on ``P[sum_i a_i X_i >= observed]`` for independent ``X_i ~ Bernoulli(gamma)`` and
    fixed real weights ``a_i``: the Chernoff bound ``min_{lam >= 0} E[exp(lam S)] exp(-lam s)`` with the
    exact moment generating function ``prod_i (1 - gamma + gamma e^{lam a_i})``. No normal
    approximation: the bound holds for every ``lam``, so a p-value computed from it is valid (never
    below the true tail). Alone it is conservative by about a factor ``z sqrt(2 pi)`` in the far tail.

    ``refine`` (default) multiplies it by a factor ``<= 1`` that is still a bound, not an
    approximation. Exactly, ``P[S >= s] = M(lam) e^{-lam s} E_lam[e^{-lam Y} 1{Y >= 0}]`` with
    ``Y = S - s`` under the exponentially tilted law (each ``X_i`` green with probability
    ``pi_i = gamma e^{lam a_i} / (1 - gamma + gamma e^{lam a_i})``). Writing the expectation as
    ``int_0^inf lam e^{-lam u} P_lam[0 <= Y <= u] du`` and bounding ``P_lam[0 <= Y <= u]`` by its
    normal value plus twice the Berry-Esseen distance ``eps = C sum rho_i / sigma^3`` (``C = 0.56``,
    Shevtsova 2010, any independent summands) gives ``E_lam[...] <= G + 2 eps``, ``G`` the normal
    integral in closed form. About ``1 / (z sqrt(2 pi))`` when many pairs carry weight; 1 (no change)
    when few do.

    >>> w = np.ones(100)                       # unit weights: the binomial case
    >>> from scipy.stats import binom
    >>> bool(binom.sf(49, 100, 0.25) <= chernoff_p(w, 50, 0.25) <= 20 * binom.sf(49, 100, 0.25))
    True
    >>> chernoff_p(w, 20, 0.25)                # at or below the mean: no evidence
    1.0
    """
    a = np.asarray(weights, dtype=np.float64).ravel()
    a = a[a != 0]
    if not a.size or observed <= gamma * a.sum():
        return 1.0
    top, tol = a[a > 0].sum(), 1e-9 * max(1.0, float(np.abs(a).sum()))
    if observed > top + tol:
        return 0.0  # above the largest value the sum can take
    if observed >= top - tol:  # the largest value: every positive weight green, every negative one not
        return float(gamma ** int((a > 0).sum()) * (1 - gamma) ** int((a < 0).sum()))
    observed -= tol  # absorbs rounding in the sum (a larger bound: still valid)
    lg, l1 = float(np.log(gamma)), float(np.log1p(-gamma))

    def slope(lam: float) -> tuple[float, float]:  # first and second derivative of log E[e^{lam S}] - lam s
        pi = 0.5 + 0.5 * np.tanh(0.5 * (lg - l1 + lam * a))  # P_lam[green] of each pair
        return float((a * pi).sum() - observed), float((a * a * pi * (1 - pi)).sum())

    lo, hi = 0.0, 1.0 / max(float(np.abs(a).max()), 1e-300)
    while slope(hi)[0] < 0 and hi < 1e8:
        lo, hi = hi, hi * 2
    lam = 0.5 * (lo + hi)
    for _ in range(100):  # Newton on the increasing slope, safeguarded by bisection of [lo, hi]
        g, h = slope(lam)
        if abs(g) < 1e-12 * (1 + abs(observed)):
            break  # converged: keep this lam (moving on would bisect away from it)
        lo, hi = (lam, hi) if g < 0 else (lo, lam)
        nxt = lam - g / h if h > 0 else 0.5 * (lo + hi)
        lam = nxt if lo < nxt < hi else 0.5 * (lo + hi)
        if hi - lo < 1e-9 * hi:
            break
    log_bound = float(np.logaddexp(l1, lg + lam * a).sum() - lam * observed)
    if refine and lam > 0:
        log_bound += _tilted_log_factor(a, observed, lam, lg - l1)
    return float(min(1.0, np.exp(min(0.0, log_bound))))


def _tilted_log_factor(a: np.ndarray, observed: float, lam: float, logit: float) -> float:
    """``log min(1, G + 2 eps)``: the bound on ``E_lam[e^{-lam (S - s)} 1{S >= s}]`` of :func:`chernoff_p`."""
    from scipy.special import log_ndtr

    pi = 0.5 + 0.5 * np.tanh(0.5 * (logit + lam * a))
    v = pi * (1 - pi)
    sigma = float(np.sqrt((a * a * v).sum()))
    if not sigma > 0:
        return 0.0
    rho = float((np.abs(a) ** 3 * v * (pi * pi + (1 - pi) ** 2)).sum())  # E|a_i (X_i - pi_i)|^3
    eps = BERRY_ESSEEN_C * rho / sigma ** 3
    m = float((a * pi).sum()) - observed  # tilted mean of Y (about 0 at the optimal lam)
    log_g = -lam * m + 0.5 * (lam * sigma) ** 2 + float(log_ndtr(m / sigma - lam * sigma))
    return float(min(0.0, np.log(np.exp(log_g) + 2 * eps)))


@dataclass(frozen=True)
class GreenMassResult:
    """The green-mass test: how much of the suspect's next-token probability falls on green tokens.

    ``green_mass`` is ``S = sum_c sum_t a_{c,t} green_c(t)`` for the best key, ``expected`` its null
    mean ``gamma * sum a``; ``p_value`` is the Chernoff bound (:func:`chernoff_p`), Bonferroni-corrected
    over ``keys_tested``; ``score`` the normal z, for ranking only. ``tokens_scored`` counts the
    distinct (context, token) pairs carrying weight, ``contexts`` the distinct contexts.
    """

    mode: str
    key_id: str
    p_value: float
    score: float
    green_mass: float
    expected: float
    contexts: int
    tokens_scored: int
    tokens_total: int
    keys_tested: int
    gamma: float
    probes: int
    p_per_key: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"statistic": "green_mass"}


def _weights(topk: Sequence[tuple[np.ndarray, np.ndarray]], arrs: Sequence[np.ndarray], w: int,
             sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context rows, predicted tokens and probabilities of every position with a full context."""
    ctx, tok, prob = [], [], []
    for a, (ids, pr) in zip(arrs, topk, strict=True):
        if a.size < w:
            continue
        ids, pr = np.asarray(ids, dtype=np.int64), np.asarray(pr, dtype=np.float64)
        c = np.lib.stride_tricks.sliding_window_view(a, w)  # c[j] = a[j:j+w]: prediction after position j+w-1
        ctx.append(c)
        tok.append(ids[w - 1: w - 1 + len(c)].reshape(len(c), -1))
        prob.append(sign * pr[w - 1: w - 1 + len(c)].reshape(len(c), -1))
    return np.concatenate(ctx), np.concatenate(tok), np.concatenate(prob)


def green_mass_test(topk_next: TopKNext, probes: Sequence[Sequence[int]], keys: KeyRing | WatermarkKey, *,
                    params: WatermarkParams | None = None, key_ids: Sequence[str] | None = None,
                    reference: TopKNext | None = None, exclude_probe_pairs: bool = False,
                    mode: str = "whitebox") -> GreenMassResult:
    """White-box radioactivity test on the suspect's next-token *distribution* (not only its argmax).

    Teacher-force the suspect on ``probes``; ``topk_next(seqs)`` gives, after every prefix, its ``k``
    most likely next tokens and their probabilities (:func:`distillguard.provenance.harness.topk_next_fn`
    for a ``transformers`` model). Per distinct context ``c`` (the last ``context_width`` ids), average
    those distributions over the probe positions with that context: ``q_c``. The statistic is the total
    green mass ``S = sum_c sum_t a_{c,t} X_{c,t}`` with weights ``a = q_c`` and ``X_{c,t}`` the green flag.

    With ``reference`` (another model's ``topk_next``, independent of the key), the weights are
    ``q_c - r_c``: what the suspect prefers *more* than the reference. That removes the variance of
    contexts where both are sure of the next token, which carries no watermark signal. The weights
    may then be negative; the bound below allows that. The best reference is the provider's own
    teacher, unwatermarked: the watermark is added at sampling, never to its weights, so its
    distribution does not depend on the key, and a student that imitates it is closer to it than to
    any public model (smaller ``sum a^2``, the null variance, for the same watermark shift).

    Null hypothesis: the suspect (and the reference) never saw text marked with these keys, and the
    probes are not watermarked. The weights are then fixed independently of the key, and the green
    flags of distinct (context, token) pairs are independent Bernoulli(gamma), so ``S`` is a weighted
    sum of independent Bernoullis and :func:`chernoff_p` bounds its tail exactly (no normal
    approximation). Each distinct pair carries one weight, so repeated contexts are not double counted.

    **Reading mode** (``exclude_probe_pairs=True``; Sander et al. 2024): the probes may be our own
    watermarked outputs (from the evidence log), so the suspect is read on the contexts it was trained
    on. Every (context, token) pair that occurs in the probes is dropped from the sum. The test stays
    valid: given the probe text, the green flags of the pairs that the text never chose are independent
    of it up to a likelihood that *decreases* in each flag (a green token is more likely to have been
    chosen, so an unchosen one is less likely green), and by Harris' inequality the moment generating
    function of a sum with non-negative weights can only shrink. So reading mode needs non-negative
    weights: it refuses ``reference``. Do not pick the probe texts by their watermark scores.
    """
    ring = _as_ring(keys, params)
    w, gamma = ring.params.context_width, ring.params.gamma
    if exclude_probe_pairs and reference is not None:
        raise ValueError("exclude_probe_pairs (reading mode) needs non-negative weights: drop the reference")
    klist = ring.select(key_ids)
    arrs = [np.asarray(p, dtype=np.int64).reshape(-1) for p in probes]
    if not any(a.size >= w for a in arrs):
        raise ValueError(f"probes must hold at least context_width={w} tokens")
    seqs = [a.tolist() for a in arrs]
    ctx, tok, prob = _weights(topk_next(seqs), arrs, w, 1.0)
    parts = [(ctx, tok, prob)]
    if reference is not None:
        parts.append(_weights(reference(seqs), arrs, w, -1.0))
    seen = np.concatenate([_windows(a, w) for a in arrs]) if exclude_probe_pairs else np.empty((0, w + 1), np.int64)
    # one packing of every context so that indices compare across the parts
    allctx = np.concatenate([p[0] for p in parts] + [seen[:, :w]])
    uniq, first, cinv = np.unique(_void_rows(allctx), return_index=True, return_inverse=True)
    cinv = cinv.reshape(-1)
    n_c = np.bincount(cinv[:len(ctx)], minlength=len(uniq)).astype(np.float64)  # positions per context
    ci, ti, wi, off = [], [], [], 0
    for c, t, pr in parts:
        idx = cinv[off: off + len(c)]
        off += len(c)
        ci.append(np.repeat(idx, t.shape[1]))
        ti.append(t.ravel())
        wi.append((pr / n_c[idx][:, None]).ravel())
    ci_a, ti_a, wi_a = np.concatenate(ci), np.concatenate(ti), np.concatenate(wi)
    vmax = int(max(ti_a.max(), seen[:, w].max() if len(seen) else 0)) + 1
    pair = ci_a * vmax + ti_a
    upair, pinv = np.unique(pair, return_inverse=True)
    a = np.bincount(pinv.reshape(-1), weights=wi_a, minlength=len(upair))
    if exclude_probe_pairs:
        a[np.isin(upair, cinv[off:] * vmax + seen[:, w])] = 0.0
    keep = np.abs(a) > 1e-12
    upair, a = upair[keep], a[keep]
    if not len(a):
        raise ValueError("nothing to score: no (context, token) pair carries weight")
    pc, pt = upair // vmax, upair % vmax
    used, pc_local = np.unique(pc, return_inverse=True)
    ctx_rows = allctx[first[used]]
    chunk = max(1, 4_000_000 // vmax)
    s_k, p_k = [], []
    for key in klist:
        green = np.zeros(len(a), dtype=bool)
        for lo in range(0, len(used), chunk):
            m = green_mask(key, ctx_rows[lo: lo + chunk], vmax, gamma)
            sel = (pc_local >= lo) & (pc_local < lo + chunk)
            green[sel] = m[pc_local[sel] - lo, pt[sel]]
        s = float(a[green].sum())
        s_k.append(s)
        p_k.append(chernoff_p(a, s, gamma))
    b = int(np.argmin(p_k))
    mean, var = gamma * float(a.sum()), gamma * (1 - gamma) * float((a * a).sum())
    return GreenMassResult(mode, klist[b].key_id, float(min(1.0, p_k[b] * len(klist))),
                           float((s_k[b] - mean) / np.sqrt(var)) if var > 0 else 0.0, s_k[b], mean, len(used), len(a),
                           sum(x.size for x in arrs), len(klist), gamma, len(arrs),
                           {k.key_id: float(p) for k, p in zip(klist, p_k, strict=True)})
