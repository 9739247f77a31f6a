"""Portable SQL of the graph stage (DuckDB dialect that SQLGlot transpiles to Spark SQL).

Every statement is registered with :func:`distillguard.engines.portable_sql`; ``{placeholders}`` are
constants filled with ``str.format`` by :mod:`distillguard.graph.edges` (see ``DEFAULTS`` there).
Intermediate tables are prefixed ``_g_`` and dropped when the stage ends.
"""

from __future__ import annotations

from distillguard.engines import portable_sql

__all__ = ["PUBLIC_EMAIL_DOMAINS", "block_sql"]

#: Consumer / webmail providers: a shared domain here is never linkage evidence.
PUBLIC_EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com",
    "yahoo.com", "yahoo.co.jp", "yahoo.co.uk", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com",
    "proton.me", "protonmail.com", "pm.me", "tutanota.com", "tuta.io", "fastmail.com", "hey.com", "duck.com",
    "zoho.com", "mail.com", "gmx.de", "gmx.net", "gmx.com", "web.de", "t-online.de", "orange.fr", "free.fr",
    "libero.it", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "yandex.ru", "yandex.com", "mail.ru", "bk.ru",
    "list.ru", "inbox.ru", "rambler.ru", "ukr.net", "qq.com", "foxmail.com", "163.com", "126.com",
    "yeah.net", "139.com", "sina.com", "sohu.com", "aliyun.com", "naver.com", "daum.net", "hanmail.net",
    "rediffmail.com", "mailinator.com",
)
_PUBLIC_SQL = ", ".join(f"'{d}'" for d in PUBLIC_EMAIL_DOMAINS)


def block_sql(ip: str) -> str:
    """SQL expression: the IPv4 /24 (``a.b.c.0/24``) or IPv6 /48 (``x:y:z::/48``) of column ``ip``."""
    head = f"split_part(lower({ip}), '::', 1)"
    g = [f"coalesce(nullif(ltrim(split_part({head}, ':', {i}), '0'), ''), '0')" for i in (1, 2, 3)]
    v6 = f"{g[0]} || ':' || {g[1]} || ':' || {g[2]} || '::/48'"
    v4 = f"nullif(regexp_extract({ip}, '^([0-9]+[.][0-9]+[.][0-9]+)[.][0-9]+$', 1), '') || '.0/24'"
    return f"CASE WHEN {ip} LIKE '%:%' THEN {v6} ELSE {v4} END"


# --- inputs, cut at as_of -------------------------------------------------------------------------
ACC = portable_sql("graph.acc", """
SELECT account_id, created_at, payment_fingerprint, signup_ip, lower(trim(email_domain)) AS email_domain
FROM accounts WHERE created_at <= CAST('{as_of}' AS TIMESTAMPTZ)
""")

# per account and client block: requests; the /24 sets the client_ip kind compares
ACC_BLOCK = portable_sql("graph.acc_block", f"""
SELECT account_id, {block_sql('client_ip')} AS value, count(*) AS n_req
FROM exchanges
WHERE ts <= CAST('{{as_of}}' AS TIMESTAMPTZ) AND client_ip IS NOT NULL
GROUP BY 1, 2
""")

# per account: requests, and its dominant ASN and user agent (share >= {dominant_share})
ACC_DOM = portable_sql("graph.acc_dom", """
WITH x AS (
  SELECT account_id, asn, user_agent FROM exchanges WHERE ts <= CAST('{as_of}' AS TIMESTAMPTZ)
), tot AS (SELECT account_id, count(*) AS n FROM x GROUP BY 1),
asn AS (SELECT account_id, 'asn' AS kind, CAST(asn AS VARCHAR) AS value, count(*) AS c
        FROM x WHERE asn IS NOT NULL GROUP BY 1, 3),
ua AS (SELECT account_id, 'user_agent' AS kind, user_agent AS value, count(*) AS c
       FROM x WHERE user_agent IS NOT NULL AND user_agent <> '' GROUP BY 1, 3),
u AS (SELECT * FROM asn UNION ALL SELECT * FROM ua)
SELECT u.account_id, u.kind, u.value FROM u JOIN tot ON u.account_id = tot.account_id
WHERE u.c >= {dominant_share} * tot.n
""")

# per account: active time buckets (synchrony)
ACC_BUCKET = portable_sql("graph.acc_bucket", """
SELECT DISTINCT account_id, CAST(floor(epoch(ts) / {bucket_s}) AS BIGINT) AS b
FROM exchanges WHERE ts <= CAST('{as_of}' AS TIMESTAMPTZ)
""")

# per account: template values used on at least {min_template_share} of its requests
ACC_TEMPLATE = portable_sql("graph.acc_template", """
WITH s AS (
  SELECT account_id, preamble_fp, template_bands FROM signals
  WHERE ts <= CAST('{as_of}' AS TIMESTAMPTZ)
), tot AS (SELECT account_id, count(*) AS n FROM s GROUP BY 1),
pre AS (SELECT account_id, 0 AS t, preamble_fp AS v, count(*) AS c
        FROM s WHERE preamble_fp IS NOT NULL GROUP BY 1, 3),
dl AS (SELECT account_id, template_bands, count(*) AS c FROM s WHERE template_bands IS NOT NULL GROUP BY 1, 2),
band AS (SELECT account_id, 1 AS t, v, sum(c) AS c
         FROM (SELECT account_id, c, unnest(template_bands) AS v FROM dl) AS e WHERE v IS NOT NULL GROUP BY 1, 3),
u AS (SELECT * FROM pre UNION ALL SELECT * FROM band)
SELECT u.account_id, 'template' AS kind,
       CASE WHEN u.t = 0 THEN 'pre:' ELSE 'band:' END || CAST(u.v AS VARCHAR) AS value
FROM u JOIN tot ON u.account_id = tot.account_id
WHERE u.c >= {min_template_requests} AND u.c >= {min_template_share} * tot.n
""")
# (Each request holds a preamble key once and each band key once -- band keys carry their band
# index -- so count(*) per (account, key) is the number of the account's requests with that key;
# counting integers and formatting only the survivors is ~5x faster than counting strings. Requests
# repeat their whole band list (a template), so lists are counted per account first and only the
# distinct ones unnested, their counts summed: same counts, about half the rows unnested.)

# --- one membership table: (account, kind, value) -------------------------------------------------
ATTR = portable_sql("graph.attr", f"""
SELECT DISTINCT account_id, kind, value FROM (
  SELECT account_id, 'payment' AS kind, payment_fingerprint AS value FROM _g_acc
  WHERE payment_fingerprint IS NOT NULL AND payment_fingerprint <> ''
  UNION ALL
  SELECT account_id, 'signup_block' AS kind, {block_sql('signup_ip')} AS value FROM _g_acc
  WHERE signup_ip IS NOT NULL
  UNION ALL
  SELECT account_id, 'email' AS kind, email_domain AS value FROM _g_acc
  WHERE email_domain IS NOT NULL AND email_domain <> '' AND email_domain NOT IN ({_PUBLIC_SQL})
  UNION ALL
  SELECT account_id, 'client_ip' AS kind, value FROM _g_acc_block WHERE value IS NOT NULL
  UNION ALL
  SELECT d.account_id, d.kind, d.value FROM _g_acc_dom AS d JOIN _g_acc AS a ON d.account_id = a.account_id
  {{template_union}}
) AS m WHERE value IS NOT NULL
""")

TEMPLATE_UNION = """UNION ALL
  SELECT t.account_id, t.kind, t.value FROM _g_acc_template AS t JOIN _g_acc AS a ON t.account_id = a.account_id"""

# members of each value with its group size and a rank (for the sparse expansion of big groups)
MEMBERS = portable_sql("graph.members", """
SELECT account_id, kind, value,
       count(*) OVER (PARTITION BY kind, value) AS n,
       row_number() OVER (PARTITION BY kind, value ORDER BY account_id) AS rn
FROM _g_attr
""")

# pairs sharing a value, with the hub guard: IDF weight 1/log2(1+n); groups of 2..max_group expand to
# all pairs (weak kinds {weak_kinds}: 2..max_group_weak); bigger groups of the strong kinds ({sparse_kinds}) up to {max_group_sparse} link each member
# to its next {sparse_k} members only; every other big group is dropped.
PAIRS = portable_sql("graph.pairs", """
WITH m AS (SELECT * FROM _g_members WHERE n >= 2
             AND (kind NOT IN ({weak_kinds}) OR n <= {max_group_weak})
             AND (n <= {max_group} OR (kind IN ({sparse_kinds}) AND n <= {max_group_sparse})))
SELECT a.account_id AS src, b.account_id AS dst, a.kind, a.value, 1.0 / log2(1 + a.n) AS idf
FROM m AS a JOIN m AS b ON a.kind = b.kind AND a.value = b.value AND a.rn < b.rn
WHERE a.n <= {max_group} OR b.rn <= a.rn + {sparse_k}
""")

# one row per (pair, kind): summed IDF, number of shared values, smallest shared value as evidence
PAIR_KIND = portable_sql("graph.pair_kind", """
SELECT src, dst, kind, sum(idf) AS s_idf, count(*) AS n_shared, min(value) AS evidence
FROM _g_pairs GROUP BY 1, 2, 3
""")

# the number of distinct values each account holds per kind (denominator of set overlaps)
DEG = portable_sql("graph.deg", """
SELECT account_id, kind, count(*) AS n_values FROM _g_attr GROUP BY 1, 2
""")

# kinds scored by value sharing: weight = base * least(cap, greatest(floor, sum idf)); client_ip also needs
# >= {min_shared_blocks} shared blocks and Jaccard >= {min_ip_jaccard} of the two accounts' /24 sets
SHARED = portable_sql("graph.shared", """
WITH p AS (
  SELECT p.*, da.n_values AS na, db.n_values AS nb
  FROM _g_pair_kind AS p
  JOIN _g_deg AS da ON p.src = da.account_id AND p.kind = da.kind
  JOIN _g_deg AS db ON p.dst = db.account_id AND p.kind = db.kind
), r AS (SELECT kind, base, cap, floor FROM _g_rules)
SELECT p.src, p.dst, p.kind,
       r.base * least(r.cap, greatest(r.floor, p.s_idf))
         * CASE WHEN p.kind = 'client_ip' THEN CAST(p.n_shared AS DOUBLE) / (p.na + p.nb - p.n_shared)
                ELSE 1.0 END AS weight,
       CASE WHEN p.kind = 'client_ip' THEN p.evidence || ' +' || CAST(p.n_shared - 1 AS VARCHAR) || ' more'
            ELSE p.evidence END AS evidence
FROM p JOIN r ON p.kind = r.kind
WHERE p.kind <> 'client_ip'
   OR (p.n_shared >= {min_shared_blocks}
       AND CAST(p.n_shared AS DOUBLE) / (p.na + p.nb - p.n_shared) >= {min_ip_jaccard})
""")

# SynchroTrap-style co-activity, only among pairs that already share infrastructure or a template
SYNC = portable_sql("graph.sync", """
WITH cand AS (SELECT DISTINCT src, dst FROM _g_pair_kind WHERE kind IN ({sync_kinds})),
nb AS (SELECT account_id, count(*) AS n FROM _g_acc_bucket GROUP BY 1),
inter AS (
  SELECT c.src, c.dst, count(*) AS k
  FROM cand AS c
  JOIN _g_acc_bucket AS x ON c.src = x.account_id
  JOIN _g_acc_bucket AS y ON c.dst = y.account_id AND x.b = y.b
  GROUP BY 1, 2
), j AS (
  SELECT i.src, i.dst, i.k, CAST(i.k AS DOUBLE) / (na.n + nb2.n - i.k) AS jac
  FROM inter AS i JOIN nb AS na ON i.src = na.account_id JOIN nb AS nb2 ON i.dst = nb2.account_id
)
SELECT src, dst, 'synchrony' AS kind, {w_synchrony} * jac AS weight,
       CAST(k AS VARCHAR) || ' common {bucket_s}s buckets, jaccard ' || CAST(round(jac, 2) AS VARCHAR) AS evidence
FROM j WHERE k >= {min_sync_buckets} AND jac >= {min_sync_jaccard}
""")

# sign-up waves: created within {wave_s} s of each other AND sharing one of {wave_kinds}
WAVE = portable_sql("graph.wave", """
WITH cand AS (SELECT src, dst, min(kind) AS via FROM _g_pair_kind WHERE kind IN ({wave_kinds}) GROUP BY 1, 2)
SELECT c.src, c.dst, 'wave' AS kind, {w_wave} AS weight,
       'created ' || CAST(CAST(abs(epoch(a.created_at) - epoch(b.created_at)) AS BIGINT) AS VARCHAR)
         || 's apart, shared ' || c.via AS evidence
FROM cand AS c JOIN _g_acc AS a ON c.src = a.account_id JOIN _g_acc AS b ON c.dst = b.account_id
WHERE abs(epoch(a.created_at) - epoch(b.created_at)) <= {wave_s}
""")

EDGES = portable_sql("graph.edges", """
SELECT src, dst, kind, CAST(weight AS DOUBLE) AS weight, evidence FROM (
  SELECT * FROM _g_shared UNION ALL SELECT * FROM _g_sync UNION ALL SELECT * FROM _g_wave
) AS e WHERE weight > 0
ORDER BY src, dst, kind
""")

# clusters: every account (cut at as_of), unlinked ones with a null cluster and size 1
CLUSTERS = portable_sql("graph.clusters", """
SELECT a.account_id, l.cluster_id, CAST(coalesce(l.cluster_size, 1) AS BIGINT) AS cluster_size
FROM accounts AS a LEFT JOIN _g_labels AS l ON a.account_id = l.account_id
WHERE a.created_at <= CAST('{as_of}' AS TIMESTAMPTZ)
ORDER BY a.account_id
""")
