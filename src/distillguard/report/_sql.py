"""The report stage's relational work, written once in portable SQL (DuckDB dialect, SQLGlot -> Spark).

Placeholders (``{name}``) are filled with ``str.format`` and stand only for table names and constants:
``{clusters}``/``{signals}`` (the real table or an empty stand-in when a stage has not run),
``{min_flagged}``, ``{include_single}``, ``{cot_threshold}``, ``{top_k}``, ``{wave_gap_s}``,
``{fp_col}`` (``template_fp`` or ``preamble_fp``).
Days are UTC calendar days: the session time zone must be UTC (``store.connect`` sets it; on Spark set
``spark.sql.session.timeZone=UTC``).
"""

from __future__ import annotations

from distillguard.engines import portable_sql

__all__ = [
    "BLOCK_EXPR",
    "MEMBERS",
    "MODELS",
    "ACCOUNT_EXCHANGES",
    "ACCOUNT_SIGNALS",
    "CORE",
    "EXCHANGE_FACETS",
    "FACET_OTHERS",
    "OTHER_PAIRS",
    "FACET_OTHERS_TOTAL",
    "ACCOUNT_FACETS",
    "WAVES",
    "NEWEST_MODEL",
    "REASONS",
    "DAILY",
    "SAMPLE_TEXT",
    "SAMPLE_EXCHANGE",
    "FACETS_TOP",
    "MEMBER_IDS",
    "READ_CAMPAIGNS",
]

#: A client address's network block: the /24 of an IPv4 address, the /48 of an IPv6 one.
#: (One regexp_extract per IPv4 address: no match gives '', which nullif turns into NULL.)
BLOCK_EXPR = (
    "CASE WHEN {col} LIKE '%:%' "
    "THEN lower(regexp_extract({col}, '^([0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f]*)', 1)) || '::/48' "
    "ELSE nullif(regexp_extract({col}, '^([0-9]+[.][0-9]+[.][0-9]+)[.]', 1), '') || '.0/24' END"
)

# One row per account that belongs to a campaign: every member of a cluster with at least
# {min_flagged} flagged accounts, and (when {include_single}) every other flagged account as its own
# single-account campaign 'solo_<account_id>' -- so each flagged account appears in exactly one report.
MEMBERS = portable_sql(
    "report.members",
    """
WITH ids AS (
    SELECT account_id FROM detections
    UNION
    SELECT account_id FROM {clusters}
),
acc AS (
    SELECT i.account_id,
           COALESCE(c.cluster_id, d.cluster_id) AS cluster_id,
           COALESCE(d.flagged, FALSE) AS flagged,
           d.score, d.first_flagged_at, d.reasons
    FROM ids i
    LEFT JOIN detections d ON d.account_id = i.account_id
    LEFT JOIN {clusters} c ON c.account_id = i.account_id
),
camp AS (
    SELECT cluster_id
    FROM acc
    WHERE cluster_id IS NOT NULL
    GROUP BY cluster_id
    HAVING SUM(CASE WHEN flagged THEN 1 ELSE 0 END) >= {min_flagged}
)
SELECT CASE WHEN cp.cluster_id IS NOT NULL THEN a.cluster_id ELSE 'solo_' || a.account_id END AS campaign_id,
       CASE WHEN cp.cluster_id IS NOT NULL THEN 'cluster' ELSE 'single' END AS kind,
       a.cluster_id, a.account_id, a.flagged, a.score, a.first_flagged_at, a.reasons
FROM acc a
LEFT JOIN camp cp ON cp.cluster_id = a.cluster_id
WHERE cp.cluster_id IS NOT NULL OR (a.flagged AND {include_single})
""",
)

# The newest model is the one whose first appearance in the whole log is latest (materialised as
# _report_models: every model with its first appearance).
MODELS = portable_sql(
    "report.models",
    "SELECT model, MIN(ts) AS first_seen FROM exchanges GROUP BY model",
)

# The flagged members' exchanges, aggregated in one pass (materialised as _report_ax): per campaign
# (facet 'campaign': count, window, share on the newest model) and per campaign, account and value of
# each exchange facet (block, asn, user_agent, model, day). Exchanges are never materialised row by row;
# a facet's exchanges and accounts are sums and counts of these rows. GROUPING(col) = 0 says which
# grouping set a row belongs to (a NULL value is a group of its own there, dropped later).
ACCOUNT_EXCHANGES = portable_sql(
    "report.account_exchanges",
    f"""
WITH nm AS (
    SELECT model, first_seen FROM _report_models ORDER BY first_seen DESC, model LIMIT 1
),
x AS (
    SELECT m.campaign_id, x.account_id, x.ts, CAST(x.ts AS DATE) AS day,
           {BLOCK_EXPR.format(col="x.client_ip")} AS block, x.asn, x.user_agent, x.model,
           CASE WHEN x.model = nm.model THEN 1.0 ELSE 0.0 END AS on_newest,
           x.ts >= nm.first_seen AS after_newest
    FROM _report_members m
    JOIN exchanges x ON x.account_id = m.account_id
    CROSS JOIN nm
    WHERE m.flagged
)
SELECT campaign_id, account_id, block, asn, user_agent, model, day,
       CASE WHEN GROUPING(account_id) = 1 THEN 'campaign'
            WHEN GROUPING(block) = 0 THEN 'block'
            WHEN GROUPING(asn) = 0 THEN 'asn'
            WHEN GROUPING(user_agent) = 0 THEN 'user_agent'
            WHEN GROUPING(model) = 0 THEN 'model'
            ELSE 'day' END AS facet,
       COUNT(*) AS n, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
       AVG(on_newest) AS newest_model_share,
       AVG(CASE WHEN after_newest THEN on_newest END) AS newest_model_share_after
FROM x
GROUP BY GROUPING SETS ((campaign_id), (campaign_id, account_id, block), (campaign_id, account_id, asn),
                        (campaign_id, account_id, user_agent), (campaign_id, account_id, model),
                        (campaign_id, account_id, day))
""",
)

# The flagged members' signals, aggregated the same way (materialised as _report_sx): per campaign
# (facet 'campaign': classified exchanges, CoT counts and mean) and per campaign, account and
# capability / template / preamble. Signals are grouped by their own account_id, which the contract
# copies from the exchange: no join of exchanges to signals on request_id (each signal is one
# exchange's, request_id unique in both), so the counts are those of the exchanges' joined signals.
ACCOUNT_SIGNALS = portable_sql(
    "report.account_signals",
    """
WITH s AS (
    SELECT m.campaign_id, s.account_id, s.capability, s.cot_score, s.template_fp, s.preamble_fp
    FROM _report_members m
    JOIN {signals} s ON s.account_id = m.account_id
    WHERE m.flagged
)
SELECT campaign_id, account_id, capability, template_fp, preamble_fp,
       CASE WHEN GROUPING(account_id) = 1 THEN 'campaign'
            WHEN GROUPING(capability) = 0 THEN 'capability'
            WHEN GROUPING(template_fp) = 0 THEN 'template'
            ELSE 'preamble' END AS facet,
       COUNT(*) AS n, COUNT(capability) AS n_classified,
       CAST(SUM(CASE WHEN cot_score >= {cot_threshold} THEN 1 ELSE 0 END) AS BIGINT) AS n_cot,
       AVG(cot_score) AS cot_mean
FROM s
GROUP BY GROUPING SETS ((campaign_id), (campaign_id, account_id, capability),
                        (campaign_id, account_id, template_fp), (campaign_id, account_id, preamble_fp))
""",
)

# Scalar figures per campaign.
CORE = portable_sql(
    "report.core",
    """
WITH mem AS (
    SELECT campaign_id, MIN(kind) AS kind, MIN(cluster_id) AS cluster_id,
           COUNT(*) AS n_accounts,
           CAST(SUM(CASE WHEN flagged THEN 1 ELSE 0 END) AS BIGINT) AS n_flagged,
           MIN(CASE WHEN flagged THEN first_flagged_at END) AS first_flagged_at,
           AVG(CASE WHEN flagged THEN score END) AS mean_score,
           MAX(CASE WHEN flagged THEN score END) AS max_score
    FROM _report_members
    GROUP BY campaign_id
),
ex AS (
    SELECT campaign_id, n AS n_exchanges, first_ts, last_ts FROM _report_ax WHERE facet = 'campaign'
),
sx AS (
    SELECT campaign_id, n_classified, n_cot, cot_mean FROM _report_sx WHERE facet = 'campaign'
)
SELECT mem.campaign_id, mem.kind, mem.cluster_id, mem.n_accounts, mem.n_flagged,
       COALESCE(ex.n_exchanges, 0) AS n_exchanges, ex.first_ts, ex.last_ts, mem.first_flagged_at,
       mem.mean_score, mem.max_score,
       COALESCE(sx.n_classified, 0) AS n_classified,
       CASE WHEN sx.n_classified > 0 THEN CAST(sx.n_cot AS DOUBLE) / sx.n_classified END AS cot_share,
       sx.cot_mean
FROM mem
LEFT JOIN ex ON ex.campaign_id = mem.campaign_id
LEFT JOIN sx ON sx.campaign_id = mem.campaign_id
ORDER BY mem.n_flagged DESC, mem.campaign_id
""",
)

# Every (campaign, facet, value) of the exchanges with its counts, its rank within the facet and the
# facet's number of distinct values; materialised as _report_facets, only the rows later read (top
# values, every capability, every block and ASN). Rows of _report_ax / _report_sx are unique per
# (campaign, facet, account, value) and the casts are one-to-one, so COUNT(*) counts distinct accounts.
EXCHANGE_FACETS = portable_sql(
    "report.exchange_facets",
    """
WITH v AS (
    SELECT campaign_id, facet, block AS value, account_id, n FROM _report_ax WHERE facet = 'block'
    UNION ALL SELECT campaign_id, facet, CAST(asn AS VARCHAR), account_id, n FROM _report_ax WHERE facet = 'asn'
    UNION ALL SELECT campaign_id, facet, user_agent, account_id, n FROM _report_ax WHERE facet = 'user_agent'
    UNION ALL SELECT campaign_id, facet, model, account_id, n FROM _report_ax WHERE facet = 'model'
    UNION ALL SELECT campaign_id, facet, capability, account_id, n FROM _report_sx WHERE facet = 'capability'
    UNION ALL SELECT campaign_id, facet, CAST(template_fp AS VARCHAR), account_id, n
    FROM _report_sx WHERE facet = 'template'
    UNION ALL SELECT campaign_id, facet, CAST(preamble_fp AS VARCHAR), account_id, n
    FROM _report_sx WHERE facet = 'preamble'
),
c AS (
    SELECT campaign_id, facet, value, CAST(SUM(n) AS BIGINT) AS exchanges, COUNT(*) AS accounts
    FROM v
    WHERE value IS NOT NULL
    GROUP BY campaign_id, facet, value
),
r AS (
    SELECT campaign_id, facet, value, exchanges, accounts,
           ROW_NUMBER() OVER (PARTITION BY campaign_id, facet ORDER BY exchanges DESC, value) AS rk,
           COUNT(*) OVER (PARTITION BY campaign_id, facet) AS n_values
    FROM c
)
SELECT campaign_id, facet, value, exchanges, accounts, rk, n_values
FROM r
WHERE rk <= {top_k} OR facet IN ('capability', 'block', 'asn')
""",
)

# How many accounts that are NOT flagged also send traffic from a campaign's /24s and ASNs: the
# residential-proxy / shared-infrastructure signal. One scan of exchanges, kept to the campaigns' values
# (materialised as _report_other_pairs).
OTHER_PAIRS = portable_sql(
    "report.other_pairs",
    f"""
WITH other AS (
    SELECT x.account_id, {BLOCK_EXPR.format(col="x.client_ip")} AS block, CAST(x.asn AS VARCHAR) AS asn
    FROM exchanges x
    LEFT JOIN detections d ON d.account_id = x.account_id
    WHERE NOT COALESCE(d.flagged, FALSE)
),
wanted AS (
    SELECT DISTINCT facet, value FROM _report_facets WHERE facet IN ('block', 'asn')
)
SELECT DISTINCT o.facet, o.value, o.account_id
FROM (
    SELECT 'block' AS facet, block AS value, account_id FROM other
    UNION ALL
    SELECT 'asn' AS facet, asn AS value, account_id FROM other
) o
JOIN wanted w ON w.facet = o.facet AND w.value = o.value
""",
)

FACET_OTHERS = portable_sql(
    "report.facet_others",
    """
SELECT f.campaign_id, f.facet, f.value, COUNT(p.account_id) AS other_accounts
FROM _report_facets f
JOIN _report_other_pairs p ON p.facet = f.facet AND p.value = f.value
WHERE f.facet IN ('block', 'asn') AND f.rk <= {top_k}
GROUP BY f.campaign_id, f.facet, f.value
""",
)

FACET_OTHERS_TOTAL = portable_sql(
    "report.facet_others_total",
    """
SELECT f.campaign_id, f.facet, COUNT(DISTINCT p.account_id) AS other_accounts
FROM _report_facets f
JOIN _report_other_pairs p ON p.facet = f.facet AND p.value = f.value
WHERE f.facet IN ('block', 'asn')
GROUP BY f.campaign_id, f.facet
""",
)

# Account-level facets of the flagged members: payment instrument, e-mail domain, sign-up day; with
# how many non-flagged accounts share the same payment instrument or domain.
ACCOUNT_FACETS = portable_sql(
    "report.account_facets",
    """
WITH mem AS (
    SELECT m.campaign_id, a.account_id, a.payment_fingerprint, a.email_domain,
           CAST(CAST(a.created_at AS DATE) AS VARCHAR) AS signup_day
    FROM _report_members m
    JOIN accounts a ON a.account_id = m.account_id
    WHERE m.flagged
),
v AS (
    SELECT campaign_id, 'payment' AS facet, payment_fingerprint AS value, account_id FROM mem
    UNION ALL SELECT campaign_id, 'email_domain', email_domain, account_id FROM mem
    UNION ALL SELECT campaign_id, 'signup_day', signup_day, account_id FROM mem
),
c AS (
    SELECT campaign_id, facet, value, COUNT(DISTINCT account_id) AS accounts
    FROM v
    WHERE value IS NOT NULL
    GROUP BY campaign_id, facet, value
),
unflagged AS (
    SELECT a.account_id, a.payment_fingerprint, a.email_domain
    FROM accounts a
    LEFT JOIN detections d ON d.account_id = a.account_id
    WHERE NOT COALESCE(d.flagged, FALSE)
),
other AS (
    SELECT 'payment' AS facet, payment_fingerprint AS value, COUNT(*) AS other_accounts
    FROM unflagged WHERE payment_fingerprint IS NOT NULL GROUP BY payment_fingerprint
    UNION ALL
    SELECT 'email_domain', email_domain, COUNT(*) FROM unflagged
    WHERE email_domain IS NOT NULL GROUP BY email_domain
)
SELECT c.campaign_id, c.facet, c.value, c.accounts, COALESCE(o.other_accounts, 0) AS other_accounts,
       ROW_NUMBER() OVER (PARTITION BY c.campaign_id, c.facet
                          ORDER BY CASE WHEN c.facet = 'signup_day' THEN 0 ELSE c.accounts END DESC,
                                   c.value) AS rk,
       COUNT(*) OVER (PARTITION BY c.campaign_id, c.facet) AS n_values
FROM c
LEFT JOIN other o ON o.facet = c.facet AND o.value = c.value
ORDER BY c.campaign_id, c.facet, rk
""",
)

# Sign-up waves: flagged members' sign-ups sorted in time; a new wave starts after a quiet gap longer
# than {wave_gap_s} seconds.
WAVES = portable_sql(
    "report.waves",
    """
WITH s AS (
    SELECT m.campaign_id, a.created_at,
           epoch(a.created_at) - epoch(LAG(a.created_at) OVER (PARTITION BY m.campaign_id
                                                               ORDER BY a.created_at)) AS gap
    FROM _report_members m
    JOIN accounts a ON a.account_id = m.account_id
    WHERE m.flagged AND a.created_at IS NOT NULL
),
w AS (
    SELECT campaign_id, created_at,
           CAST(SUM(CASE WHEN gap IS NULL OR gap > {wave_gap_s} THEN 1 ELSE 0 END)
                OVER (PARTITION BY campaign_id ORDER BY created_at
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS wave
    FROM s
)
SELECT campaign_id, wave, COUNT(*) AS accounts, MIN(created_at) AS first_at, MAX(created_at) AS last_at
FROM w
GROUP BY campaign_id, wave
ORDER BY campaign_id, wave
""",
)

# The newest model (latest first appearance in the whole log) and each campaign's share on it: of all
# its exchanges, and of those sent after that model first appeared (the pivot); shares are averaged
# in _report_ax.
NEWEST_MODEL = portable_sql(
    "report.newest_model",
    """
WITH nm AS (
    SELECT model, first_seen FROM _report_models ORDER BY first_seen DESC, model LIMIT 1
)
SELECT x.campaign_id, nm.model AS newest_model, nm.first_seen AS newest_model_first_seen,
       (SELECT COUNT(*) FROM _report_models) AS n_models_seen,
       x.newest_model_share, x.newest_model_share_after
FROM _report_ax x
CROSS JOIN nm
WHERE x.facet = 'campaign'
""",
)

# Most frequent reasons among flagged members; numbers are masked so "4 accounts share a card" and
# "7 accounts share a card" count as one phrase (an example with numbers is kept).
REASONS = portable_sql(
    "report.reasons",
    """
WITH r AS (
    SELECT m.campaign_id, m.account_id, t.reason
    FROM _report_members m
    CROSS JOIN UNNEST(m.reasons) AS t(reason)
    WHERE m.flagged
),
n AS (
    SELECT campaign_id, account_id, reason,
           trim(regexp_replace(reason, '[0-9][0-9.,:%]*', 'N', 'g')) AS phrase
    FROM r
    WHERE reason IS NOT NULL
),
c AS (
    SELECT campaign_id, phrase, COUNT(DISTINCT account_id) AS accounts, MIN(reason) AS example
    FROM n
    GROUP BY campaign_id, phrase
)
SELECT campaign_id, phrase, accounts, example,
       ROW_NUMBER() OVER (PARTITION BY campaign_id ORDER BY accounts DESC, phrase) AS rk
FROM c
ORDER BY campaign_id, rk
""",
)

# Daily series for the timeline: exchanges, accounts active for the first time, accounts flagged,
# accounts created (UTC days).
DAILY = portable_sql(
    "report.daily",
    """
WITH d AS (
    SELECT campaign_id, account_id, day, n FROM _report_ax WHERE facet = 'day'
),
firsts AS (
    SELECT campaign_id, account_id, MIN(day) AS day FROM d GROUP BY campaign_id, account_id
)
SELECT campaign_id, day, 'exchanges' AS series, CAST(SUM(n) AS BIGINT) AS n FROM d GROUP BY campaign_id, day
UNION ALL
SELECT campaign_id, day, 'new_accounts', COUNT(*) FROM firsts GROUP BY campaign_id, day
UNION ALL
SELECT campaign_id, CAST(first_flagged_at AS DATE), 'flagged', COUNT(*)
FROM _report_members
WHERE flagged AND first_flagged_at IS NOT NULL
GROUP BY campaign_id, CAST(first_flagged_at AS DATE)
UNION ALL
SELECT m.campaign_id, CAST(a.created_at AS DATE), 'created', COUNT(*)
FROM _report_members m
JOIN accounts a ON a.account_id = m.account_id
WHERE m.flagged
GROUP BY m.campaign_id, CAST(a.created_at AS DATE)
""",
)

# The top values of each exchange facet (every capability).
FACETS_TOP = portable_sql(
    "report.facets_top",
    """
SELECT campaign_id, facet, value, exchanges, accounts, rk, n_values
FROM _report_facets
WHERE rk <= {top_k} OR facet = 'capability'
ORDER BY campaign_id, facet, rk
""",
)

MEMBER_IDS = portable_sql(
    "report.member_ids",
    "SELECT campaign_id, account_id FROM _report_members WHERE flagged ORDER BY campaign_id, account_id",
)

READ_CAMPAIGNS = portable_sql(
    "report.read_campaigns",
    "SELECT * FROM campaigns ORDER BY n_flagged DESC, n_exchanges DESC, campaign_id",
)

# One example text for a campaign's most used template or preamble ({fp_col}), for the rendered
# report only -- never stored in a table. _report_sample_members holds the campaign's flagged members.
# The fingerprint (a BIGINT written as text in the campaign's JSON) is cast back once, not every
# signals row's fingerprint to text.
# Two steps: the first use is found in the narrow signals table, then fetched from exchanges by a
# point lookup whose ts predicate prunes row groups (one join over all exchanges per campaign made
# the reports stage grow with campaigns x exchanges).
SAMPLE_TEXT = portable_sql(
    "report.sample_text",
    """
SELECT s.request_id, s.account_id, s.ts
FROM {signals} s
JOIN _report_sample_members m ON m.account_id = s.account_id
WHERE s.{fp_col} = CAST(? AS BIGINT)
ORDER BY s.ts, s.request_id
LIMIT 1
""",
)

SAMPLE_EXCHANGE = portable_sql(
    "report.sample_exchange",
    "SELECT system, prompt FROM exchanges WHERE ts = ? AND account_id = ? AND request_id = ?",
)
