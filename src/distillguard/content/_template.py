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

from distillguard.content._text import Tokens, hash_strings, mix64, tokenize

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
_SENT = r"^\s*(?P<s>[^.!?\n。！？]{1,400})"
_M = np.random.default_rng(20260422).integers(1, 2**63 - 1, size=(2, BANDS * ROWS), dtype=np.int64).astype(np.uint64)
_A = _M[0] | np.uint64(1)
_B = _M[1]
_BIT = np.uint64(1) << np.arange(64, dtype=np.uint64)


def skeleton(arr: pa.Array) -> pa.Array:
    """Prompt text with code blocks and quoted strings replaced by placeholders."""
    s = pc.replace_substring_regex(pc.fill_null(arr, ""), _CODE, " qcode ")
    return pc.replace_substring_regex(s, _QUOTE, " qquote ")


def _ends(tok: Tokens) -> Tokens:
    """Keep each row's first HEAD_TOKENS and last TAIL_TOKENS tokens."""
    pos = np.arange(len(tok.hashes)) - tok.offsets[:-1][tok.row] if len(tok.hashes) else np.zeros(0, np.int64)
    n = tok.lengths[tok.row] if len(tok.hashes) else np.zeros(0, np.int64)
    keep = (pos < HEAD_TOKENS) | (pos >= n - TAIL_TOKENS)
    counts = np.bincount(tok.row[keep], minlength=len(tok.offsets) - 1)
    return Tokens(tok.hashes[keep], np.concatenate([[0], np.cumsum(counts)]))


def _shingles(tok: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Word 3-shingles per row (a row with fewer than 3 tokens gets its tokens as shingles)."""
    h, row = tok.hashes, tok.row
    n = len(h)
    if n >= 3:
        ok = row[2:] == row[:-2]
        sh = mix64(mix64(h[:-2][ok], h[1:-1][ok]), h[2:][ok])
        sr = row[:-2][ok]
    else:
        sh, sr = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    short = tok.lengths[row] < 3 if n else np.zeros(0, bool)
    sh = np.concatenate([sh, h[short]])
    sr = np.concatenate([sr, row[short]])
    order = np.argsort(sr, kind="stable")
    return sh[order], sr[order]


def template_fingerprints(prompt: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(template_fp int64, template_bands list<int64>) per row; null where the prompt has no tokens."""
    tok = _ends(tokenize(skeleton(prompt)))
    sh, sr = _shingles(tok)
    nrows = len(tok.offsets) - 1
    counts = np.bincount(sr, minlength=nrows)
    has = counts > 0
    starts = (np.cumsum(counts) - counts)[has]
    fp = np.zeros(nrows, dtype=np.uint64)
    bands = np.zeros((nrows, BANDS), dtype=np.uint64)
    if sh.size:
        # reduceat along the contiguous axis: (64, n_shingles), counts fit uint8 (<= 56 shingles/row)
        bits = np.ascontiguousarray(np.unpackbits(sh.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").T)
        ones = np.add.reduceat(bits, starts, axis=1).T
        simhash = ((2 * ones > counts[has][:, None]).astype(np.uint64) * _BIT).sum(axis=1, dtype=np.uint64)
        fp[has] = simhash
        with np.errstate(over="ignore"):
            perm = _A[:, None] * sh[None, :] + _B[:, None]  # (BANDS*ROWS, n_shingles), universal hashing mod 2**64
        mins = np.minimum.reduceat(perm, starts, axis=1).T.reshape(-1, BANDS, ROWS)
        key = np.full(mins.shape[:2], np.uint64(0x243F6A8885A308D3))
        for r in range(ROWS):
            key = mix64(key, mins[:, :, r])
        bands[has] = mix64(key, np.arange(BANDS, dtype=np.uint64))
    fp_arr = pa.array(fp.view(np.int64), mask=~has)
    flat = pa.array(bands.view(np.int64).ravel())
    offs = pa.array(np.arange(0, nrows * BANDS + 1, BANDS, dtype=np.int32))
    band_arr = pa.ListArray.from_arrays(offs, flat, mask=pa.array(~has))
    return fp_arr, band_arr


def _norm_sentence(arr: pa.Array) -> pa.Array:
    s = pc.utf8_lower(arr)
    s = pc.replace_substring_regex(s, r"\d+", "0")
    s = pc.replace_substring_regex(s, r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_trim_whitespace(s)


def _hash_column(arr: pa.Array) -> pa.Array:
    enc = pc.dictionary_encode(arr)
    uniq = hash_strings([x or "" for x in enc.dictionary.to_pylist()])
    codes = np.asarray(enc.indices.fill_null(0), dtype=np.int64)
    valid = np.asarray(pc.and_(pc.is_valid(arr), pc.greater(pc.utf8_length(pc.fill_null(arr, "")), 0)))
    return pa.array(uniq[codes] if len(uniq) else np.zeros(len(arr), np.int64), mask=~valid)


def preamble_fp(system: pa.Array, prompt: pa.Array) -> pa.Array:
    """Hash of the normalised system prompt; else of a role-preamble first sentence; else null."""
    sys_norm = _norm_sentence(pc.utf8_slice_codeunits(pc.fill_null(system, ""), 0, 4000))
    head = pc.utf8_slice_codeunits(pc.fill_null(prompt, ""), 0, 600)
    is_role = pc.match_substring_regex(head, _ROLE, ignore_case=True)
    first = pc.struct_field(pc.extract_regex(head, _SENT), "s")
    first = pc.if_else(is_role, _norm_sentence(first), pa.scalar(None, pa.string()))
    sys_ok = pc.greater(pc.utf8_length(sys_norm), 0)
    chosen = pc.if_else(sys_ok, pc.binary_join_element_wise("sys:", sys_norm, ""), pc.binary_join_element_wise("pre:", first, ""))
    return _hash_column(chosen)
