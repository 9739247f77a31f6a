"""Radioactivity on a fast numpy bigram teacher/student: a student trained on 10 % watermarked text is
found (white-box and black-box), a control is not, and the null stays honest over many controls.
The green-mass test (the suspect's whole next-token distribution) finds a student trained on 5 %
watermarked text; its Chernoff p-value is checked against exact tails and over many random keys."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.radioactivity import blackbox_test, chernoff_p, green_mass_test, whitebox_test
from distillguard.provenance.watermark import KeyRing, Watermarker, WatermarkKey, WatermarkParams

V = 300
RING = KeyRing([WatermarkKey("wm-r", bytes(range(50, 82)))], params=WatermarkParams(context_width=1, delta=3.0))


def make_world(seed: int, marked: int, plain: int) -> dict:
    """A random bigram teacher; a student fitted on ``marked`` watermarked and ``plain`` unwatermarked
    texts (100 tokens each), a control on as many unwatermarked texts, and 100 never-watermarked probes."""
    rng = np.random.default_rng(seed)
    teacher = BigramLM.random(V, 0.3, rng)
    wm = teacher.generate(marked, 100, rng=rng, processor=Watermarker(RING))
    student = BigramLM(V).fit(wm + teacher.generate(plain, 100, rng=rng))
    control = BigramLM(V).fit(teacher.generate(marked + plain, 100, rng=rng))
    return {"rng": rng, "teacher": teacher, "marked": wm, "student": student, "control": control,
            "probes": teacher.generate(100, 100, rng=rng)}


@pytest.fixture(scope="module")
def world() -> dict:
    return make_world(11, 200, 1800)  # 10 % watermarked


def test_whitebox_finds_the_student_not_the_control(world) -> None:
    s = whitebox_test(world["student"].top_next, world["probes"], RING)
    c = whitebox_test(world["control"].top_next, world["probes"], RING)
    assert s.mode == "whitebox" and s.p_value < 1e-6 and s.detection.green_fraction > 0.3
    assert c.p_value > 0.01
    assert s.detection.tokens_scored <= V * V and s.probes == 100


def test_blackbox_finds_the_student_not_the_control(world) -> None:
    rng = world["rng"]
    prompts = rng.integers(0, V, size=(400, 1)).tolist()
    s = blackbox_test(world["student"].generate(400, 60, rng=rng, prompts=prompts), RING, prompts=prompts)
    c = blackbox_test(world["control"].generate(400, 60, rng=rng, prompts=prompts), RING, prompts=prompts)
    assert s.p_value < 1e-6 and c.p_value > 0.01


def test_whitebox_null_is_valid_over_many_controls(world) -> None:
    """200 models that never saw the key (random bigram tables): p <= 0.05 about 5 % of the time, not more."""
    rng = np.random.default_rng(12)

    def random_model(table: np.ndarray):
        return lambda seqs: [table[np.asarray(s)] for s in seqs]

    ps = np.array([whitebox_test(random_model(rng.integers(0, V, size=V)), world["probes"][:20], RING).p_value
                   for _ in range(200)])
    assert (ps <= 0.05).sum() <= 20  # Binomial(200, 0.05): P[> 20] < 0.002
    assert (ps <= 0.5).sum() >= 60  # and the p-values are not all stuck at 1


def test_probe_pairs_can_be_excluded_for_watermarked_probes(world) -> None:
    # a model that copies its probe: on watermarked probes it looks radioactive without training on them
    marked_probes = world["teacher"].generate(50, 100, rng=world["rng"], processor=Watermarker(RING))

    def copier(seqs):  # predicts, after each token, the token that followed it last time in this text
        out = []
        for s in seqs:
            last, pred = {}, []
            for a, b in zip(s, s[1:] + [s[-1]], strict=True):
                pred.append(last.get(a, 0))
                last[a] = b
            out.append(np.asarray(pred))
        return out

    assert whitebox_test(copier, marked_probes, RING).p_value < 1e-6
    assert whitebox_test(copier, marked_probes, RING, exclude_probe_pairs=True).p_value > 0.01


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="context_width"):
        whitebox_test(lambda s: [np.zeros(0)], [[]], RING)
    with pytest.raises(ValueError, match="no samples"):
        blackbox_test([[1]], RING)


# ------------------------------------------------------------------------------------------ green mass

def topk_fn(lm: BigramLM, k: int = 32):
    """The bigram model's ``k`` most likely next tokens and their probabilities after every prefix."""
    idx = np.argsort(-lm.logprobs_, axis=1)[:, :k]
    pr = np.exp(np.take_along_axis(lm.logprobs_, idx, axis=1))
    return lambda seqs: [(idx[np.asarray(s)], pr[np.asarray(s)]) for s in seqs]


def null_ring(n: int, seed: int) -> KeyRing:
    rng = np.random.default_rng(seed)
    return KeyRing([WatermarkKey(f"null-{i}", rng.bytes(32)) for i in range(n)], params=RING.params)


@pytest.fixture(scope="module")
def world5() -> dict:
    return make_world(21, 100, 1900)  # 5 % watermarked


def test_chernoff_bound_is_never_below_the_exact_tail() -> None:
    """Exact tails of weighted Bernoulli sums by enumeration (2^12 outcomes), signed weights included."""
    rng = np.random.default_rng(3)
    bits = ((np.arange(2**12)[:, None] >> np.arange(12)) & 1).astype(float)
    for trial in range(30):
        gamma = (0.1, 0.25, 0.5)[trial % 3]
        a = rng.random(12) * (rng.random(12) < 0.8)
        if trial % 2:
            a = a - 0.3 * rng.random(12)
        prob = np.prod(np.where(bits == 1, gamma, 1 - gamma), axis=1)
        sums = bits @ a
        u = np.unique(sums)
        for s in np.append(rng.choice(u[:-1], size=40, replace=False), u[-1]):  # 40 thresholds and the maximum
            exact = prob[sums >= s - 1e-12].sum()
            assert chernoff_p(a, float(s), gamma) >= exact * (1 - 1e-9)
    # not vacuous: with unit weights it is within a small factor of the binomial tail
    from scipy.stats import binom

    exact = binom.sf(79, 200, 0.25)
    assert exact <= chernoff_p(np.ones(200), 80, 0.25) <= 15 * exact < 1e-4


def test_berry_esseen_refinement_is_a_bound_and_tighter() -> None:
    """Weights on a lattice (3,000 pairs, weights 0.2-1.0): the exact tail by convolving binomials.
    The refined bound never falls below it and stays within 2.5x of it from z 1 to z 8, several times
    tighter than the plain Chernoff bound in the far tail (about z sqrt(2 pi) too large). The plain
    bound's lam is the true minimiser (it once stopped half-way when Newton hit the root exactly)."""
    from scipy.stats import binom

    rng = np.random.default_rng(0)
    for gamma in (0.1, 0.25):
        ks = rng.integers(1, 6, size=3000)
        dist = np.array([1.0])
        for k in range(1, 6):
            n = int((ks == k).sum())
            d = np.zeros(n * k + 1)
            d[::k] = binom.pmf(np.arange(n + 1), n, gamma)
            dist = np.convolve(dist, d)
        tail = np.cumsum(dist[::-1])[::-1]  # tail[s] = P[sum k_i X_i >= s]
        mu, sd = gamma * ks.sum(), np.sqrt(gamma * (1 - gamma) * (ks ** 2).sum())
        for z in np.arange(1.0, 8.01, 0.25):
            s = int(np.ceil(mu + z * sd))
            refined, plain = chernoff_p(ks / 5, s / 5, gamma), chernoff_p(ks / 5, s / 5, gamma, refine=False)
            assert tail[s] <= refined <= 2.5 * tail[s] and refined <= plain
            if z >= 4:
                assert plain > 5 * refined
            if z in (4.0, 8.0):  # the plain bound is the minimum over lam (a lam grid does no better)
                lams = np.linspace(0, 3, 30001)[:, None]
                grid = np.logaddexp(np.log1p(-gamma), np.log(gamma) + lams * ks / 5).sum(1) - lams[:, 0] * s / 5
                assert np.log(plain) <= grid.min() + 1e-4  # (the bound absorbs 1e-9 of rounding)
    # binomial (unit weights) too, and few pairs: no refinement, the plain bound
    for n, k in ((100, 50), (2000, 260), (20000, 2300)):
        assert binom.sf(k - 1, n, 0.1 if n > 100 else 0.25) <= chernoff_p(np.ones(n), k, 0.1 if n > 100 else 0.25)
    assert chernoff_p(np.ones(5), 4, 0.25) == chernoff_p(np.ones(5), 4, 0.25, refine=False)


def test_green_mass_finds_a_student_with_5_percent_watermarked_text(world5) -> None:
    s = green_mass_test(topk_fn(world5["student"]), world5["probes"], RING)
    c = green_mass_test(topk_fn(world5["control"]), world5["probes"], RING)
    assert s.mode == "whitebox" and s.p_value < 1e-6 and s.green_mass > s.expected
    assert c.p_value > 0.05
    assert s.contexts <= V and s.tokens_scored <= V * 32 and s.probes == 100 and s.keys_tested == 1
    # the provider's own teacher as the reference: what the suspect prefers more than the teacher does
    ref = topk_fn(world5["teacher"])
    sr = green_mass_test(topk_fn(world5["student"]), world5["probes"], RING, reference=ref)
    cr = green_mass_test(topk_fn(world5["control"]), world5["probes"], RING, reference=ref)
    assert sr.p_value < 1e-6 and cr.p_value > 0.05
    assert s.to_dict()["statistic"] == "green_mass" and s.to_dict()["p_value"] == s.p_value


def test_green_mass_null_is_valid_over_random_keys(world5) -> None:
    """Keys that never marked anything: every model is null for them, the student included. At most
    alpha of the keys may reach p <= alpha (binomial slack), for plain and reference weights."""
    ring = null_ring(150, 5)
    probes = world5["probes"][:30]
    ref = topk_fn(world5["teacher"])
    for name in ("student", "control"):
        for kw in ({}, {"reference": ref}):
            ps = np.array(list(green_mass_test(topk_fn(world5[name]), probes, ring, **kw).p_per_key.values()))
            assert (ps <= 0.05).sum() <= 14  # Binomial(150, 0.05): P[> 14] < 0.01
            assert (ps <= 0.01).sum() <= 5  # Binomial(150, 0.01): P[> 5] < 0.01
            assert (ps < 1).sum() >= 45  # and not stuck at 1: about half the keys land above the mean
    # many random models (arbitrary top-k distributions), one fixed key
    rng = np.random.default_rng(6)
    ps = []
    for _ in range(100):
        idx, pr = rng.integers(0, V, size=(V, 8)), rng.dirichlet(np.full(8, 0.5), size=V)
        ps.append(green_mass_test(lambda seqs, i=idx, p=pr: [(i[np.asarray(s)], p[np.asarray(s)]) for s in seqs],
                                  probes, RING).p_value)
    assert (np.asarray(ps) <= 0.05).sum() <= 10  # Binomial(100, 0.05): P[> 10] < 0.02


def test_decoy_probes_with_the_teacher_as_reference(world5) -> None:
    """Probes the teacher wrote under a decoy key (never ours) reach the contexts watermarked text
    visits and are independent of our key: the student is found, the control is not, and 150 null keys
    keep the level on both, with the teacher as reference."""
    decoy_ring = KeyRing([WatermarkKey("decoy", bytes(range(100, 132)))], params=RING.params)
    decoy = world5["teacher"].generate(100, 100, rng=np.random.default_rng(7), processor=Watermarker(decoy_ring))
    ref = topk_fn(world5["teacher"])
    s = green_mass_test(topk_fn(world5["student"]), decoy, RING, reference=ref, mode="whitebox-ref-decoy")
    c = green_mass_test(topk_fn(world5["control"]), decoy, RING, reference=ref)
    assert s.p_value < 1e-6 and c.p_value > 0.05 and s.mode == "whitebox-ref-decoy"
    ring = null_ring(150, 8)
    for name in ("student", "control"):
        ps = np.array(list(green_mass_test(topk_fn(world5[name]), decoy[:30], ring, reference=ref).p_per_key.values()))
        assert (ps <= 0.05).sum() <= 14 and (ps <= 0.01).sum() <= 5 and (ps < 1).sum() >= 45


def test_reading_mode_excludes_what_the_probes_contain(world5) -> None:
    """Read the suspect on our own watermarked outputs. A model that copies its context inherits their
    green tokens; dropping every pair the probes contain keeps it (and the control) null."""
    marked = world5["marked"]

    base = topk_fn(world5["control"], 4)

    def copier(seqs):  # half the control's top 4, half the tokens that followed this one earlier in the text
        out = []
        for s, (bi, bp) in zip(seqs, base(seqs), strict=True):
            seen: dict[int, list[int]] = {}
            ids, pr = np.concatenate([bi, np.zeros_like(bi)], axis=1), np.concatenate([bp, np.zeros_like(bp)], axis=1)
            for t, (x, y) in enumerate(zip(s, s[1:] + [s[-1]], strict=True)):
                prev = seen.get(x, [])[-4:]
                if prev:
                    ids[t, 4:4 + len(prev)] = prev
                    pr[t, :4] *= 0.5
                    pr[t, 4:4 + len(prev)] = 0.5 / len(prev)
                seen.setdefault(x, []).append(y)
            out.append((ids, pr))
        return out

    assert green_mass_test(copier, marked, RING).p_value < 1e-6  # the bias reading mode must remove
    assert green_mass_test(copier, marked, RING, exclude_probe_pairs=True, mode="reading").p_value > 0.05
    c = green_mass_test(topk_fn(world5["control"]), marked, RING, exclude_probe_pairs=True, mode="reading")
    assert c.mode == "reading" and c.p_value > 0.05
    with pytest.raises(ValueError, match="non-negative"):
        green_mass_test(copier, marked, RING, exclude_probe_pairs=True, reference=copier)
