"""Watermark: generation marks, detection finds, keys are told apart, p-values are honest on
never-watermarked text (10k+ texts, with and without repetition), bad input is refused clearly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy.stats import binom

from distillguard.provenance.keys import WatermarkKey, generate_key, load_key, save_key
from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.watermark import (
    DetectionBatch,
    KeyRing,
    UnknownKeyError,
    Watermarker,
    WatermarkParams,
    detect_ids,
    detect_many,
    detect_text,
    green_mask,
    is_green,
    watermark_logits,
    with_tokenizer,
)

KA = WatermarkKey("wm-a", bytes(range(32)))
KB = WatermarkKey("wm-b", bytes(range(100, 132)))
V = 1000


def _teacher(seed: int = 0) -> BigramLM:
    return BigramLM.random(V, concentration=0.05, rng=np.random.default_rng(seed))


def test_green_list_is_the_cheap_membership_and_has_share_gamma() -> None:
    p = WatermarkParams(context_width=2, gamma=0.25)
    ctx = np.random.default_rng(0).integers(0, V, size=(50, 2))
    mask = green_mask(KA, ctx, V, p.gamma)
    per_pair = is_green(KA, np.repeat(ctx, V, axis=0), np.tile(np.arange(V), 50), p.gamma).reshape(50, V)
    assert (mask == per_pair).all()
    assert abs(mask.mean() - 0.25) < 0.01  # 50k draws: sd 0.002
    assert (green_mask(KB, ctx, V, p.gamma) != mask).mean() > 0.3  # another key, another list
    lg = np.random.default_rng(1).normal(size=(50, V))
    out = watermark_logits(lg, ctx, KA, WatermarkParams(context_width=2, delta=2.0))
    assert np.allclose(out - lg, 2.0 * mask)


def test_watermarked_generation_is_detected_and_plain_text_is_not() -> None:
    ring = KeyRing([KA], params=WatermarkParams(context_width=2, delta=2.0))
    rng = np.random.default_rng(2)
    t = _teacher()
    marked = t.generate(20, 200, rng=rng, processor=Watermarker(ring))
    plain = t.generate(20, 200, rng=rng)
    pm = [detect_ids(s, ring).p_value for s in marked]
    pp = [detect_ids(s, ring).p_value for s in plain]
    assert np.median(pm) < 1e-6
    assert min(pp) > 1e-3
    d = detect_ids(marked[0], ring)
    assert d.key_id == "wm-a" and d.tokens_total == 200 and 0 < d.tokens_scored <= 198 and d.green > 0.25 * d.tokens_scored


def test_two_keys_are_told_apart_and_rotation_keeps_old_keys_detectable() -> None:
    params = WatermarkParams(context_width=1, delta=2.5)
    ring = KeyRing([KA], params=params)
    rng = np.random.default_rng(3)
    t = _teacher(1)
    by_a = t.generate(1, 300, rng=rng, processor=Watermarker(ring))[0]
    ring2 = ring.rotate(KB)
    assert ring2.active == "wm-b" and len(ring2) == 2
    by_b = t.generate(1, 300, rng=rng, processor=Watermarker(ring2))[0]
    da, db = detect_ids(by_a, ring2), detect_ids(by_b, ring2)
    assert (da.key_id, db.key_id) == ("wm-a", "wm-b")
    assert da.keys_tested == 2 and da.p_value < 1e-6 and db.p_value < 1e-6
    assert da.p_per_key["wm-b"] > 1e-3 and db.p_per_key["wm-a"] > 1e-3
    # Bonferroni: the ring's p-value is the best key's times the number of keys
    assert da.p_value == pytest.approx(min(1.0, 2 * da.p_per_key["wm-a"]))
    assert detect_ids(by_a, ring2, key_ids=["wm-b"]).p_value > 1e-3


def test_a_phrase_repeated_100_times_is_one_observation() -> None:
    ring = KeyRing([KA], params=WatermarkParams(context_width=2))
    rng = np.random.default_rng(4)
    # a phrase whose 12 pairs happen to be 5+ green (not rare: P ~ 0.16 under the null) ...
    text = next(t for t in (np.tile(rng.integers(0, V, size=12), 100) for _ in range(1000))
                if detect_ids(t, ring).green >= 5)
    d = detect_ids(text, ring)
    assert d.tokens_scored == 12 and d.p_value > 1e-2
    undeduped = detect_ids(text, ring, dedup=False)  # ... is overwhelming evidence if repeats count
    assert undeduped.tokens_scored == 1198 and undeduped.p_value < 1e-30
    # and over 300 random repeated phrases, de-duplication gives at most chance-level false positives
    reps = [np.tile(rng.integers(0, V, size=12), 100) for _ in range(300)]
    assert (detect_many(reps, ring).p_value <= 1e-2).sum() <= binom.isf(1e-4, 300, 1e-2)
    assert (detect_many(reps, ring, dedup=False).p_value <= 1e-2).mean() > 0.2


def _attained_size(n: np.ndarray, gamma: float, alpha: float) -> np.ndarray:
    """Exact P[p-value <= alpha] under the null for a text with n scored pairs (discreteness < alpha)."""
    out = np.zeros(len(n))
    for m in np.unique(n):
        k = np.arange(m + 2)
        sf = binom.sf(k - 1, m, gamma)
        out[n == m] = sf[sf <= alpha][0] if (sf <= alpha).any() else 0.0
    return out


def _markov_texts(rng: np.random.Generator, n: int, length: int) -> list[np.ndarray]:
    """Text from a random sparse Markov chain (20 successors per token, Dirichlet weights): bursty,
    repetitive at the bigram level, and fast to sample."""
    succ = rng.integers(0, V, size=(V, 20))
    cum = np.cumsum(rng.dirichlet(np.full(20, 0.3), size=V), axis=1)
    out = np.empty((n, length), dtype=np.int64)
    out[:, 0] = rng.integers(0, V, size=n)
    for t in range(1, length):
        prev = out[:, t - 1]
        j = np.minimum((cum[prev] < rng.random(n)[:, None]).sum(axis=1), 19)
        out[:, t] = succ[prev, j]
    return list(out)


@pytest.fixture(scope="module")
def null_texts() -> tuple[list[np.ndarray], np.ndarray]:
    """12,000 never-watermarked texts: uniform tokens, Markov-chain text, and heavily repetitive text."""
    rng = np.random.default_rng(5)
    texts: list[np.ndarray] = [rng.integers(0, V, size=rng.integers(50, 400)) for _ in range(4000)]
    texts += _markov_texts(rng, 4000, 200)
    for _ in range(4000):  # a short phrase repeated many times, then some fresh tokens
        ph = rng.integers(0, V, size=rng.integers(15, 40))
        texts.append(np.concatenate([np.tile(ph, rng.integers(5, 30)), rng.integers(0, V, size=20)]))
    return texts, np.repeat([0, 1, 2], 4000)


@pytest.fixture(scope="module")
def null_detected(null_texts) -> tuple[KeyRing, DetectionBatch, DetectionBatch]:
    """The 12k null texts through the detector once (de-duplicated), and the repetitive ones without."""
    texts, kind = null_texts
    ring = KeyRing([KA], params=WatermarkParams(context_width=1, gamma=0.25))
    raw = detect_many([t for t, k in zip(texts, kind, strict=True) if k == 2], ring, dedup=False)
    return ring, detect_many(texts, ring), raw


@pytest.mark.parametrize("alpha", [1e-3, 1e-2])
def test_false_positive_rate_matches_alpha_on_12k_never_watermarked_texts(alpha: float, null_texts,
                                                                          null_detected) -> None:
    texts, kind = null_texts
    ring, res, raw = null_detected
    params = ring.params
    fp = res.p_value <= alpha
    size = _attained_size(res.tokens_scored, params.gamma, alpha)
    N, expected = len(texts), size.sum()
    assert N >= 10_000 and expected <= alpha * N  # exact test: level never above alpha
    # the observed count of false positives is what an exact level-`expected/N` test gives
    lo, hi = binom.ppf(1e-4, N, expected / N), binom.isf(1e-4, N, expected / N)
    assert lo <= fp.sum() <= hi, (fp.sum(), expected)
    assert fp.sum() <= binom.isf(1e-4, N, alpha)  # and not above alpha
    # repetitive texts alone are not inflated ...
    rep = kind == 2
    assert fp[rep].sum() <= binom.isf(1e-4, rep.sum(), alpha)
    # ... but scoring every position is: the check can fail
    assert (raw.p_value <= alpha).mean() > 5 * alpha


def test_false_positive_rate_with_an_independent_key_per_text() -> None:
    """The p-value is valid over the choice of key. With one key, texts that share n-grams (the Markov
    texts above) have correlated false positives; with a fresh key per text the trials are independent,
    so the count of false positives must be binomial around the exact attained level."""
    rng = np.random.default_rng(9)
    texts = _markov_texts(rng, 1500, 200)
    params = WatermarkParams(context_width=1)
    res = [detect_ids(t, WatermarkKey(f"k{i}", hashlib.sha256(b"%d" % i).digest()), params=params)
           for i, t in enumerate(texts)]
    p = np.array([d.p_value for d in res])
    n = np.array([d.tokens_scored for d in res])
    for alpha in (1e-2, 5e-2):
        size = _attained_size(n, 0.25, alpha).mean()
        assert size <= alpha
        k = (p <= alpha).sum()
        assert binom.ppf(1e-4, len(texts), size) <= k <= binom.isf(1e-4, len(texts), size), (alpha, k, size)


def test_bad_input_gets_a_clear_error() -> None:
    ring = KeyRing([KA], params=WatermarkParams(context_width=2, vocab_size=V))
    with pytest.raises(ValueError, match="empty"):
        detect_ids([], ring)
    with pytest.raises(ValueError, match="too short"):
        detect_ids([1, 2], ring)
    with pytest.raises(UnknownKeyError, match="unknown watermark key id 'nope'"):
        detect_ids([1, 2, 3, 4], ring, key_ids=["nope"])
    with pytest.raises(ValueError, match="tokenizer"):
        detect_ids([1, 2, V + 5], ring)
    with pytest.raises(ValueError):
        WatermarkParams(gamma=1.5)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        WatermarkKey("short", b"abc")


def test_key_files_and_rings_round_trip(tmp_path) -> None:
    k = generate_key("wm-2026-11", WatermarkKey)
    path = save_key(k, tmp_path / "k.json")
    assert load_key(path, WatermarkKey) == k and (path.stat().st_mode & 0o777) == 0o600
    assert "secret" not in repr(k) or k.secret.hex() not in repr(k)
    with pytest.raises(FileExistsError):
        save_key(k, path)
    ring = KeyRing([KA, KB], active="wm-a", params=WatermarkParams(context_width=1, gamma=0.3))
    ring.save(tmp_path / "ring.json")
    back = KeyRing.load(tmp_path / "ring.json")
    assert back.active == "wm-a" and back.params == ring.params and back.keys == ring.keys
    single = KeyRing.from_dict(json.loads(path.read_text()))
    assert list(single.keys) == ["wm-2026-11"]


def _bpe(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<eos>", "<unk>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    return tok


def test_hf_logits_processor_marks_tiny_gpt2_generation_and_text_detection(request) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from distillguard.provenance.hf import WatermarkLogitsProcessor, generate_ids
    from distillguard.provenance.textgen import corpus

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads cost more than they give
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    tok = _bpe(corpus(300, seed=1), 400)
    other = _bpe(corpus(300, seed=2)[::-1], 350)
    vocab = tok.get_vocab_size()
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    params = with_tokenizer(WatermarkParams(context_width=1, delta=3.0), tok)
    ring = KeyRing([KA], params=params)
    prompts = [tok.encode("the").ids[:1]] * 6
    marked = generate_ids(model, prompts, 80, processor=WatermarkLogitsProcessor(ring), seed=1)
    plain = generate_ids(model, prompts, 80, seed=2)
    assert detect_ids(marked, ring).p_value < 1e-6
    assert detect_ids(plain, ring).p_value > 1e-3
    texts = [tok.decode(s) for s in marked]
    d = detect_text(texts, ring, tok)
    assert d.p_value < 1e-6 and d.key_id == "wm-a"
    with pytest.raises(ValueError, match="wrong tokenizer"):
        detect_text(texts, ring, other)
    with pytest.raises(ValueError, match="empty"):
        detect_text(["", "  "], ring, tok)
