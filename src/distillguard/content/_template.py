"""Template and role-preamble fingerprints.

A campaign sends one wording (a template) around many different task contents. The *skeleton* of a
prompt is what stays: lower-cased, numbers to ``0``, punctuation gone, quoted strings and code
blocks replaced by a placeholder, and only its first ``HEAD_TOKENS`` and last ``TAIL_TOKENS`` tokens
(instructions and preambles sit at the ends; the task sits in the middle). Over word 3-shingles of
the skeleton we compute

* ``template_fp``: a 64-bit SimHash (near-identical skeletons differ in few bits);
* ``template_bands``: MinHash LSH keys, ``BANDS`` bands of ``ROWS`` minima each, the band index mixed
  in; two rows sharing any key are candidate template-mates (probability ``1-(1-J**ROWS)**BANDS`` for
  Jaccard ``J`` between their shingle sets).

``preamble_fp`` is an exact hash of the normalised system prompt, or, without one, of the first
sentence of a prompt that opens with a role preamble ("You are an expert ...", "Act as ...", and the
same in other languages).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.content._text import DEDUP_MAX_SHARE, DEDUP_MIN_ROWS, Tokens, hash_strings, mix64, tokenize

__all__ = ["BANDS", "HEAD_TOKENS", "ROWS", "TAIL_TOKENS", "preamble_fp", "skeleton", "template_fingerprints"]

HEAD_TOKENS = 32
TAIL_TOKENS = 24
BANDS = 12
ROWS = 2

_CODE = r"```[\s\S]*?```"
_QUOTE = r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|«[^»\n]{1,300}»|「[^」\n]{1,300}」"
_ROLE = (r"^\s*(you are|you're|act as|acting as|as an? |imagine you are|pretend (you are|to be)|i want you to act|"
         r"your role is|role:|system:|你是|作为|扮演|eres |actúa como|tu es |agis en tant|du bist|agiere als|ты |"
         r"представь|あなたは|당신은|너는|você é|atue como|sei un|je bent)")
_MARKS = "```|[\"“«「]"
_SENT = r"^\s*(?P<s>[^.!?\n。！？]{1,400})"
_M = np.random.default_rng(20260422).integers(1, 2**63 - 1, size=(2, BANDS * ROWS), dtype=np.int64).astype(np.uint64)
_A = _M[0] | np.uint64(1)
_B = _M[1]
_BIT = np.uint64(1) << np.arange(64, dtype=np.uint64)


def skeleton(arr: pa.Array) -> pa.Array:
    """Prompt text with code blocks and quoted strings replaced by placeholders."""
    s = pc.replace_substring_regex(pc.fill_null(arr, ""), _CODE, " qcode ")
    return pc.replace_substring_regex(s, _QUOTE, " qquote ")


_KEEP = HEAD_TOKENS + TAIL_TOKENS
_NSH = _KEEP - 2  # most shingles a row can have


def _ends_matrix(tok: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first HEAD_TOKENS and last TAIL_TOKENS tokens (all of a shorter row), padded into
    a (rows, HEAD_TOKENS + TAIL_TOKENS) matrix, and the number kept per row."""
    lens = tok.lengths
    k = np.minimum(lens, _KEEP)
    i = np.arange(_KEEP)[None, :]
    if len(tok.hashes) == 0:
        return np.zeros((len(lens), _KEEP), np.uint64), k
    long = (lens > _KEEP)[:, None] & (i >= HEAD_TOKENS)
    src = tok.offsets[:-1, None] + np.where(long, i + (lens - _KEEP)[:, None], i)
    src = np.where(i < k[:, None], src, 0)
    return tok.hashes[src], k


def _unique_rows(keep: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first index of each distinct (kept tokens, count) row, row -> distinct index), or None on a
    64-bit hash collision (then nothing is deduplicated). Exact: the rows are compared, not trusted."""
    h = mix64(k.astype(np.uint64), np.uint64(0x51))
    for j in range(keep.shape[1]):
        h = mix64(h, keep[:, j])
    _, idx, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    if not (np.array_equal(k[idx][inv], k) and np.array_equal(keep[idx][inv], keep)):
        return None
    return idx, inv


def _fingerprints(keep: np.ndarray, k: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """:func:`_fingerprints_rows` once per distinct row: templates repeat, so within a batch most
    rows' kept tokens (head and tail of the skeleton) are another row's (on seed-2026 ~80%); their
    fingerprints are computed once and gathered. Same output (the function is row-wise)."""
    n = len(k)
    if n >= DEDUP_MIN_ROWS:
        u = _unique_rows(keep, k)
        if u is not None and len(u[0]) <= DEDUP_MAX_SHARE * n:
            idx, inv = u
            fp, bands = _fingerprints_rows(keep[idx], k[idx])
            take = pa.array(inv.astype(np.int64))
            return fp.take(take), bands.take(take)
    return _fingerprints_rows(keep, k)


def _fingerprints_rows(keep: np.ndarray, k: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """SimHash and MinHash-LSH keys over the word 3-shingles of the kept tokens (a row with fewer
    than 3 tokens gets its tokens as shingles); rows without tokens are null."""
    nrows = len(k)
    sh = mix64(mix64(keep[:, :-2], keep[:, 1:-1]), keep[:, 2:])  # (rows, _NSH)
    short = k < 3
    sh[short, :2] = keep[short, :2]
    nsh = np.where(short, k, k - 2)
    valid = np.arange(_NSH)[None, :] < nsh[:, None]
    has = nsh > 0
    # SimHash: per bit, count the shingles with it set, majority vote. MinHash: 24 minima.
    fp = np.zeros(nrows, dtype=np.uint64)
    mins = np.empty((nrows, BANDS * ROWS), dtype=np.uint64)
    # Padded shingles: 0 for SimHash (no bits set), the row's first shingle for MinHash (a repeat
    # cannot change a minimum). Both as (_NSH, rows) blocks small enough to stay in cache.
    shz = np.where(valid, sh, np.uint64(0)).T
    shm = np.where(valid, sh, sh[:, :1]).T
    step = 2048
    with np.errstate(over="ignore"):
        for lo in range(0, nrows, step):
            hi = min(lo + step, nrows)
            z = np.ascontiguousarray(shz[:, lo:hi])
            t = np.empty_like(z)
            # SimHash, bit-sliced: bit j of every byte, summed in uint64 lanes (a lane's count <= _NSH)
            lanes = np.empty((hi - lo, 8), dtype=np.uint64)
            for j in range(8):
                np.right_shift(z, np.uint64(j), out=t)
                np.bitwise_and(t, np.uint64(0x0101010101010101), out=t)
                lanes[:, j] = t.sum(axis=0, dtype=np.uint64)
            ones = lanes.view(np.uint8).reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 64)  # bit 8*byte + j
            vote = 2 * ones.astype(np.int16) > nsh[lo:hi, None]
            fp[lo:hi] = np.packbits(vote, axis=1, bitorder="little").view(np.uint64)[:, 0]
            m = np.ascontiguousarray(shm[:, lo:hi])
            for f in range(BANDS * ROWS):
                np.multiply(m, _A[f], out=t)
                np.add(t, _B[f], out=t)
                mins[lo:hi, f] = np.minimum.reduce(t, axis=0)
    mins = mins.reshape(-1, BANDS, ROWS)
    key = np.full(mins.shape[:2], np.uint64(0x243F6A8885A308D3))
    for r in range(ROWS):
        key = mix64(key, mins[:, :, r])
    bands = mix64(key, np.arange(BANDS, dtype=np.uint64))
    fp_arr = pa.array(fp.view(np.int64), mask=~has)
    flat = pa.array(bands.view(np.int64).ravel())
    offs = pa.array(np.arange(0, nrows * BANDS + 1, BANDS, dtype=np.int32))
    band_arr = pa.ListArray.from_arrays(offs, flat, mask=pa.array(~has))
    return fp_arr, band_arr


def template_fingerprints(prompt: pa.Array, tokens: Tokens | None = None) -> tuple[pa.Array, pa.Array]:
    """(template_fp int64, template_bands list<int64>) per row; null where the prompt has no tokens.

    ``tokens``, if given, must be ``tokenize(prompt)``: rows whose skeleton equals their text (no
    code block, no quoted string) reuse them, and only the other rows' skeletons are tokenised.
    """
    if tokens is None:
        keep, k = _ends_matrix(tokenize(skeleton(prompt)))
    else:
        keep, k = _ends_matrix(tokens)
        # Only rows holding a quote character or a code fence can have a different skeleton.
        cand = np.flatnonzero(np.asarray(pc.fill_null(pc.match_substring_regex(prompt, _MARKS), False), dtype=bool))
        if cand.size:
            sub = prompt.take(pa.array(cand))
            sk = skeleton(sub)
            idx = cand[np.asarray(pc.not_equal(sk, sub), dtype=bool)]
            if idx.size:
                keep_c, k_c = _ends_matrix(tokenize(sk.take(pa.array(np.flatnonzero(np.isin(cand, idx))))))
                keep[idx], k[idx] = keep_c, k_c
    return _fingerprints(keep, k)


def _norm_sentence(arr: pa.Array) -> pa.Array:
    s = pc.utf8_lower(arr)
    s = pc.replace_substring_regex(s, r"\d+", "0")
    s = pc.replace_substring_regex(s, r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_trim_whitespace(s)


def _first_sentence(head: pa.Array) -> pa.Array:
    """``^\\s*([^.!?\\n。！？]{1,400})`` without a regex capture (RE2 extraction is slow): strip the
    leading ASCII whitespace, cut at the first terminator, keep 400 characters; null if empty.
    Same result as the regex on every text that starts with a role preamble (the only ones used)."""
    lead = pc.utf8_ltrim(head, " \t\n\r\f")
    first = pc.list_element(pc.split_pattern_regex(lead, "[.!?\n。！？]", max_splits=1), 0)
    first = pc.utf8_slice_codeunits(first, 0, 400)
    return pc.if_else(pc.equal(first, ""), pa.scalar(None, pa.string()), first)


def preamble_fp(system: pa.Array, prompt: pa.Array) -> pa.Array:
    """Hash of the normalised system prompt; else of a role-preamble first sentence; else null.

    System prompts repeat (a deployment has a handful), so they are normalised and hashed once per
    distinct value; the first sentence is extracted only from prompts that open with a role.
    """
    n = len(prompt)
    enc = pc.dictionary_encode(pc.fill_null(system, ""))
    sys_norm = _norm_sentence(pc.utf8_slice_codeunits(enc.dictionary, 0, 4000))
    sys_ok = np.asarray(pc.greater(pc.utf8_length(sys_norm), 0), dtype=bool)
    sys_h = hash_strings([f"sys:{x}" for x in sys_norm.to_pylist()])
    codes = np.asarray(enc.indices, dtype=np.int64)
    out = sys_h[codes] if len(sys_h) else np.zeros(n, np.int64)
    valid = sys_ok[codes] if len(sys_h) else np.zeros(n, bool)
    head = pc.utf8_slice_codeunits(pc.fill_null(prompt, ""), 0, 600)
    is_role = np.asarray(pc.match_substring_regex(head, _ROLE, ignore_case=True), dtype=bool)
    role = np.flatnonzero(is_role & ~valid)
    if role.size:
        first = _norm_sentence(_first_sentence(head.take(pa.array(role))))
        ok = np.asarray(pc.is_valid(first), dtype=bool)
        pre = hash_strings(["pre:" + x for x in first.filter(pa.array(ok)).to_pylist()])
        out[role[ok]] = pre
        valid[role[ok]] = True
    return pa.array(out, pa.int64(), mask=~valid)
