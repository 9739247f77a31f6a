"""The share stage's relational work (DuckDB SQL; table names and constants only are formatted in)."""

from __future__ import annotations

from distillguard.report._sql import BLOCK_EXPR

__all__ = ["OBSERVATIONS", "CANDIDATES"]

# One row per (kind, raw value, account): every identifier an account showed, with its exchanges and
# first/last time. Account-level kinds (payment, sign-up IP, e-mail domain) use created_at as time.
# {signals} is the signals table or an empty stand-in; {where_x}/{where_a} narrow to some accounts.
OBSERVATIONS = f"""
WITH x AS (
    SELECT x.account_id, x.ts, x.client_ip, CAST(x.asn AS VARCHAR) AS asn, x.user_agent,
           CAST(s.template_fp AS VARCHAR) AS template, CAST(s.preamble_fp AS VARCHAR) AS preamble
    FROM exchanges x LEFT JOIN {{signals}} s ON s.request_id = x.request_id
    {{where_x}}
), v AS (
    SELECT account_id, ts, 'ip' AS kind, client_ip AS value FROM x
    UNION ALL SELECT account_id, ts, 'ip_block', {BLOCK_EXPR.format(col="client_ip")} FROM x
    UNION ALL SELECT account_id, ts, 'asn', asn FROM x
    UNION ALL SELECT account_id, ts, 'user_agent', user_agent FROM x
    UNION ALL SELECT account_id, ts, 'template', template FROM x
    UNION ALL SELECT account_id, ts, 'preamble', preamble FROM x
)
SELECT kind, value, account_id, COUNT(*) AS exchanges, MIN(ts) AS first_ts, MAX(ts) AS last_ts
FROM v WHERE value IS NOT NULL GROUP BY kind, value, account_id
UNION ALL
SELECT kind, value, account_id, 0, created_at, created_at FROM (
    SELECT a.account_id, a.created_at, 'payment' AS kind, a.payment_fingerprint AS value FROM accounts a {{where_a}}
    UNION ALL SELECT a.account_id, a.created_at, 'email_domain', lower(a.email_domain) FROM accounts a {{where_a}}
    UNION ALL SELECT a.account_id, a.created_at, 'ip', a.signup_ip FROM accounts a {{where_a}}
    UNION ALL SELECT a.account_id, a.created_at, 'ip_block', {BLOCK_EXPR.format(col="a.signup_ip")}
    FROM accounts a {{where_a}}
) WHERE value IS NOT NULL
"""

# Per candidate value of the campaign: flagged members, unflagged / high-value / allow-listed accounts.
CANDIDATES = """
WITH obs AS (SELECT kind, value, account_id, SUM(exchanges) AS exchanges, MIN(first_ts) AS first_ts,
                    MAX(last_ts) AS last_ts FROM _share_obs GROUP BY kind, value, account_id),
mem AS (SELECT account_id FROM _share_members),
cand AS (SELECT DISTINCT o.kind, o.value FROM obs o JOIN mem m ON m.account_id = o.account_id),
acc AS (
    SELECT a.account_id, COALESCE(d.flagged, FALSE) AS flagged,
           (lower(COALESCE(a.tier, '')) IN ({hv_tiers}) OR ({hv_verified} AND COALESCE(a.verified, FALSE))
            OR COALESCE(n.n, 0) > {hv_exchanges}) AS high_value,
           al.account_id IS NOT NULL AS allow_listed
    FROM (SELECT account_id, tier, verified FROM accounts
          UNION SELECT DISTINCT account_id, NULL, NULL FROM exchanges
          WHERE account_id NOT IN (SELECT account_id FROM accounts)) a
    LEFT JOIN detections d ON d.account_id = a.account_id
    LEFT JOIN (SELECT account_id, COUNT(*) AS n FROM exchanges GROUP BY account_id) n ON n.account_id = a.account_id
    LEFT JOIN _share_allow al ON al.account_id = a.account_id
)
SELECT c.kind, c.value,
       COUNT(DISTINCT CASE WHEN m.account_id IS NOT NULL THEN o.account_id END) AS members,
       COUNT(DISTINCT CASE WHEN a.flagged THEN o.account_id END) AS flagged_accounts,
       COUNT(DISTINCT CASE WHEN NOT a.flagged THEN o.account_id END) AS unflagged_accounts,
       COUNT(DISTINCT CASE WHEN NOT a.flagged AND a.high_value THEN o.account_id END) AS high_value_accounts,
       COUNT(DISTINCT CASE WHEN a.allow_listed THEN o.account_id END) AS allow_listed_accounts,
       SUM(CASE WHEN m.account_id IS NOT NULL THEN o.exchanges ELSE 0 END) AS exchanges,
       MIN(CASE WHEN m.account_id IS NOT NULL THEN o.first_ts END) AS first_ts,
       MAX(CASE WHEN m.account_id IS NOT NULL THEN o.last_ts END) AS last_ts
FROM cand c
JOIN obs o ON o.kind = c.kind AND o.value = c.value
JOIN acc a ON a.account_id = o.account_id
LEFT JOIN mem m ON m.account_id = o.account_id
GROUP BY c.kind, c.value
ORDER BY c.kind, members DESC, c.value
"""
