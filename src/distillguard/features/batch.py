"""Batch mode: every declared feature for every account as of one time, in one scan of the log.

``build_features(engine)`` writes ``account_features`` (account_id, as_of, one column per feature,
then the account attributes). Steps, each one portable SQL statement (DuckDB now, Spark later):

1. ``feature_model_context``: per model its ceiling (largest max_tokens) and first-seen time;
2. ``feature_shared_fps``: template / preamble fingerprints used by > SHARED_MIN_OTHERS accounts;
3. ``account_features``: exchanges ⟕ signals ⟕ accounts ⟕ the two small tables, the account's
   previous request (``lag``), every input once, then one GROUP BY account_id in which each window
   is a ``CASE WHEN`` mask on the hour bucket, then each op's finalize expression.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from distillguard.engines import Engine, portable_sql
from distillguard.features.account import ATTRIBUTES, FEATURES, HOUR_US, SHARED_MIN_OTHERS
from distillguard.features.spec import Feature

__all__ = ["build_features", "feature_columns", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SQL = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"


def to_us(ts: datetime | str) -> int:
    """Microseconds since the Unix epoch (naive datetimes are UTC)."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def feature_columns(features: list[Feature] = FEATURES) -> list[str]:
    """The feature columns of ``account_features``, in order (without account_id, as_of, attributes)."""
    return [c for f in features for c in f.columns]


MODEL_CONTEXT_SQL = portable_sql(
    "features.model_context",
    f"""SELECT model, max(max_tokens) AS ceiling,
       min(date_diff('microsecond', {_EPOCH_SQL}, ts)) AS first_us
FROM exchanges WHERE ts <= TIMESTAMPTZ '{{as_of}}' GROUP BY model""",
)

SHARED_FPS_SQL = portable_sql(
    "features.shared_fps",
    f"""SELECT 'template' AS kind, template_fp AS fp, count(DISTINCT account_id) AS n_accounts
FROM signals WHERE ts <= TIMESTAMPTZ '{{as_of}}' AND template_fp IS NOT NULL
GROUP BY template_fp HAVING count(DISTINCT account_id) > {SHARED_MIN_OTHERS}
UNION ALL
SELECT 'preamble' AS kind, preamble_fp AS fp, count(DISTINCT account_id) AS n_accounts
FROM signals WHERE ts <= TIMESTAMPTZ '{{as_of}}' AND preamble_fp IS NOT NULL
GROUP BY preamble_fp HAVING count(DISTINCT account_id) > {SHARED_MIN_OTHERS}""",
)

EMPTY_SHARED_FPS_SQL = portable_sql(
    "features.shared_fps_empty",
    "SELECT CAST(NULL AS VARCHAR) AS kind, CAST(NULL AS BIGINT) AS fp, CAST(NULL AS BIGINT) AS n_accounts "
    "WHERE 1 = 0",
)

_SIGNAL_COLS = {"capability": "VARCHAR", "cot_score": "DOUBLE", "template_fp": "BIGINT", "preamble_fp": "BIGINT"}
_EXCHANGE_COLS = ("client_ip", "user_agent", "model", "conversation_id", "turn_index", "n_tools", "thinking",
                  "max_tokens", "input_tokens", "output_tokens")


def features_sql(with_signals: bool, features: list[Feature] = FEATURES) -> str:
    """The statement that computes ``account_features`` (placeholders: as_of, as_of_hb, log_start_us)."""
    if with_signals:
        sig = ", ".join(f"s.{c}" for c in _SIGNAL_COLS)
        join = "LEFT JOIN signals s ON s.request_id = e.request_id"
    else:
        sig = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in _SIGNAL_COLS.items())
        join = ""
    inputs: dict[str, str] = {}
    for f in features:
        i = f.input
        inputs[i.name] = "NULL" if (i.needs_signals and not with_signals) else i.sql
    sel_inputs = ", ".join(f"({sql}) AS i_{name}" for name, sql in inputs.items())
    partials: list[str] = []
    finals: list[str] = []
    for f in features:
        for w in f.windows:
            x = f"i_{f.input.name}"
            if w.hours is not None:
                x = f"CASE WHEN hb > {{as_of_hb}} - {w.hours} THEN {x} END"
            cols = []
            for p in f.op.sql_partials(x):
                cols.append(f"p{len(partials)}")
                partials.append(f"{p} AS {cols[-1]}")
            finals.append(f"{f.op.sql_finalize(cols)} AS {f.column(w)}")
    attrs = ", ".join(f"a.{c} AS {c}" for c in ATTRIBUTES)
    sep1, sep2 = ",\n    ", ",\n  "
    partials_sql, finals_sql = sep1.join(partials), sep2.join(finals)
    return f"""WITH x AS (
  SELECT e.account_id, date_diff('microsecond', {_EPOCH_SQL}, e.ts) AS t_us,
    {", ".join(f"e.{c}" for c in _EXCHANGE_COLS)}, {sig}
  FROM exchanges e {join}
  WHERE e.ts <= TIMESTAMPTZ '{{as_of}}'
), p AS (
  SELECT x.*,
    t_us - lag(t_us) OVER (PARTITION BY x.account_id ORDER BY t_us) AS gap_us,
    t_us // {HOUR_US} AS hb,
    date_diff('microsecond', {_EPOCH_SQL}, a.created_at) AS created_us,
    m.ceiling AS model_ceiling, m.first_us AS model_first_us, {{log_start_us}} AS log_start_us,
    CASE WHEN x.template_fp IS NOT NULL THEN st.fp IS NOT NULL END AS template_shared,
    CASE WHEN x.preamble_fp IS NOT NULL THEN sp.fp IS NOT NULL END AS preamble_shared
  FROM x
  LEFT JOIN accounts a ON a.account_id = x.account_id
  LEFT JOIN feature_model_context m ON m.model = x.model
  LEFT JOIN feature_shared_fps st ON st.kind = 'template' AND st.fp = x.template_fp
  LEFT JOIN feature_shared_fps sp ON sp.kind = 'preamble' AND sp.fp = x.preamble_fp
), i AS (
  SELECT account_id, hb,
    {sel_inputs}
  FROM p
), g AS (
  SELECT account_id,
    {partials_sql}
  FROM i GROUP BY account_id
)
SELECT g.account_id, TIMESTAMPTZ '{{as_of}}' AS as_of,
  {finals_sql},
  {attrs}
FROM g LEFT JOIN accounts a ON a.account_id = g.account_id"""


FEATURES_SQL = portable_sql("features.account_features", features_sql(True))
FEATURES_NOSIG_SQL = portable_sql("features.account_features_nosignals", features_sql(False))


def _ts_literal(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat(sep=" ")


def build_features(engine: Engine, *, as_of: datetime | str | None = None) -> int:
    """Write ``account_features`` for every account active up to ``as_of`` (default: the log's last
    ts); return the number of accounts. Without a ``signals`` table the content features are null."""
    if as_of is None:
        top = engine.query("SELECT max(ts) AS m FROM exchanges").column("m")[0].as_py()
        if top is None:
            raise ValueError("exchanges is empty: nothing to compute features from")
        as_of = top
    as_of_us = to_us(as_of)
    params: dict[str, Any] = {"as_of": _ts_literal(as_of_us), "as_of_hb": as_of_us // HOUR_US}
    engine.create_table_as("feature_model_context", MODEL_CONTEXT_SQL.format(**params))
    with_signals = engine.has_table("signals")
    engine.create_table_as("feature_shared_fps", (SHARED_FPS_SQL if with_signals else EMPTY_SHARED_FPS_SQL).format(**params))
    start = engine.query("SELECT min(first_us) AS s FROM feature_model_context").column("s")[0].as_py()
    params["log_start_us"] = start if start is not None else 0
    engine.create_table_as("account_features", (FEATURES_SQL if with_signals else FEATURES_NOSIG_SQL).format(**params))
    return engine.query("SELECT count(*) AS n FROM account_features").column("n")[0].as_py()
