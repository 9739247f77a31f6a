"""Radioactivity on a fast numpy bigram teacher/student: a student trained on 10 % watermarked text is
found (white-box and black-box), a control is not, and the null stays honest over many controls."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.radioactivity import blackbox_test, whitebox_test
from distillguard.provenance.watermark import KeyRing, Watermarker, WatermarkKey, WatermarkParams

V = 300
RING = KeyRing([WatermarkKey("wm-r", bytes(range(50, 82)))], params=WatermarkParams(context_width=1, delta=3.0))


@pytest.fixture(scope="module")
def world() -> dict:
    rng = np.random.default_rng(11)
    teacher = BigramLM.random(V, 0.3, rng)
    marked = teacher.generate(200, 100, rng=rng, processor=Watermarker(RING))
    plain = teacher.generate(1800, 100, rng=rng)
    return {
        "rng": rng,
        "teacher": teacher,
        "student": BigramLM(V).fit(marked + plain),  # 10 % watermarked
        "control": BigramLM(V).fit(teacher.generate(2000, 100, rng=rng)),
        "probes": teacher.generate(100, 100, rng=rng),  # never watermarked
    }


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
