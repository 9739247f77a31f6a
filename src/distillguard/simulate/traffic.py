"""One group's exchanges for one day, fully vectorised.

Sessions: an active account-day gets Poisson(rate) sessions; each starts at a local hour drawn from
the group's profile (shifted by the account's time zone) and holds a run of exchanges separated by
gamma gaps. Sessions split into conversations (``turn_index``). Content columns are then filled
from pools by index; rows are grouped by prompt recipe so each recipe renders in one Arrow call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.contract import EXCHANGES, TIMESTAMP
from distillguard.simulate._util import DAY_US, HOUR_US, hex_ids, ip_strings
from distillguard.simulate.population import (
    IP_FRESH_ROW,
    IP_FRESH_SESSION,
    IP_POOL_ROW,
    IP_POOL_SESSION,
    Group,
    Population,
)
from distillguard.simulate.prompts.library import PromptLibrary
from distillguard.simulate.world import (
    ASN_NUMBERS,
    MODEL_CEILING,
    MODEL_MS_PER_TOKEN,
    MODELS,
    NEW_MODEL,
    PROFILES,
    UAS,
    IpSpace,
)

__all__ = ["DayContext", "group_day", "EXTRA_COLUMNS"]

#: helper columns carried with each day's rows and dropped before writing
EXTRA_COLUMNS = ("_acc", "_grp")
_UA = pa.array(UAS, pa.string())
_MODEL = pa.array(MODELS, pa.string())
_FINISH = pa.array(["end_turn", "max_tokens", "tool_use"], pa.string())
_SCHEMA = pa.schema(list(EXCHANGES.schema) + [pa.field("_acc", pa.int32()), pa.field("_grp", pa.int32())])


@dataclass
class DayContext:
    pop: Population
    lib: PromptLibrary
    space: IpSpace
    release_us: int


def _sessions(g: Group, ctx: DayContext, day_start: int, rng: np.random.Generator):
    pop, t = ctx.pop, g.timing
    m = g.members
    acc = m[(pop.active_from[m] < day_start + DAY_US) & (pop.active_to[m] > day_start)]
    if not acc.size:
        return None
    weekday = datetime.fromtimestamp(day_start / 1e6, tz=UTC).weekday()
    p = max(t.p_active, g.p_active_floor) * (t.weekend if weekday >= 5 else 1.0)
    ns = rng.poisson(pop.rate[acc] * (rng.random(acc.size) < p))
    sacc = np.repeat(acc, ns)
    if not sacc.size:
        return None
    hour = rng.choice(24, size=sacc.size, p=PROFILES[t.profile])
    local = hour * 3600.0 + rng.random(sacc.size) * 3600.0
    utc = np.mod(local - pop.tz[sacc] * 3600.0, 86400.0)
    start = day_start + (utc * 1e6).astype(np.int64)
    ok = (start >= pop.active_from[sacc]) & (start < pop.active_to[sacc])
    sacc, start = sacc[ok], start[ok]
    if not sacc.size:
        return None
    return sacc, start


def group_day(g: Group, ctx: DayContext, day_start: int, rng: np.random.Generator) -> pa.Table | None:
    """Exchanges of group ``g`` whose sessions start on the UTC day beginning at ``day_start`` (µs).

    Sessions may run past midnight; the caller carries those rows into the next day before sorting.
    """
    got = _sessions(g, ctx, day_start, rng)
    if got is None:
        return None
    sacc, start = got
    pop, t, c = ctx.pop, g.timing, g.content
    S = sacc.size
    if t.len_dist == "lognormal":
        L = np.maximum(1, rng.lognormal(np.log(t.session_len) - 0.18, 0.6, S)).astype(np.int64)
    elif t.session_len > 1:
        L = rng.geometric(1.0 / t.session_len, S).astype(np.int64)
    else:
        L = np.ones(S, np.int64)
    N = int(L.sum())
    sess = np.repeat(np.arange(S), L)
    first = np.cumsum(L) - L
    gaps = rng.gamma(t.gap_shape, t.gap_s / t.gap_shape, N)
    gaps[first] = 0.0
    cs = np.cumsum(gaps)
    ts = start[sess] + ((cs - cs[first][sess]) * 1e6).astype(np.int64)
    racc = sacc[sess]
    newc = np.zeros(N, bool)
    if t.conv_len <= 1:
        newc[:] = True
    else:
        newc[first] = True
        if np.isfinite(t.conv_len):
            newc |= rng.random(N) < 1.0 / t.conv_len
    conv_no = np.cumsum(newc) - 1
    n_conv = int(conv_no[-1]) + 1
    turn = np.arange(N) - np.flatnonzero(newc)[conv_no]
    # recipe per row (turn 0: weighted choice; later turns: the follow-up recipe), rows grouped by recipe
    R = len(c.recipes)
    w = np.array([x for _, x in c.recipes], float)
    rid = np.where(turn == 0, rng.choice(R, N, p=w / w.sum()), R)
    keep = ts < pop.active_to[racc]  # accounts banned mid-session stop there
    order = np.argsort(rid, kind="stable")
    order = order[keep[order]]
    ts, racc, sess, conv_no, turn, rid = ts[order], racc[order], sess[order], conv_no[order], turn[order], rid[order]
    N = ts.size
    if N == 0:
        return None
    counts = np.bincount(rid, minlength=R + 1)
    recipes = [r for r, _ in c.recipes] + [c.follow]
    prompt = pa.concat_arrays([ctx.lib.render(recipes[i], rng, int(k)) for i, k in enumerate(counts) if k])
    # system prompts: per account (apps) or per row (campaign templates)
    system = _system(g, ctx, racc, rid, rng)
    # network identity
    ip, asn_i = _ips(g, ctx, sacc, sess, racc, rng)
    # model choice and its ceiling
    th = (ts - ctx.release_us) / HOUR_US
    if c.pivot_delay_h is not None:
        p_new = np.where(th >= c.pivot_delay_h, c.pivot_share, np.where(th >= 0, 0.03, 0.0))
    else:
        p_new = np.where(th > 0, c.new_share * (1.0 - np.exp(-np.maximum(th, 0) / (24.0 * c.new_tau_days))), 0.0)
    old = np.asarray(c.old_models, float)
    model = np.where(rng.random(N) < p_new, NEW_MODEL, rng.choice(3, N, p=old / old.sum()))
    ceiling = MODEL_CEILING[model]
    max_tokens = np.where(rng.random(N) < c.p_ceiling, ceiling, np.minimum(pop.max_tokens[racc], ceiling))
    thinking = rng.random(N) < c.p_thinking
    n_tools = pop.n_tools[racc]
    out = rng.lognormal(np.log(c.out_median), c.out_sigma, N) * np.where(thinking, 1.8, 1.0)
    out = out.astype(np.int64) + 1
    finish = np.where(out >= max_tokens, 1, np.where((n_tools > 0) & (rng.random(N) < c.p_tool_use_finish), 2, 0))
    out = np.minimum(out, max_tokens)
    r = rng.random(N)
    p429 = 0.015 if t.gap_s < 5 else 0.003
    status = np.select([r < p429, r < p429 + 0.002, r < p429 + 0.004, r < p429 + 0.0045], [429, 529, 400, 500], 200)
    ok = status == 200
    sys_len = pc.fill_null(pc.utf8_length(system), 0).to_numpy(zero_copy_only=False)
    in_tok = ((pc.utf8_length(prompt).to_numpy(zero_copy_only=False) + sys_len) / 3.6).astype(np.int64) + 8
    in_tok += (turn * c.ctx_per_turn * rng.uniform(0.5, 1.5, N)).astype(np.int64) + n_tools * 160
    out = np.where(ok, out, 0)
    latency = np.where(ok, 250 + in_tok / 40 + out * MODEL_MS_PER_TOKEN[model] * rng.lognormal(0, 0.25, N),
                       rng.uniform(20, 600, N)).astype(np.int64)
    conv_ids = hex_ids("conv_", rng, n_conv, 10).take(pa.array(conv_no))
    arrays = [
        hex_ids("req_", rng, N, 12),
        pa.array(ts, TIMESTAMP),
        pop.account_id.take(pa.array(racc)),
        pop.keys.take(pa.array(pop.key_start[racc] + (rng.random(N) * pop.key_n[racc]).astype(np.int64))),
        ip_strings(ip),
        pa.array(ASN_NUMBERS[asn_i]),
        _UA.take(pa.array(pop.ua[racc])),
        _MODEL.take(pa.array(model)),
        system,
        prompt,
        conv_ids,
        pa.array(turn.astype(np.int64)),
        pa.array(n_tools),
        pa.array(thinking),
        pa.array(max_tokens.astype(np.int64)),
        pa.array(in_tok),
        pa.array(out.astype(np.int64)),
        _FINISH.take(pa.array(finish, mask=~ok)),
        pa.array(latency),
        pa.array(status.astype(np.int64)),
        pa.array(racc.astype(np.int32)),
        pa.array(np.full(N, g.index, np.int32)),
    ]
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


def _system(g: Group, ctx: DayContext, racc: np.ndarray, rid: np.ndarray, rng: np.random.Generator) -> pa.Array:
    c, n = g.content, racc.size
    if c.system is None:
        return pa.nulls(n, pa.string())
    pool = ctx.lib.pools[c.system]
    has = ctx.pop.has_system[racc]
    if c.system_per_row:
        has = has & ~np.isin(rid, c.no_system_recipes)
        idx = rng.integers(0, len(pool.gen), n)
    else:  # an app ships one system prompt: fixed per account
        idx = (racc.astype(np.int64) * 2654435761) % len(pool.gen)
    return pool.gen.take(pa.array(idx, mask=~has))


def _ips(g: Group, ctx: DayContext, sacc: np.ndarray, sess: np.ndarray, racc: np.ndarray,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pop = ctx.pop
    if g.ip_mode == IP_POOL_SESSION:  # home IP most sessions, sometimes the phone
        u = (rng.random(sacc.size) ** 3)[sess]
        idx = pop.ip_start[racc] + (u * pop.ip_n[racc]).astype(np.int64)
    elif g.ip_mode == IP_POOL_ROW:  # NAT egress, cloud IPs, proxy exits: any of the pool per request
        idx = pop.ip_start[racc] + (rng.random(racc.size) * pop.ip_n[racc]).astype(np.int64)
    elif g.ip_mode == IP_FRESH_SESSION:  # CGNAT: new address in the carrier's ASN per session
        asn = pop.asn_home[sacc]
        return ctx.space.draw(rng, asn)[sess], asn[sess]
    elif g.ip_mode == IP_FRESH_ROW:  # serverless: new address in the cloud's ASN per request
        asn = pop.asn_home[racc]
        return ctx.space.draw(rng, asn), asn
    else:
        raise ValueError(g.ip_mode)
    return pop.ips[idx], pop.ip_asn[idx]
