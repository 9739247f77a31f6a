"""The one place where table names, field names and types live.

Every stage reads and writes the tables declared here (see ``docs/traffic-log.md``).
Input tables follow the traffic-log contract v1; output tables (``detections``,
``decisions``) are what outside evaluation tools read back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "ACCOUNTS",
    "CAMPAIGNS",
    "CAPABILITIES",
    "CLUSTERS",
    "EDGES",
    "SIGNALS",
    "DECISIONS",
    "DETECTIONS",
    "EXCHANGES",
    "QUARANTINE",
    "TIMESTAMP",
    "ACTIONS",
    "Field",
    "Table",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Capability classes of a prompt (content stage), the targets a campaign concentrates on.
CAPABILITIES = ("coding", "agentic", "planning", "math_reasoning", "grader", "censorship_rewrite", "chat", "other")

#: Actions the online scorer may decide, mildest first.
ACTIONS = ("allow", "throttle", "challenge", "degrade", "block")

# Size limits: a field longer than this is "huge" and its row is quarantined.
ID_MAX = 256  # ids, hashes, codes
SHORT_MAX = 1_024  # user agents, model names, domains
TEXT_MAX = 1_048_576  # prompt and system text (characters)


@dataclass(frozen=True)
class Field:
    """One column: its Arrow type, whether a row without it is unusable, and its size limit."""

    name: str
    type: pa.DataType
    required: bool = False
    max_len: int | None = None
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """A named, typed table; ``key`` is the column that makes a row unique."""

    name: str
    fields: tuple[Field, ...]
    key: str | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.name, f.type, nullable=not f.required) for f in self.fields])

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


ACCOUNTS = Table(
    "accounts",
    (
        Field("account_id", pa.string(), True, ID_MAX, "stable id of the billing account"),
        Field("created_at", TIMESTAMP, True, None, "sign-up time"),
        Field("org_id", pa.string(), False, ID_MAX, "organisation the account belongs to"),
        Field("tier", pa.string(), False, ID_MAX, "free, build, scale, enterprise, education, ..."),
        Field("email_domain", pa.string(), False, SHORT_MAX, "domain of the sign-up e-mail"),
        Field("payment_fingerprint", pa.string(), False, ID_MAX, "opaque hash of the payment instrument"),
        Field("signup_ip", pa.string(), False, ID_MAX, "IPv4/IPv6 at sign-up"),
        Field("country", pa.string(), False, ID_MAX, "ISO 3166-1 alpha-2"),
        Field("verified", pa.bool_(), False, None, "passed identity/business verification"),
    ),
    key="account_id",
)

EXCHANGES = Table(
    "exchanges",
    (
        Field("request_id", pa.string(), True, ID_MAX, "unique id of the request"),
        Field("ts", TIMESTAMP, True, None, "request start"),
        Field("account_id", pa.string(), True, ID_MAX, "account billed (joins accounts)"),
        Field("api_key_id", pa.string(), False, ID_MAX, "opaque id of the API key used"),
        Field("client_ip", pa.string(), False, ID_MAX, "client.address"),
        Field("asn", pa.int64(), False, None, "autonomous system number of client_ip"),
        Field("user_agent", pa.string(), False, SHORT_MAX, "user_agent.original"),
        Field("model", pa.string(), True, SHORT_MAX, "gen_ai.request.model"),
        Field("system", pa.string(), False, TEXT_MAX, "system prompt text"),
        Field("prompt", pa.string(), True, TEXT_MAX, "text of the last user turn"),
        Field("conversation_id", pa.string(), False, ID_MAX, "gen_ai.conversation.id"),
        Field("turn_index", pa.int64(), False, None, "0 for the first user turn"),
        Field("n_tools", pa.int64(), False, None, "tool definitions sent with the request"),
        Field("thinking", pa.bool_(), False, None, "extended reasoning was requested"),
        Field("max_tokens", pa.int64(), False, None, "gen_ai.request.max_tokens"),
        Field("input_tokens", pa.int64(), False, None, "gen_ai.usage.input_tokens"),
        Field("output_tokens", pa.int64(), False, None, "gen_ai.usage.output_tokens"),
        Field("finish_reason", pa.string(), False, ID_MAX, "gen_ai.response.finish_reasons[0]"),
        Field("latency_ms", pa.int64(), False, None, "time to last byte"),
        Field("status", pa.int64(), False, None, "HTTP status returned"),
    ),
    key="request_id",
)

QUARANTINE = Table(
    "quarantine",
    (
        Field("source", pa.string(), True, None, "file the row came from"),
        Field("row", pa.int64(), False, None, "1-based line (JSONL) or row (Parquet); null: whole file"),
        Field("table_name", pa.string(), True, None, "accounts or exchanges"),
        Field("field", pa.string(), False, None, "offending field, null when the row as a whole is bad"),
        Field("reason", pa.string(), True, None, "what is wrong, in words"),
        Field("raw", pa.string(), False, None, "the row as read (truncated to 64 KiB)"),
        Field("ingested_at", TIMESTAMP, True, None, "when it was set aside"),
    ),
)

DETECTIONS = Table(
    "detections",
    (
        Field("account_id", pa.string(), True),
        Field("score", pa.float64(), True, None, "0..1 risk of serving a distillation campaign"),
        Field("flagged", pa.bool_(), True, None, "score at or over the operating threshold"),
        Field("cluster_id", pa.string(), False, None, "linked group of accounts"),
        Field("first_flagged_at", TIMESTAMP, False, None, "earliest ts at which it was flagged"),
        Field("reasons", pa.list_(pa.string()), False, None, "human-readable evidence"),
    ),
    key="account_id",
)

DECISIONS = Table(
    "decisions",
    (
        Field("request_id", pa.string(), True),
        Field("action", pa.string(), True, None, "allow, throttle, challenge, degrade or block"),
        Field("score", pa.float64(), True),
        Field("reasons", pa.list_(pa.string()), False),
    ),
    key="request_id",
)

SIGNALS = Table(
    "signals",
    (
        Field("request_id", pa.string(), True, None, "joins exchanges"),
        Field("account_id", pa.string(), True, None, "copied from exchanges for cheap grouping"),
        Field("ts", TIMESTAMP, True, None, "copied from exchanges, for as-of cuts"),
        Field("capability", pa.string(), True, None, "one of CAPABILITIES"),
        Field("capability_conf", pa.float64(), False, None, "classifier confidence 0..1"),
        Field("cot_score", pa.float64(), True, None, "0..1: the prompt coerces a full reasoning trace"),
        Field("template_fp", pa.int64(), False, None, "64-bit SimHash of the normalised prompt skeleton"),
        Field("template_bands", pa.list_(pa.int64()), False, None, "MinHash-LSH band keys of the prompt skeleton: a shared key = near-duplicate template"),
        Field("preamble_fp", pa.int64(), False, None, "hash of the normalised system prompt / role preamble"),
    ),
    key="request_id",
)

EDGES = Table(
    "edges",
    (
        Field("src", pa.string(), True, None, "account_id (src < dst)"),
        Field("dst", pa.string(), True, None, "account_id"),
        Field("kind", pa.string(), True, None, "payment, signup_block, client_ip, asn, user_agent, email, template, synchrony, wave"),
        Field("weight", pa.float64(), True, None, "evidence strength after hub guards, > 0"),
        Field("evidence", pa.string(), False, None, "what is shared, e.g. the /24 or the template key"),
    ),
)

CLUSTERS = Table(
    "clusters",
    (
        Field("account_id", pa.string(), True),
        Field("cluster_id", pa.string(), False, None, "null: not linked to anyone"),
        Field("cluster_size", pa.int64(), True),
    ),
    key="account_id",
)

_J = pa.string()  # JSON text (the report stage writes these columns as JSON)

CAMPAIGNS = Table(
    "campaigns",
    (
        Field("campaign_id", pa.string(), True, None, "cluster_id, or 'solo_<account_id>' for a single account"),
        Field("kind", pa.string(), True, None, "'cluster' or 'single'"),
        Field("cluster_id", pa.string(), False, None, "the cluster (null for an unclustered account)"),
        Field("n_accounts", pa.int64(), True, None, "accounts in the campaign (all cluster members)"),
        Field("n_flagged", pa.int64(), True, None, "of them flagged; the rest of the columns cover these"),
        Field("n_exchanges", pa.int64(), True, None, "exchanges sent by the flagged members"),
        Field("first_ts", TIMESTAMP, False, None, "first exchange"),
        Field("last_ts", TIMESTAMP, False, None, "last exchange"),
        Field("first_flagged_at", TIMESTAMP, False, None, "earliest first_flagged_at of a member"),
        Field("mean_score", pa.float64(), False, None, "mean risk score of flagged members"),
        Field("max_score", pa.float64(), False, None, "highest risk score"),
        Field("capability_mix", _J, True, None, "JSON {capability: share of classified exchanges}, largest first"),
        Field("cot_share", pa.float64(), False, None, "share of classified exchanges with cot_score >= threshold"),
        Field("cot_mean", pa.float64(), False, None, "mean cot_score"),
        Field("n_templates", pa.int64(), True, None, "distinct prompt-skeleton fingerprints"),
        Field("n_preambles", pa.int64(), True, None, "distinct system-preamble fingerprints"),
        Field("top_templates", _J, True, None, "JSON [{kind, fp, exchanges, accounts}] (fingerprints only)"),
        Field("n_blocks", pa.int64(), True, None, "distinct client /24 (IPv6 /48) blocks"),
        Field("n_asns", pa.int64(), True, None, "distinct client ASNs"),
        Field("blocks_other_accounts", pa.int64(), True, None, "non-flagged accounts using any of the blocks"),
        Field("asns_other_accounts", pa.int64(), True, None, "non-flagged accounts using any of the ASNs"),
        Field("blocks", _J, True, None, "JSON [{value, exchanges, accounts, other_accounts}] top blocks"),
        Field("asns", _J, True, None, "JSON [{value, exchanges, accounts, other_accounts}] top ASNs"),
        Field("n_payments", pa.int64(), True, None, "distinct payment fingerprints"),
        Field("payments", _J, True, None, "JSON [{value, accounts, other_accounts}]"),
        Field("n_user_agents", pa.int64(), True, None, "distinct user agents"),
        Field("user_agents", _J, True, None, "JSON [{value, exchanges, accounts}]"),
        Field("email_domains", _J, True, None, "JSON [{value, accounts, other_accounts}]"),
        Field("n_waves", pa.int64(), True, None, "sign-up waves (runs of sign-ups without a quiet gap)"),
        Field("waves", _J, True, None, "JSON [{wave, accounts, first_at, last_at}]"),
        Field("signups", _J, True, None, "JSON [{day, accounts}] accounts created per UTC day"),
        Field("models", _J, True, None, "JSON [{value, exchanges, accounts}]"),
        Field("newest_model", pa.string(), False, None, "model that appeared last in the whole log"),
        Field("newest_model_share", pa.float64(), False, None, "share of exchanges on it"),
        Field("newest_model_share_after", pa.float64(), False, None, "share on it once it existed (pivot)"),
        Field("top_reasons", _J, True, None, "JSON [{phrase, accounts, example}] most frequent reasons"),
        Field("daily", _J, True, None, "JSON [{day, exchanges, new_accounts, flagged, created}]"),
        Field("members", _J, True, None, "JSON [account_id] flagged members, sorted"),
    ),
    key="campaign_id",
)
