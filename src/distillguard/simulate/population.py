"""Accounts of a scenario: sign-up attributes (the ``accounts`` table) and the per-account behaviour
parameters the traffic generator needs (time zone, rate, IP range, UA, keys, limits).

All populations draw from the shared vocabularies in ``world``; the only thing that differs is
weights and behaviour. Ids come from one generator over all accounts, so they carry no label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from distillguard.simulate._util import DAY_US, HOUR_US, child_rng, hex_ids
from distillguard.simulate.campaigns import Campaign, hydra_lifecycle
from distillguard.simulate.personas import PERSONAS, Content, Persona, Timing, ua_weights
from distillguard.simulate.prompts.library import PromptLibrary
from distillguard.simulate.world import (
    CONSUMER_EMAIL,
    COUNTRIES,
    COUNTRY_TZ,
    COUNTRY_W,
    IpSpace,
    pick,
)

__all__ = ["Group", "Population", "build_population", "IP_POOL_SESSION", "IP_POOL_ROW", "IP_FRESH_SESSION",
           "IP_FRESH_ROW"]

IP_POOL_SESSION, IP_POOL_ROW, IP_FRESH_SESSION, IP_FRESH_ROW = 0, 1, 2, 3
_PERSONA_IP = {"home": IP_POOL_SESSION, "mobile": IP_FRESH_SESSION, "nat": IP_POOL_ROW, "cloud": IP_POOL_ROW,
               "serverless": IP_FRESH_ROW}
_WORDS = ["north", "blue", "river", "stone", "bright", "lumen", "cedar", "quant", "nova", "peak", "atlas", "orbit",
          "delta", "harbor", "iron", "maple", "pixel", "signal", "summit", "vertex", "willow", "zen", "cobalt", "ember"]
_TLD = ["com", "io", "ai", "co", "de", "net", "tech", "dev"]
_EDU = ["{w}.edu", "{w}.ac.uk", "uni-{w}.de", "{w}.edu.au", "{w}-u.ac.jp", "{w}.edu.sg"]
_ATTACK_EMAIL = {"gmail.com": 0.4, "outlook.com": 0.2, "proton.me": 0.08, "hotmail.com": 0.1, "yahoo.com": 0.1,
                 "icloud.com": 0.07, "mail.com": 0.05}
_ATTACK_TIERS = {"build": 0.6, "scale": 0.25, "free": 0.15}


@dataclass
class Group:
    """A persona or a campaign: its member accounts and how they behave."""

    index: int
    name: str
    kind: str  # persona | campaign
    members: np.ndarray
    timing: Timing
    content: Content
    ip_mode: int
    hard_negative: bool = False
    campaign: Campaign | None = None
    p_active_floor: float = 0.0


@dataclass
class Population:
    n: int
    account_id: pa.Array
    cols: dict[str, np.ndarray]  # per-account numpy arrays (see build_population)
    org_id: pa.Array
    payment: pa.Array
    keys: pa.Array
    ips: np.ndarray
    ip_asn: np.ndarray  # index into world.ASNS per entry of ips
    groups: list[Group]
    role: list[str | None] = field(default_factory=list)
    space: IpSpace | None = None

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["cols"][name]
        except KeyError:
            raise AttributeError(name) from None


def _org_domains(rng: np.random.Generator, n: int, edu: bool) -> list[str]:
    out = []
    for _ in range(n):
        w = _WORDS[int(rng.integers(len(_WORDS)))] + _WORDS[int(rng.integers(len(_WORDS)))]
        if edu:
            out.append(_EDU[int(rng.integers(len(_EDU)))].format(w=w))
        else:
            out.append(f"{w}.{_TLD[int(rng.integers(len(_TLD)))]}")
    return out


def _countries(rng: np.random.Generator, n: int, allowed: tuple[str, ...] | None = None) -> np.ndarray:
    codes = np.array([c for c, _, _ in COUNTRIES])
    w = COUNTRY_W.copy()
    if allowed is not None:
        w = w * np.isin(codes, allowed)
        w = w / w.sum()
    return rng.choice(len(codes), size=n, p=w)


class _Builder:
    """Accumulates per-account columns group by group."""

    def __init__(self, seed: int, t0: int, t1: int, space: IpSpace) -> None:
        self.seed, self.t0, self.t1, self.space = seed, t0, t1, space
        self.parts: list[dict[str, np.ndarray]] = []
        self.org: list[np.ndarray] = []  # org number or -1
        self.card: list[np.ndarray] = []  # card number or -1
        self.roles: list[str | None] = []
        self.n_orgs = 0
        self.n_cards = 0
        self.n = 0

    def _new_orgs(self, k: int) -> np.ndarray:
        ids = np.arange(self.n_orgs, self.n_orgs + k)
        self.n_orgs += k
        return ids

    def _new_cards(self, k: int) -> np.ndarray:
        ids = np.arange(self.n_cards, self.n_cards + k)
        self.n_cards += k
        return ids

    def _ip_ranges(self, rng: np.random.Generator, ips_per: np.ndarray, asn_per: np.ndarray) -> np.ndarray:
        """One fresh range per entry of ``ips_per`` (count) in the ASN ``asn_per``; returns starts."""
        asn_rep = np.repeat(asn_per, ips_per)
        start = self.space.add(self.space.draw(rng, asn_rep), asn_rep)
        return start + np.concatenate([[0], np.cumsum(ips_per)[:-1]]).astype(np.int64)

    def persona(self, p: Persona, n: int, gi: int) -> dict[str, np.ndarray]:
        rng = child_rng(self.seed, 1, gi)
        country = _countries(rng, n)
        tz = COUNTRY_TZ[country] + np.where(np.isin(country, [0, 8, 10, 5]), rng.integers(-2, 2, n), 0)
        cc = np.array([c for c, _, _ in COUNTRIES])[country]
        # organisations
        org = np.full(n, -1)
        if p.org_size is not None:
            sizes = []
            while sum(sizes) < n:
                sizes.append(int(rng.integers(p.org_size[0], p.org_size[1] + 1)))
            org_local = np.repeat(np.arange(len(sizes)), sizes)[:n]
            org = self._new_orgs(len(sizes))[org_local]
        n_org_local = len(np.unique(org[org >= 0])) if p.org_size else 0
        # sign-up time
        new = rng.random(n) < p.p_new
        old_age = (rng.beta(1.2, 2.5, n) * 730 + 1) * DAY_US
        created = np.where(new, self.t0 + rng.random(n) * max(self.t1 - self.t0 - DAY_US, HOUR_US),
                           self.t0 - old_age).astype(np.int64)
        active_from = created + (rng.random(n) * 2 * HOUR_US).astype(np.int64)
        churn = rng.random(n) < 0.03
        active_to = np.where(churn, np.maximum(active_from, self.t0) + rng.random(n) * (self.t1 - self.t0),
                             self.t1).astype(np.int64)
        # e-mail
        if p.email == "consumer":
            email = pick(rng, CONSUMER_EMAIL, n)
        else:
            dom_n = max(n_org_local, 1) if p.org_size else max(8, n // 40)
            doms = np.array(_org_domains(rng, dom_n, p.email == "edu"), dtype=object)
            base = org - org[org >= 0].min() if p.org_size else rng.integers(0, dom_n, n)
            email = doms[np.minimum(base, dom_n - 1)]
            # some members sign up with a private address
            priv = rng.random(n) < 0.1
            email = np.where(priv, pick(rng, CONSUMER_EMAIL, n), email)
        # payment
        card = np.full(n, -1)
        has = rng.random(n) < p.p_payment
        if p.shared_card and p.org_size:
            org_cards = self._new_cards(n_org_local)
            card = np.where(has, org_cards[org - org.min()], -1)
        elif p.name in ("enterprise_backend", "batch_api", "reseller_app") and p.org_size:
            org_cards = self._new_cards(n_org_local)
            card = org_cards[org - org.min()]
        else:
            card = np.where(has, self._new_cards(n), -1)
        # IPs
        asn_home = self.space.asn_for_country(rng, p.ip_kind, cc)
        if p.ip_mode == "nat":
            kinds = np.where(rng.random(n_org_local) < 0.5, "edu", "biz")
            org_cc = cc[np.unique(org - org.min(), return_index=True)[1]]
            org_asn = np.array([self.space.asn_for_country(rng, str(k), np.array([c]))[0]
                                for k, c in zip(kinds, org_cc, strict=True)])
            org_n = rng.integers(2, 5, n_org_local)
            org_start = self._ip_ranges(rng, org_n, org_asn)
            ip_start, ip_n = org_start[org - org.min()], org_n[org - org.min()]
            asn_home = org_asn[org - org.min()]
        elif p.ip_mode == "home":
            alt = self.space.asn_for_country(rng, "mobile", cc)
            both = np.stack([asn_home, alt], axis=1).ravel()
            start = self.space.add(self.space.draw(rng, both), both)
            ip_start, ip_n = start + 2 * np.arange(n), np.full(n, 2)
        elif p.ip_mode == "cloud":
            k = rng.integers(2, 7, n)
            ip_start, ip_n = self._ip_ranges(rng, k, asn_home), k
        else:  # mobile, serverless: fresh draws; one stored IP for sign-up
            ip_start, ip_n = self._ip_ranges(rng, np.ones(n, int), asn_home), np.ones(n, int)
        uaw = ua_weights(p.uas)
        ua = rng.choice(list(uaw), size=n, p=np.array(list(uaw.values())) / sum(uaw.values()))
        c = p.content
        mt = np.array([v for v, _ in c.max_tokens])[
            rng.choice(len(c.max_tokens), n, p=np.array([w for _, w in c.max_tokens]) / sum(w for _, w in c.max_tokens))]
        tools = np.where(rng.random(n) < c.p_tools, rng.integers(max(c.tools[0], 1), max(c.tools[1], 2), n), 0)
        sigma = p.timing.sigma
        weight = np.exp(rng.normal(-sigma * sigma / 2, sigma, n))
        cols = dict(
            created_at=created, active_from=active_from, active_to=active_to, country=cc, tz=tz.astype(float),
            tier=pick(rng, p.tiers, n), email_domain=email, verified=rng.random(n) < p.p_verified,
            rate=p.timing.sessions * weight, ua=ua.astype(np.int64),
            key_n=rng.integers(p.n_keys[0], p.n_keys[1] + 1, n), ip_start=np.asarray(ip_start, np.int64),
            ip_n=np.asarray(ip_n, np.int64), asn_home=np.asarray(asn_home, np.int64), max_tokens=mt,
            n_tools=tools.astype(np.int64), group=np.full(n, gi),
            has_system=rng.random(n) < c.p_system,
        )
        self._push(cols, org, card, [None] * n)
        return cols

    def campaign(self, c: Campaign, gi: int, proxy: tuple[int, int] | None) -> dict[str, np.ndarray]:
        rng = child_rng(self.seed, 2, gi)
        n = c.n_accounts
        t0 = self.t0 + int(c.start_day * DAY_US)
        t1 = self.t1 if c.end_day is None else min(self.t1, self.t0 + int(c.end_day * DAY_US))
        created, af, at, wave = hydra_lifecycle(c, n, t0, t1, rng)
        roles = ["wave-0" if w == 0 else f"replacement-day-{w}" for w in wave] if c.waves else ["initial"] * n
        if c.aged:
            created = np.minimum(created, t0 - (rng.uniform(60, 400, n) * DAY_US).astype(np.int64))
            roles = [f"aged-{r}" for r in roles]
        country = _countries(rng, n, c.declared_countries)
        cc = np.array([x for x, _, _ in COUNTRIES])[country]
        cards = self._new_cards(max(1, c.n_payment))
        # a few instruments carry most accounts (Zipf-like), free-tier accounts have none
        zipf = 1.0 / np.arange(1, len(cards) + 1)
        card = cards[rng.choice(len(cards), n, p=zipf / zipf.sum())]
        tier = pick(rng, _ATTACK_TIERS, n)
        card = np.where(tier == "free", -1, card)
        if c.infra == "proxy":
            assert proxy is not None
            ip_start, ip_n = np.full(n, proxy[0]), np.full(n, proxy[1])
            mode, asn_home = IP_POOL_ROW, np.zeros(n, np.int64)
        elif c.infra == "residential":
            asn_home = self.space.asn_for_country(rng, "res", cc)
            ip_start, ip_n, mode = self._ip_ranges(rng, np.ones(n, int), asn_home), np.ones(n, int), IP_POOL_SESSION
        elif c.infra == "cloud":
            asn_home = self.space.asn_for_country(rng, "cloud", cc)
            k = rng.integers(2, 5, n)
            ip_start, ip_n, mode = self._ip_ranges(rng, k, asn_home), k, IP_POOL_ROW
        else:
            raise ValueError(f"unknown infra {c.infra!r}")
        days = np.maximum((at - af) / DAY_US, 1e-3)
        weight = np.exp(rng.normal(-0.125, 0.5, n))
        timing = c.timing(1.0)
        activity = timing.p_active * ((5 + 2 * timing.weekend) / 7)
        per_day = c.n_exchanges * weight / float((weight * days).sum())
        uaw = ua_weights(Campaign.uas())
        ua = rng.choice(list(uaw), size=n, p=np.array(list(uaw.values())) / sum(uaw.values()))
        agentic = c.style == "agentic_trajectories"
        cols = dict(
            created_at=created, active_from=af, active_to=at, country=cc,
            tz=np.full(n, c.operator_tz if c.human_timing else 0.0), tier=tier,
            email_domain=pick(rng, _ATTACK_EMAIL, n), verified=rng.random(n) < 0.08,
            rate=per_day / timing.session_len / activity, ua=ua.astype(np.int64), key_n=np.ones(n, np.int64),
            ip_start=np.asarray(ip_start, np.int64), ip_n=np.asarray(ip_n, np.int64),
            asn_home=np.asarray(asn_home, np.int64),
            max_tokens=np.array([16384, 32768, 65536])[rng.integers(0, 3, n)],
            n_tools=np.where(agentic, rng.integers(8, 40, n), 0).astype(np.int64), group=np.full(n, gi),
            has_system=np.ones(n, bool),
        )
        self.mode_of[gi] = mode
        self._push(cols, np.full(n, -1), card, roles)
        return cols

    mode_of: dict[int, int]

    def _push(self, cols: dict[str, np.ndarray], org: np.ndarray, card: np.ndarray, roles: list[str | None]) -> None:
        self.parts.append(cols)
        self.org.append(org)
        self.card.append(card)
        self.roles.extend(roles)
        self.n += len(org)


def _proxy_pool(space: IpSpace, rng: np.random.Generator, k: int) -> tuple[int, int]:
    """A commercial residential/mobile proxy network: ``k`` exit IPs spread like ordinary households."""
    cc = np.array([c for c, _, _ in COUNTRIES])[_countries(rng, k)]
    mobile = rng.random(k) < 0.25
    asn = np.where(mobile, space.asn_for_country(rng, "mobile", cc), space.asn_for_country(rng, "res", cc))
    return space.add(space.draw(rng, asn), asn), k


def build_population(seed: int, t0: int, t1: int, personas: dict[str, int], campaigns: tuple[Campaign, ...],
                     lib: PromptLibrary, min_p_active: float = 0.0) -> Population:
    space = IpSpace.build(child_rng(seed, 0, 1))
    b = _Builder(seed, t0, t1, space)
    b.mode_of = {}
    groups: list[Group] = []
    gi = 0
    starts = []
    for name, n in personas.items():
        p = PERSONAS[name]
        starts.append(b.n)
        b.persona(p, n, gi)
        members = np.arange(starts[-1], b.n)
        groups.append(Group(gi, name, "persona", members, p.timing, p.content, _PERSONA_IP[p.ip_mode],
                            p.hard_negative, p_active_floor=min_p_active))
        gi += 1
    proxies: list[tuple[int, int]] = []
    for c in campaigns:
        proxy = None
        if c.infra == "proxy":
            proxy = _proxy_pool(space, child_rng(seed, 3, gi), c.proxy_ips or max(8, c.n_accounts // 6))
            proxies.append(proxy)
        starts.append(b.n)
        b.campaign(c, gi, proxy)
        members = np.arange(starts[-1], b.n)
        content = c.content(lib, child_rng(seed, 4, gi))
        groups.append(Group(gi, c.campaign_id, "campaign", members, c.timing(1.0), content, b.mode_of[gi],
                            campaign=c))
        gi += 1
    cols = {k: np.concatenate([part[k] for part in b.parts]) for k in b.parts[0]}
    n = b.n
    rng = child_rng(seed, 5)
    # proxy exit IPs are real households: some home-broadband customers sit behind them
    for start, k in proxies:
        home = np.flatnonzero(np.isin(cols["group"], [g.index for g in groups if g.kind == "persona"
                                                        and g.ip_mode == IP_POOL_SESSION]))
        if home.size:
            chosen = rng.choice(home, size=min(home.size, max(3, k // 4)), replace=False)
            ips_all, asn_all = space.freeze()
            src = start + rng.integers(0, k, chosen.size)
            alt = cols["ip_start"][chosen] + 1
            pairs_ip = np.stack([ips_all[src], ips_all[alt]], axis=1).ravel()
            pairs_asn = np.stack([asn_all[src], asn_all[alt]], axis=1).ravel()
            new_start = space.add(pairs_ip, pairs_asn)
            cols["ip_start"][chosen] = new_start + 2 * np.arange(chosen.size)
            for i in chosen:
                b.roles[i] = "proxy-household"
    ips, ip_asn = space.freeze()
    # API keys: a contiguous block per account
    key_start = np.concatenate([[0], np.cumsum(cols["key_n"])[:-1]]).astype(np.int64)
    cols["key_start"] = key_start
    keys = hex_ids("key_", child_rng(seed, 6), int(cols["key_n"].sum()), 12)
    account_id = hex_ids("acct_", child_rng(seed, 7), n, 10)
    org = np.concatenate(b.org)
    org_ids = hex_ids("org_", child_rng(seed, 8), max(b.n_orgs, 1), 8)
    org_id = pa.array(np.where(org >= 0, org, 0)).cast(pa.int64())
    org_col = org_ids.take(org_id).to_numpy(zero_copy_only=False).astype(object)
    org_col[org < 0] = None
    card = np.concatenate(b.card)
    card_ids = hex_ids("pm_", child_rng(seed, 9), max(b.n_cards, 1), 12)
    card_col = card_ids.take(pa.array(np.where(card >= 0, card, 0))).to_numpy(zero_copy_only=False).astype(object)
    card_col[card < 0] = None
    # sign-up from one address of the account's range (a random proxy exit for proxy campaigns)
    off = (rng.random(n) * np.where(cols["group"] >= len(personas), cols["ip_n"], 1)).astype(np.int64)
    cols["signup_ip"] = ips[cols["ip_start"] + off]
    return Population(n, account_id, cols, pa.array(org_col, pa.string()), pa.array(card_col, pa.string()),
                      keys, ips, ip_asn, groups, b.roles, space)
