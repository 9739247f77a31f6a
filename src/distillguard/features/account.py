"""The account behaviour features, declared once (see :mod:`distillguard.features.spec`).

Each input reads the *prepared exchange*: the exchange's own fields, its ``signals`` row (capability,
cot_score, template_fp, preamble_fp; null when missing), its account (``created_us``) and a few
derived fields that batch and online prepare the same way (see ``PREPARED`` below).
``docs/features.md`` says why each feature is there and what benign traffic looks like it.
"""

from __future__ import annotations

import re
from typing import Any

from distillguard.contract import CAPABILITIES
from distillguard.features.spec import (
    ALL,
    REQUEST,
    Burstiness,
    Count,
    DistinctCount,
    DistinctRatio,
    Entropy,
    Feature,
    GapCV,
    Input,
    Mean,
    Min,
    Share,
    ShareLowerBound,
    TopShare,
    days,
    hours,
)

__all__ = ["ATTRIBUTES", "FEATURES", "INPUTS", "PREPARED", "SHARED_MIN_OTHERS", "TARGET_CAPABILITIES", "ip_block"]

#: Fields of the prepared exchange (besides the exchange and signals fields):
PREPARED = {
    "t_us": "microseconds since the Unix epoch of ts",
    "gap_us": "t_us minus the account's previous t_us (null for its first request)",
    "created_us": "the account's created_at in microseconds (null: account unknown)",
    "model_ceiling": "largest max_tokens seen for the model (the model's ceiling)",
    "model_first_us": "when the model was first seen in the log",
    "log_start_us": "when the log starts (first exchange)",
    "template_shared": "template_fp is used by at least SHARED_MIN_OTHERS other accounts (null: no fp)",
    "preamble_shared": "the same for preamble_fp",
}

#: A fingerprint is "shared" when at least this many *other* accounts use it.
SHARED_MIN_OTHERS = 3
#: Capability classes distillation campaigns concentrate on.
TARGET_CAPABILITIES = ("agentic", "coding", "planning")
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
#: A model is "new" when first seen at least this long after the log starts (older ones pre-date it).
NEW_MODEL_GRACE_US = DAY_US
#: A request "pivots" when it hits a new model within this long of the model's first sighting.
PIVOT_US = 2 * DAY_US


def _nn(*vals: Any) -> bool:
    return all(v is not None for v in vals)


def ip_block(ip: str | None) -> str | None:
    """The network block an address belongs to, as the ``ip_block`` feature and the online hydra rule
    read it: IPv4 /24 (``"198.51.100"``), IPv6 /48 (first three groups); None for None.

    >>> ip_block("198.51.100.7"), ip_block("2001:db8:1::5"), ip_block(None)
    ('198.51.100', '2001:db8:1', None)
    """
    if ip is None:
        return None
    if ":" in ip:  # IPv6 /48
        m = re.match(r"^([^:]*:[^:]*:[^:]*)", ip)
        return m.group(1) if m else ""
    dot = ip.rfind(".")
    return ip[:dot] if dot >= 0 else ip  # IPv4 /24


_ip_block = ip_block  # the old private name, kept for callers outside the package


def _single_turn(r: dict) -> int:
    ti = r.get("turn_index")
    if ti is None or ti == 0:
        return 1
    return -1 if ti == 1 and r.get("conversation_id") is not None else 0


def _new_model(r: dict) -> bool:
    return r["model_first_us"] >= r["log_start_us"] + NEW_MODEL_GRACE_US


_CAT_SQL = ", ".join(f"'{c}'" for c in TARGET_CAPABILITIES)
_NEW_SQL = f"model_first_us >= log_start_us + {NEW_MODEL_GRACE_US}"

# --- inputs: one per-exchange value each, as SQL and as Python -----------------------------------
ACTIVE_HOUR = Input("active_hour", f"t_us // {HOUR_US}", lambda r: r["t_us"] // HOUR_US, "clock hour bucket")
ACTIVE_DAY = Input("active_day", f"t_us // {DAY_US}", lambda r: r["t_us"] // DAY_US, "UTC day bucket")
GAP = Input("gap_s", "gap_us / 1000000.0", lambda r: None if r["gap_us"] is None else r["gap_us"] / 1000000.0,
            "seconds since the account's previous request")
HOUR_OF_DAY = Input("hour_of_day", f"(t_us // {HOUR_US}) % 24", lambda r: (r["t_us"] // HOUR_US) % 24, "UTC hour")
NIGHT = Input("night", f"(t_us // {HOUR_US}) % 24 < 6", lambda r: (r["t_us"] // HOUR_US) % 24 < 6, "00-06 UTC")
WEEKDAY = Input("weekday", f"(t_us // {DAY_US} + 3) % 7", lambda r: (r["t_us"] // DAY_US + 3) % 7, "Monday = 0")
SINGLE_TURN = Input(
    "single_turn",
    "CASE WHEN turn_index IS NULL OR turn_index = 0 THEN 1 "
    "WHEN turn_index = 1 AND conversation_id IS NOT NULL THEN -1 ELSE 0 END",
    _single_turn,
    "+1 per first turn, -1 per second turn: sums to the number of one-turn conversations",
)
AT_CEILING = Input(
    "max_tokens_at_ceiling",
    "max_tokens >= 0.95 * model_ceiling",
    lambda r: r["max_tokens"] >= 0.95 * r["model_ceiling"] if _nn(r["max_tokens"], r["model_ceiling"]) else None,
    "max_tokens within 5% of the model's ceiling",
)
OUT_IN = Input(
    "out_in_ratio",
    "CASE WHEN input_tokens IS NOT NULL THEN CAST(output_tokens AS DOUBLE) / greatest(input_tokens, 1) END",
    lambda r: r["output_tokens"] / max(r["input_tokens"], 1) if _nn(r["output_tokens"], r["input_tokens"]) else None,
    "output tokens per input token",
)
THINKING = Input("thinking", "thinking", lambda r: r["thinking"], "extended reasoning requested")
N_TOOLS = Input("n_tools", "n_tools", lambda r: r["n_tools"], "tool definitions sent")
CAPABILITY = Input("capability", "capability", lambda r: r["capability"], "content class", needs_signals=True)
TARGET = Input(
    "target_capability",
    f"capability IN ({_CAT_SQL})",
    lambda r: None if r["capability"] is None else r["capability"] in TARGET_CAPABILITIES,
    "capability is agentic, coding or planning",
    needs_signals=True,
)
GRADER_REWRITE = Input(
    "grader_rewrite",
    "capability IN ('grader', 'censorship_rewrite')",
    lambda r: None if r["capability"] is None else r["capability"] in ("grader", "censorship_rewrite"),
    "the model used as a grader/reward model or to rewrite answers",
    needs_signals=True,
)
COT = Input("cot_score", "cot_score", lambda r: r["cot_score"], "CoT-elicitation score", needs_signals=True)
COT_ELICIT = Input(
    "cot_elicit",
    "cot_score >= 0.5",
    lambda r: None if r["cot_score"] is None else r["cot_score"] >= 0.5,
    "prompt coerces a reasoning trace",
    needs_signals=True,
)
TEMPLATE = Input("template_fp", "template_fp", lambda r: r["template_fp"], "prompt skeleton", needs_signals=True)
SHARED_TEMPLATE = Input("shared_template", "template_shared", lambda r: r["template_shared"],
                        "template used by >= 3 other accounts", needs_signals=True)
SHARED_PREAMBLE = Input("shared_preamble", "preamble_shared", lambda r: r["preamble_shared"],
                        "system preamble used by >= 3 other accounts", needs_signals=True)
CLIENT_IP = Input("client_ip", "client_ip", lambda r: r["client_ip"], "client address")
IP_BLOCK = Input(
    "ip_block",
    "CASE WHEN strpos(client_ip, ':') > 0 THEN regexp_extract(client_ip, '^([^:]*:[^:]*:[^:]*)', 1) "
    "ELSE left(client_ip, length(client_ip) - strpos(reverse(client_ip), '.')) END",
    lambda r: ip_block(r["client_ip"]),
    "IPv4 /24 or IPv6 /48",
)
USER_AGENT = Input("user_agent", "user_agent", lambda r: r["user_agent"], "client user agent")
AGE = Input(
    "age_at_use_h",
    "(t_us - created_us) / 3600000000.0",
    lambda r: None if r["created_us"] is None else (r["t_us"] - r["created_us"]) / 3600000000.0,
    "account age at the request, hours",
)
NEW_MODEL = Input("new_model", _NEW_SQL, _new_model, "model first seen after the log's first day")
PIVOT = Input(
    "model_pivot_48h",
    f"{_NEW_SQL} AND t_us - model_first_us <= {PIVOT_US}",
    lambda r: _new_model(r) and r["t_us"] - r["model_first_us"] <= PIVOT_US,
    "request on a new model within 48 h of its first sighting",
)

W_VOL = [hours(1), days(1), days(7), ALL]
W = [days(1), days(7), ALL]
W_LONG = [days(7), ALL]

# --- the features -----------------------------------------------------------------------------------
FEATURES: list[Feature] = [
    # volume and rate
    Feature(REQUEST, Count(), W_VOL),
    Feature(ACTIVE_HOUR, DistinctCount(), W),
    Feature(ACTIVE_DAY, DistinctCount(), W_LONG),
    # inter-arrival regularity and burstiness
    Feature(GAP, GapCV(), W),
    Feature(GAP, Burstiness(), W),
    # diurnal / weekly shape (UTC)
    Feature(HOUR_OF_DAY, Entropy(tuple(range(24))), W_LONG),
    Feature(NIGHT, Share(), W_LONG),
    Feature(WEEKDAY, Entropy(tuple(range(7))), [ALL]),
    # request shape
    Feature(SINGLE_TURN, Share(), W),
    Feature(AT_CEILING, Share(), W),
    Feature(OUT_IN, Mean(), W),
    Feature(THINKING, Share(), W),
    Feature(N_TOOLS, Mean(), W),
    # content (signals stage)
    Feature(CAPABILITY, Entropy(CAPABILITIES), W),
    Feature(CAPABILITY, TopShare(CAPABILITIES), W),
    Feature(TARGET, Share(), W),
    Feature(GRADER_REWRITE, Share(), W),
    Feature(GRADER_REWRITE, ShareLowerBound(), W),
    Feature(COT, Mean(), W),
    Feature(COT_ELICIT, Share(), W),
    Feature(COT_ELICIT, ShareLowerBound(), W),
    Feature(SHARED_TEMPLATE, Share(), W),
    Feature(SHARED_PREAMBLE, Share(), W),
    Feature(TEMPLATE, DistinctRatio(), W),
    # infrastructure
    Feature(CLIENT_IP, DistinctCount(), W_LONG),
    Feature(IP_BLOCK, DistinctCount(), W_LONG),
    Feature(USER_AGENT, DistinctCount(), W_LONG),
    # account lifecycle and model pivots
    Feature(AGE, Min(), [ALL]),
    Feature(NEW_MODEL, Share(), W_LONG),
    Feature(PIVOT, Share(), W_LONG),
]

#: Inputs used by FEATURES, by name.
INPUTS: dict[str, Input] = {f.input.name: f.input for f in FEATURES}

#: Columns copied from ``accounts`` as they are.
ATTRIBUTES = ("tier", "verified")
