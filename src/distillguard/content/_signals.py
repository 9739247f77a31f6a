"""The content stage: per-exchange signals over Arrow record batches, and its engine driver."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.content._cot import cot_scores, lexicon_hits
from distillguard.content._model import capability_model, cot_model, model_scores
from distillguard.content._template import preamble_fp, template_fingerprints
from distillguard.content._text import DEDUP_MAX_SHARE, DEDUP_MIN_ROWS, clip, interleave, take_rows, tokenize
from distillguard.contract import CAPABILITIES, SIGNALS
from distillguard.engines.base import Engine, portable_sql

__all__ = ["SAMPLE_SQL", "SELECT_SQL", "build_signals", "compute_signals"]

SELECT_SQL = portable_sql(
    "content.select_exchanges",
    "SELECT request_id, account_id, ts, system, prompt FROM exchanges WHERE ts <= CAST({as_of} AS TIMESTAMP)",
)
#: Deterministic per-account-per-day sample: keep an exchange when its rank by a hash of its
#: request_id, within (account, UTC day), is below the cap. Hash order is independent of content,
#: so the kept exchanges are a uniform random sample of each account-day.
SAMPLE_SQL = portable_sql(
    "content.select_exchanges_sampled",
    "SELECT request_id, account_id, ts, system, prompt FROM ("
    "SELECT request_id, account_id, ts, system, prompt, ROW_NUMBER() OVER ("
    "PARTITION BY account_id, CAST(ts AS DATE) ORDER BY hash(request_id), request_id) AS rn "
    "FROM exchanges WHERE ts <= CAST({as_of} AS TIMESTAMP)) AS t WHERE rn <= {cap}",
)


def _column(batch: pa.RecordBatch, name: str, typ: pa.DataType) -> pa.Array:
    i = batch.schema.get_field_index(name)
    if i < 0:
        return pa.nulls(batch.num_rows, typ)
    col = batch.column(i)
    return col.cast(typ) if col.type != typ and not (typ == pa.string() and col.type == pa.large_string()) else col


def _distinct_pairs(system: pa.Array, prompt: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct (system, prompt) pair, row -> pair index). Null and "" are
    different values here (each keeps its own code), so no two rows that could differ are merged."""
    p = pc.dictionary_encode(prompt, null_encoding="encode")
    q = pc.dictionary_encode(system, null_encoding="encode")
    key = (np.asarray(p.indices, dtype=np.int64) * np.int64(max(len(q.dictionary), 1))
           + np.asarray(q.indices, dtype=np.int64))
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return first, inv.ravel()


def compute_signals(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Content signals for a batch of exchanges; returns exactly ``SIGNALS.schema``.

    Needs ``request_id, account_id, ts, prompt``; ``system`` is optional; other columns are ignored.
    Pure and deterministic: the same rows give the same signals, in any batch split. The signals of
    a row depend only on its ``(system, prompt)``, so repeated pairs (retries, the same prompt sampled
    several times, fixed harness prompts: in simulated campaigns ~95% of exchanges) are computed once
    per batch and gathered.
    """
    n = batch.num_rows
    prompt = _column(batch, "prompt", pa.string())
    system = _column(batch, "system", pa.string())
    ids = [
        _column(batch, "request_id", pa.string()),
        _column(batch, "account_id", pa.string()),
        _column(batch, "ts", SIGNALS.schema.field("ts").type),
    ]
    if n >= DEDUP_MIN_ROWS:
        first, inv = _distinct_pairs(system, prompt)
        if len(first) <= DEDUP_MAX_SHARE * n:
            rows = pa.array(first.astype(np.int64))
            content = _content_columns(system.take(rows), prompt.take(rows))
            gather = pa.array(inv.astype(np.int64))
            return pa.RecordBatch.from_arrays(ids + [c.take(gather) for c in content], schema=SIGNALS.schema)
    return pa.RecordBatch.from_arrays(ids + _content_columns(system, prompt), schema=SIGNALS.schema)


def _content_columns(system: pa.Array, prompt: pa.Array) -> list[pa.Array]:
    """The content columns of ``SIGNALS`` (capability .. preamble_fp), one row per input row."""
    n = len(prompt)
    text = clip(prompt)
    text_tok = tokenize(text)
    # System prompts repeat: tokenise (and lexicon-match) each distinct one once, then expand to rows.
    sys_enc = pc.dictionary_encode(pc.fill_null(system, ""))
    sys_codes = np.asarray(sys_enc.indices, dtype=np.int64)
    sys_text = clip(sys_enc.dictionary, 600, 300)
    # one token stream serves both models: system + prompt, system first
    both = interleave(take_rows(tokenize(sys_text), sys_codes), text_tok)
    logits, _ = model_scores(both)
    # CoT coercion is judged per request on what the request itself says: a system prompt is the
    # deployment's configuration, one choice for all its traffic ("show your reasoning before the final
    # number" in an analytics app), not a per-request demand. Unambiguous trace-harvesting phrases in
    # the system prompt still count (lexicon below), and a preamble shared across accounts is evidence
    # of its own (SHARED_PREAMBLE).
    _, cot_logit = model_scores(text_tok)
    cap = capability_model()
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    best = prob.argmax(axis=1)
    labels = np.array(cap.classes, dtype=object)[best]
    conf = prob[np.arange(n), best]
    assert set(cap.classes) <= set(CAPABILITIES)
    sys_lex = lexicon_hits(sys_text)
    cot = cot_scores(cot_logit, text, extra_hits=sys_lex[sys_codes] if len(sys_lex) else None)
    fp, bands = template_fingerprints(text, text_tok)
    pre = preamble_fp(system, prompt)
    return [
        pa.array(labels.tolist(), pa.string()) if n else pa.array([], pa.string()),
        pa.array(conf, pa.float64()),
        pa.array(np.round(cot, 6), pa.float64()),
        fp,
        bands,
        pre,
    ]


def _sql_literal(as_of: Any) -> str:
    if as_of is None:
        return "'9999-12-31 23:59:59'"
    if isinstance(as_of, datetime):
        as_of = as_of.isoformat(sep=" ")
    s = str(as_of).replace("T", " ").rstrip("Z")
    if "'" in s:
        raise ValueError(f"bad as_of {as_of!r}")
    return f"'{s}'"


def _warm(_: int = 0) -> int:
    """Worker start-up: train (and cache) both models once per process."""
    capability_model()
    cot_model()
    return os.getpid()


class _Halves:
    """``compute_signals`` on two cores: the first half of each batch goes to a worker process
    while this process computes the second; the halves are concatenated in order. The output is
    identical to one call on the whole batch (``compute_signals`` is split-invariant)."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.num_rows < 2048:
            return compute_signals(batch)
        mid = batch.num_rows // 2
        fut = self.pool.submit(compute_signals, batch.slice(0, mid))
        second = compute_signals(batch.slice(mid))
        first = fut.result()
        return pa.Table.from_batches([first, second]).combine_chunks().to_batches()[0]


def build_signals(engine: Engine, *, as_of: Any = None, sample: int | None = None, workers: int = 1) -> int:
    """Write table ``signals`` from ``exchanges`` (rows with ``ts <= as_of``); return rows written.

    ``sample``: keep at most this many exchanges per account per UTC day, chosen by a hash of
    ``request_id`` (deterministic, uniform within each account-day; see docs/content.md).
    ``workers=2``: compute each batch on two cores (one helper process, started once per call;
    same output, same order). Worth it only when the second core is otherwise idle.
    """
    lit = _sql_literal(as_of)
    if sample is None:
        sql = SELECT_SQL.format(as_of=lit)
    else:
        if int(sample) < 1:
            raise ValueError("sample must be >= 1")
        sql = SAMPLE_SQL.format(as_of=lit, cap=int(sample))
    if workers <= 1:
        return engine.map_batches(sql, compute_signals, into="signals", schema=SIGNALS.schema, batch_rows=32_768)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        warm = pool.submit(_warm)
        _warm()
        warm.result()
        return engine.map_batches(sql, _Halves(pool), into="signals", schema=SIGNALS.schema, batch_rows=65_536)
