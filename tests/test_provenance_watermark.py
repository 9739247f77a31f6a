"""Watermark: generation marks, detection finds, keys are told apart, p-values are honest on
never-watermarked text (10k+ texts, with and without repetition), bad input is refused clearly, and
the vectorised seed derivation is SipHash-2-4 exactly (reference test vectors)."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pytest
from scipy.stats import binom

from distillguard.provenance import watermark as wm
from distillguard.provenance.keys import WatermarkKey, generate_key, load_key, save_key
from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.watermark import (
    DetectionBatch,
    KeyRing,
    UnknownKeyError,
    Watermarker,
    WatermarkParams,
    context_seeds,
    detect_ids,
    detect_many,
    detect_pairs,
    detect_text,
    green_mask,
    is_green,
    siphash24_rows,
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


@pytest.fixture(scope="module", params=[1, 2], ids=["width1", "width2"])
def null_detected(null_texts, request) -> tuple[KeyRing, DetectionBatch, DetectionBatch]:
    """The 12k null texts through the detector once per context width (de-duplicated), and the
    repetitive ones without."""
    texts, kind = null_texts
    ring = KeyRing([KA], params=WatermarkParams(context_width=request.param, gamma=0.25))
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


# SipHash-2-4 reference vectors (Aumasson & Bernstein, reference implementation ``vectors.h``,
# ``vectors_sip64``): key 00 01 .. 0f, message 00 01 .. (i-1) for i = 0..63, output bytes as printed
# (little-endian u64).
SIP64_VECTORS = [
    "310e0edd47db6f72", "fd67dc93c539f874", "5a4fa9d909806c0d", "2d7efbd796666785", "b7877127e09427cf", "8da699cd64557618",
    "cee3fe586e46c9cb", "37d1018bf50002ab", "6224939a79f5f593", "b0e4a90bdf82009e", "f3b9dd94c5bb5d7a", "a7ad6b22462fb3f4",
    "fbe50e86bc8f1e75", "903d84c02756ea14", "eef27a8e90ca23f7", "e545be4961ca29a1", "db9bc2577fcc2a3f", "9447be2cf5e99a69",
    "9cd38d96f0b3c14b", "bd6179a71dc96dbb", "98eea21af25cd6be", "c7673b2eb0cbf2d0", "883ea3e395675393", "c8ce5ccd8c030ca8",
    "94af49f6c650adb8", "eab8858ade92e1bc", "f315bb5bb835d817", "adcf6b0763612e2f", "a5c91da7acaa4dde", "716595876650a2a6",
    "28ef495c53a387ad", "42c341d8fa92d832", "ce7cf2722f512771", "e37859f94623f3a7", "381205bb1ab0e012", "ae97a10fd434e015",
    "b4a31508beff4d31", "81396229f0907902", "4d0cf49ee5d4dcca", "5c73336a76d8bf9a", "d0a704536ba93e0e", "925958fcd6420cad",
    "a915c29bc8067318", "952b79f3bc0aa6d4", "f21df2e41d4535f9", "87577519048f53a9", "10a56cf5dfcd9adb", "eb75095ccd986cd0",
    "51a9cb9ecba312e6", "96afadfc2ce666c7", "72fe52975a4364ee", "5a1645b276d592a1", "b274cb8ebf87870a", "6f9bb4203de7b381",
    "eaecb2a30b22a87f", "9924a43cc1315724", "bd838d3aafbf8db7", "0b1a2a3265d51aea", "135079a3231ce660", "932b2846e4d70666",
    "e1915f5cb1eca46c", "f325965ca16d629f", "575ff28e60381be5", "724506eb4c328a95",
]


def _siphash24_scalar(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 written from the paper, one message at a time (the independent reference)."""
    mask = (1 << 64) - 1

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & mask

    def rounds(v: list[int], n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & mask
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & mask
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & mask
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & mask
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    full = len(msg) - len(msg) % 8
    blocks = [int.from_bytes(msg[i:i + 8], "little") for i in range(0, full, 8)]
    blocks.append(int.from_bytes(msg[full:], "little") | (len(msg) & 0xFF) << 56)
    for m in blocks:
        v[3] ^= m
        rounds(v, 2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(v, 4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_scalar_siphash_reference_matches_the_published_vectors() -> None:
    key = bytes(range(16))
    assert len(SIP64_VECTORS) == 64
    got = [_siphash24_scalar(key, bytes(range(i))).to_bytes(8, "little").hex() for i in range(64)]
    assert got == SIP64_VECTORS
    assert _siphash24_scalar(key, bytes(range(15))) == 0xA129CA6149BE45E5  # the paper's worked example


def test_numpy_siphash_matches_the_published_vectors_and_the_reference_at_every_width() -> None:
    key = bytes(range(16))
    for w in range(16):  # messages of 4w bytes: every published vector whose length the contexts can take
        msg = np.frombuffer(bytes(range(4 * w)), dtype="<u4").reshape(1, w)
        many = np.repeat(msg, wm._SIP_SCALAR_MAX + 1, axis=0)  # the vectorised path, not the few-rows one
        for got in (siphash24_rows(key, msg)[0], siphash24_rows(key, many)[-1]):
            assert int(got).to_bytes(8, "little").hex() == SIP64_VECTORS[4 * w], w
    rng = np.random.default_rng(11)
    for w in range(1, 9):
        k = rng.bytes(16)
        rows = rng.integers(0, 2**32, size=(300, w), dtype=np.uint64).astype(np.int64)
        rows[0] = 0
        rows[1] = 2**32 - 1  # every bit of every id set: the top half of the words
        want = [_siphash24_scalar(k, r.astype("<u4").tobytes()) for r in rows]
        assert siphash24_rows(k, rows).tolist() == want, w
        assert siphash24_rows(k, rows[:3]).tolist() == want[:3], w  # a generation step's few rows
    # more rows than one vectorised chunk, and ids that wrap to uint32 like the message encoding says
    rows = rng.integers(-(2**33), 2**33, size=(wm._SIP_CHUNK + 7, 3))
    got = siphash24_rows(key, rows)
    for i in (0, wm._SIP_CHUNK - 1, wm._SIP_CHUNK, len(rows) - 1):
        assert int(got[i]) == _siphash24_scalar(key, (rows[i] % 2**32).astype("<u4").tobytes())
    with pytest.raises(ValueError, match="16-byte"):
        siphash24_rows(b"short", rows)


def test_context_seeds_are_siphash_under_a_subkey_derived_once_per_key(monkeypatch) -> None:
    ctx = np.random.default_rng(12).integers(0, 50_000, size=(2000, 2))
    sub = hmac.digest(KA.secret, b"distillguard/kgw/v2/siphash-2-4", "sha256")[:16]
    seeds = context_seeds(KA, ctx)
    assert [int(seeds[i]) for i in (0, 1, 1999)] == [
        _siphash24_scalar(sub, ctx[i].astype("<u4").tobytes()) for i in (0, 1, 1999)]
    assert len(np.unique(seeds)) == 2000 and (context_seeds(KB, ctx) != seeds).all()
    assert (context_seeds(KA, ctx[:, :1]) != context_seeds(KA, np.column_stack([ctx[:, :1], ctx[:, :1] * 0])))\
        .all()  # the message length is hashed: (a) and (a, 0) are different contexts
    # the secret enters through one HMAC per key and call, never one per context (the old 2-3 us each)
    calls = []
    real = wm.hmac.digest
    monkeypatch.setattr(wm.hmac, "digest", lambda *a: calls.append(1) or real(*a))
    ids = np.random.default_rng(13).integers(0, 50_000, size=30_000)
    detect_ids(ids, KeyRing([KA, KB], params=WatermarkParams(context_width=2)))
    assert len(calls) == 2


def _naive_counts(rows: np.ndarray, key: WatermarkKey, gamma: float, dedup: bool) -> tuple[int, int]:
    """Scored pairs and green count the obvious way: a Python set of row tuples, and the per-pair
    membership ``is_green`` (one seed per row: no sorting, no seed reuse)."""
    pairs = list({tuple(r): None for r in rows.tolist()}) if dedup else [tuple(r) for r in rows.tolist()]
    arr = np.array(pairs, dtype=np.int64).reshape(len(pairs), rows.shape[1])
    return len(pairs), int(is_green(key, arr[:, :-1], arr[:, -1], gamma).sum())


@pytest.mark.parametrize("w", [1, 2, 4, 6])
def test_fast_detection_counts_what_the_naive_count_does(w: int) -> None:
    """De-duplication by packed sort keys and seed reuse across sorted contexts change nothing: the
    same pairs are scored and the same ones are green as with a set of tuples and one lookup per pair.
    Width 4 and 6 over a 50k vocabulary need several packed words per row (the rank-folding path)."""
    rng = np.random.default_rng(20 + w)
    ring = KeyRing([KA, KB], params=WatermarkParams(context_width=w))
    phrase = rng.integers(0, 50_000, size=40)
    texts = [np.concatenate([np.tile(phrase, 5), rng.integers(0, 50_000, size=60), phrase]),
             rng.integers(0, 7, size=400), rng.integers(0, 50_000, size=300)]  # repeats, few ids, all new
    for ids in texts:
        rows = np.lib.stride_tricks.sliding_window_view(ids, w + 1)
        for dedup in (True, False):
            d = detect_ids(ids, ring, dedup=dedup)
            for key in (KA, KB):
                n, g = _naive_counts(rows, key, 0.25, dedup)
                assert d.tokens_scored == n
                assert round(d.p_per_key[key.key_id], 12) == round(float(wm.binomial_p(g, n, 0.25)), 12)
            assert detect_pairs(rows[::-1], ring, dedup=dedup).p_per_key == d.p_per_key  # order is irrelevant
    texts += [rng.integers(0, 50_000, size=w), np.array([], dtype=np.int64)]  # nothing to score in these
    batch = detect_many(texts, ring)
    for i, ids in enumerate(texts):
        rows = np.lib.stride_tricks.sliding_window_view(ids, w + 1) if len(ids) > w else np.empty((0, w + 1))
        assert batch.tokens_total[i] == len(ids)
        assert batch.green[i].tolist() == [_naive_counts(rows, k, 0.25, True)[1] for k in (KA, KB)]
        assert batch.tokens_scored[i] == (detect_ids(ids, ring).tokens_scored if len(ids) > w else 0)
    assert batch.p_value[-2:].tolist() == [1.0, 1.0]
    # pooled: windows never cross from one text into the next
    pooled = detect_ids(texts, ring)
    rows = np.concatenate([np.lib.stride_tricks.sliding_window_view(t, w + 1) for t in texts[:3]])
    assert pooled.tokens_total == sum(map(len, texts))
    assert (pooled.tokens_scored, pooled.green) == _naive_counts(rows, KB if pooled.key_id == "wm-b" else KA, 0.25, True)
    with pytest.raises(ValueError, match="sequence 2: token ids outside"):
        detect_many([texts[0], texts[1], [1, -1, 2]], ring)
    with pytest.raises(ValueError, match="sequence 1: token ids outside"):
        detect_ids([texts[0], [5, -3, 9, 9, 9, 9, 9, 9]], ring)


def test_distinct_rows_equal_numpy_unique_rows() -> None:
    rng = np.random.default_rng(30)
    for trial in range(200):
        n, c = int(rng.integers(0, 300)), int(rng.integers(2, 10))
        hi = int(rng.choice([2, 50, 50_257, 2**31, 2**40, 2**62]))
        a = rng.integers(-3 if trial % 5 == 0 else 0, hi, size=(n, c))
        if n > 3:
            a = np.concatenate([a, a[rng.integers(0, n, size=n)]])  # repeats
        want = np.unique(a, axis=0) if len(a) else a
        got = wm._distinct_rows(a)
        assert got.shape == want.shape and (got == want).all(), (trial, n, c, hi)


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
