"""The shared vocabulary every population draws from: countries, ASNs and their IP blocks, user
agents, e-mail domains, models and diurnal profiles.

Benign personas and campaigns pick from these same tables (with different weights), so no value
is attack-only: only behaviour can give a campaign away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ASNS",
    "CONSUMER_EMAIL",
    "COUNTRIES",
    "MAX_TOKENS_VALUES",
    "MODELS",
    "MODEL_CEILING",
    "MODEL_MS_PER_TOKEN",
    "NEW_MODEL",
    "PROFILES",
    "UAS",
    "IpSpace",
    "pick",
]

# (ISO code, UTC offset in hours, weight among customers)
COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("US", -6, 0.30), ("IN", 5.5, 0.09), ("GB", 0, 0.06), ("DE", 1, 0.06), ("FR", 1, 0.04),
    ("BR", -3, 0.05), ("JP", 9, 0.05), ("KR", 9, 0.04), ("CA", -5, 0.04), ("SG", 8, 0.03),
    ("AU", 10, 0.03), ("NL", 1, 0.02), ("ES", 1, 0.02), ("MX", -6, 0.02), ("ID", 7, 0.02),
    ("PL", 1, 0.02), ("HK", 8, 0.02), ("TW", 8, 0.02), ("VN", 7, 0.02), ("AE", 4, 0.02),
    ("IL", 2, 0.02),
)
COUNTRY_CODES = [c for c, _, _ in COUNTRIES]
COUNTRY_TZ = np.array([tz for _, tz, _ in COUNTRIES])
COUNTRY_W = np.array([w for _, _, w in COUNTRIES]) / sum(w for _, _, w in COUNTRIES)

# (asn, kind, country); kinds: res(idential), mobile, cloud, edu, biz
ASNS: tuple[tuple[int, str, str], ...] = (
    (7922, "res", "US"), (7018, "res", "US"), (701, "res", "US"), (20115, "res", "US"),
    (5089, "res", "GB"), (2856, "res", "GB"), (3320, "res", "DE"), (3209, "res", "DE"),
    (3215, "res", "FR"), (12322, "res", "FR"), (28573, "res", "BR"), (18881, "res", "BR"),
    (4713, "res", "JP"), (2516, "res", "JP"), (4766, "res", "KR"), (9318, "res", "KR"),
    (812, "res", "CA"), (577, "res", "CA"), (9506, "res", "SG"), (1221, "res", "AU"),
    (1136, "res", "NL"), (3352, "res", "ES"), (8151, "res", "MX"), (7713, "res", "ID"),
    (5617, "res", "PL"), (4760, "res", "HK"), (3462, "res", "TW"), (7552, "res", "VN"),
    (5384, "res", "AE"), (1680, "res", "IL"), (9829, "res", "IN"), (24560, "res", "IN"),
    (21928, "mobile", "US"), (22394, "mobile", "US"), (20057, "mobile", "US"), (55836, "mobile", "IN"),
    (45609, "mobile", "IN"), (25135, "mobile", "GB"), (6805, "mobile", "DE"), (51207, "mobile", "FR"),
    (26599, "mobile", "BR"), (17676, "mobile", "JP"), (9644, "mobile", "KR"), (4818, "mobile", "ID"),
    (16509, "cloud", "US"), (14618, "cloud", "US"), (15169, "cloud", "US"), (396982, "cloud", "US"),
    (8075, "cloud", "US"), (14061, "cloud", "US"), (24940, "cloud", "DE"), (16276, "cloud", "FR"),
    (63949, "cloud", "US"), (20473, "cloud", "US"), (45102, "cloud", "SG"), (31898, "cloud", "US"),
    (11537, "edu", "US"), (2152, "edu", "US"), (786, "edu", "GB"), (680, "edu", "DE"),
    (2200, "edu", "FR"), (7575, "edu", "AU"), (2907, "edu", "JP"), (1916, "edu", "BR"),
    (17579, "edu", "KR"), (3356, "biz", "US"), (174, "biz", "US"), (6939, "biz", "US"),
    (3257, "biz", "DE"), (2914, "biz", "JP"), (6461, "biz", "US"),
)
ASN_NUMBERS = np.array([a for a, _, _ in ASNS], dtype=np.int64)
ASN_KIND = np.array([k for _, k, _ in ASNS])
ASN_COUNTRY = np.array([c for _, _, c in ASNS])

# User agents shared across populations; personas and campaigns weight them differently.
UAS: tuple[str, ...] = (
    "atlas-python/1.8.2", "atlas-python/1.9.0", "atlas-node/2.3.1", "atlas-go/0.9.4",
    "python-httpx/0.27.2", "python-requests/2.32.3", "axios/1.7.7", "node-fetch/3.3.2",
    "curl/8.5.0", "Go-http-client/2.0", "okhttp/4.12.0", "Java-http-client/21.0.2",
    "langchain-atlas/0.3.1 atlas-python/1.9.0", "litellm/1.52.0", "atlas-cli/1.0.63 (agent; terminal)",
    "Cursor/0.45.11 atlas-node/2.3.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
)
UA_INDEX = {u.split("/")[0].split(" ")[0]: i for i, u in enumerate(UAS)}

CONSUMER_EMAIL: tuple[tuple[str, float], ...] = (
    ("gmail.com", 0.45), ("outlook.com", 0.12), ("hotmail.com", 0.05), ("yahoo.com", 0.06),
    ("icloud.com", 0.06), ("proton.me", 0.04), ("qq.com", 0.03), ("163.com", 0.02), ("gmx.de", 0.03),
    ("yandex.ru", 0.02), ("naver.com", 0.03), ("mail.com", 0.02), ("zoho.com", 0.02), ("fastmail.com", 0.01),
    ("aol.com", 0.02), ("web.de", 0.02),
)

MODELS: tuple[str, ...] = ("atlas-mini-3", "atlas-3", "atlas-pro-3", "atlas-pro-4")
NEW_MODEL = 3  # index of the model released inside the scenario window
MODEL_CEILING = np.array([16384, 32768, 32768, 65536], dtype=np.int64)
MODEL_MS_PER_TOKEN = np.array([6.0, 12.0, 19.0, 21.0])
MAX_TOKENS_VALUES = np.array([256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], dtype=np.int64)


def _norm(x: list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a / a.sum()


# Local-time hour-of-day profiles.
PROFILES: dict[str, np.ndarray] = {
    # people at home: low at night, lunch and evening peaks
    "human": _norm([2, 1.2, .8, .5, .4, .5, 1, 2, 3.5, 4.5, 5, 5.2, 5, 4.8, 4.7, 4.6, 4.6, 4.8, 5, 5.5,
                    6, 5.5, 4.5, 3]),
    # people at work: office hours, little at night and weekends handled by a weekend factor
    "work": _norm([.4, .25, .2, .2, .2, .3, .8, 2, 5, 7, 7.5, 7, 5.5, 6.5, 7.5, 7.5, 7, 6, 4, 3, 2.5,
                   2, 1.2, .7]),
    # students: late afternoon to late night
    "evening": _norm([3, 2, 1, .5, .3, .3, .4, .8, 1.5, 2.5, 3, 3.2, 3.2, 3.5, 4, 4.5, 5, 5.5, 6, 6.5,
                      7, 7, 6, 4.5]),
    # machines serving a population of users: almost flat with a mild day bump
    "flat": _norm([.8, .75, .72, .7, .7, .72, .8, .9, 1, 1.1, 1.15, 1.2, 1.2, 1.2, 1.2, 1.2, 1.15, 1.1,
                   1.05, 1, .95, .9, .85, .82]),
    # nightly batch windows
    "night": _norm([6, 8, 8, 6, 3, 1, .2, .05, .02, .02, .02, .02, .02, .02, .02, .02, .02, .02, .02,
                    .05, .1, .3, 1, 3]),
    # operators running a pipeline around the clock
    "uniform": np.full(24, 1 / 24),
}


def pick(rng: np.random.Generator, weights: dict[str, float] | tuple[tuple[str, float], ...],
         n: int) -> np.ndarray:
    """Draw ``n`` labels from a weight table; returns an object array of labels."""
    items = list(weights.items()) if isinstance(weights, dict) else list(weights)
    labels = np.array([k for k, _ in items], dtype=object)
    return labels[rng.choice(len(items), size=n, p=_norm([w for _, w in items]))]


@dataclass
class IpSpace:
    """IPv4 blocks owned by each ASN (random /16s per seed) and a growing table of concrete IPs.

    Populations store (start, count) ranges into ``ips``/``ip_asn``; a proxy network is simply a range
    that campaign accounts and a few benign households both point into.
    """

    prefix_base: np.ndarray  # uint32 base of each /16
    asn_first: np.ndarray  # per ASN index: first prefix
    asn_nprefix: np.ndarray
    ips: list[np.ndarray]
    ip_asn: list[np.ndarray]
    size: int = 0

    @classmethod
    def build(cls, rng: np.random.Generator) -> IpSpace:
        banned = {0, 10, 100, 127, 169, 172, 192, 198, 203}
        firsts = np.array([o for o in range(1, 224) if o not in banned])
        n_asn = len(ASNS)
        nprefix = rng.integers(2, 7, size=n_asn)
        total = int(nprefix.sum())
        pairs = rng.choice(len(firsts) * 256, size=total, replace=False)
        base = ((firsts[pairs // 256].astype(np.uint32) << 24) | ((pairs % 256).astype(np.uint32) << 16))
        first = np.concatenate([[0], np.cumsum(nprefix)[:-1]])
        return cls(base.astype(np.uint32), first, nprefix, [], [])

    def asns_of(self, kind: str, country: str | None = None) -> np.ndarray:
        """Indices of ASNs of a kind, in a country when it has any."""
        m = kind == ASN_KIND
        if country is not None and (m & (country == ASN_COUNTRY)).any():
            m = m & (country == ASN_COUNTRY)
        return np.flatnonzero(m)

    def draw(self, rng: np.random.Generator, asn_idx: np.ndarray) -> np.ndarray:
        """One random host address per requested ASN index (vectorised)."""
        asn_idx = np.asarray(asn_idx)
        p = self.asn_first[asn_idx] + (rng.random(len(asn_idx)) * self.asn_nprefix[asn_idx]).astype(int)
        host = rng.integers(256, 65535, size=len(asn_idx)).astype(np.uint32)
        return self.prefix_base[p] + host

    def asn_for_country(self, rng: np.random.Generator, kind: str, countries: np.ndarray) -> np.ndarray:
        """Pick an ASN of ``kind`` per row, matching the row's country when possible."""
        out = np.empty(len(countries), dtype=np.int64)
        for c in np.unique(countries):
            m = countries == c
            cand = self.asns_of(kind, str(c))
            out[m] = cand[rng.integers(0, len(cand), size=int(m.sum()))]
        return out

    def add(self, ips: np.ndarray, asn_idx: np.ndarray) -> int:
        """Append concrete IPs; returns the start offset of the new range."""
        start = self.size
        self.ips.append(ips.astype(np.uint32))
        self.ip_asn.append(np.asarray(asn_idx, dtype=np.int64))
        self.size += len(ips)
        return start

    def freeze(self) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated (ips, asn index) arrays once every population has its ranges."""
        if not self.ips:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        return np.concatenate(self.ips), np.concatenate(self.ip_asn)
