"""Online state shared by several gateway replicas through one Redis (``pip install distillguard[serve]``).

Design (``docs/online.md`` has the key layout, TTLs and memory per account):

- **Features: a per-account log of records, folded by the same code.** ``learn`` computes the
  exchange's input values once (:meth:`OnlineFeatures.record`, the batch definitions) and appends
  ``(replica, t_us, values)`` to the account's Redis list; every replica folds the records it has not
  seen yet into its local copy of the account's op states (:meth:`OnlineFeatures.apply`). Its own
  records are folded at once, so it reads its own writes. The ops are mergeable aggregates, so
  replicas that fold the same records in a different order agree (up to float rounding). Every
  ``checkpoint_every`` records a replica that is exactly in sync writes the folded state as a
  checkpoint (``marshal``: builtins only, nothing runs when it is read) and trims the log before it,
  so a newcomer loads one blob plus at most ``checkpoint_every`` records.
- **One round trip per decision.** ``score_one`` calls :meth:`sync`: one Lua script that first applies
  this replica's buffered writes (the previous ``learn_one``'s record, token spends, fingerprint
  notes, containment) and then returns everything the decision reads about the account: new log
  records, request count, contained/suspect/watchlist flags, its batch row, the raw state of its
  four token buckets, its row from ``accounts`` if this replica lacks it, and, for young accounts
  while anything is contained, the fingerprint matches of the hydra rule. ``learn_one`` right after
  costs no round trip (write-behind).
- **Consistency.** A replica's writes become visible to the others at its next ``sync`` or
  :meth:`flush` (call ``flush`` on a timer, e.g. every 100 ms, and at shutdown). Token spends run
  atomically in the script (request time, so replay is deterministic); two replicas deciding the same
  account in the same instant may both see the last token (at most one request per replica over the
  limit). The context (model ceilings, shared templates) is merged from Redis every
  ``context_refresh_s``. The batch view is shared (any replica's ``load_batch`` serves all).

>>> RedisState.KEY_LAYOUT["log"]
'{prefix}:log:{account}'
"""

from __future__ import annotations

import base64
import json
import marshal
import math
import os
import time
from datetime import date, datetime
from typing import Any

import orjson

from distillguard.features.account import SHARED_MIN_OTHERS
from distillguard.features.online import AccountState, OnlineFeatures
from distillguard.online.batchview import BatchAccount, BatchView
from distillguard.online.policy import Bucket, TokenBuckets
from distillguard.online.state import FINGERPRINT_KINDS, FingerprintMatch

__all__ = ["RedisState"]

_SEP = "\x1f"

_LUA = r"""
-- ARGV[1] prefix, ARGV[2] JSON array of write ops, ARGV[3] JSON array of read requests (or '').
local p = ARGV[1]
local ops = cjson.decode(ARGV[2])
local KINDS = {@KINDS@}
local function meta(a) return p .. ':m:' .. a end
local function fmt(x) return string.format('%.17g', x) end

local function take(key, rate, burst, t, ttl)
  local s = redis.call('HMGET', key, 'k', 't')
  local lvl, last = burst, t
  if s[1] then
    local tokens = tonumber(s[1])
    last = tonumber(s[2])
    lvl = tokens + math.max(0, t - last) / 1e6 * rate
    if lvl > burst then lvl = burst end
    if t > last then last = t end
  end
  if lvl >= 1.0 then lvl = lvl - 1.0 end
  redis.call('HSET', key, 'k', fmt(lvl), 't', string.format('%.0f', last))
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end

local function contain(a)
  local m = meta(a)
  if redis.call('HGET', m, 'contained') == '1' then return end
  redis.call('HSET', m, 'contained', '1')
  redis.call('SADD', p .. ':contained', a)
  for _, kind in ipairs(KINDS) do
    for _, v in ipairs(redis.call('SMEMBERS', p .. ':v:' .. a .. ':' .. kind)) do
      redis.call('SADD', p .. ':cu:' .. kind .. ':' .. v, a)
    end
  end
end

for _, o in ipairs(ops) do
  local op = o[1]
  if op == 'L' then          -- append a feature record: account, record, ttl
    local a, ttl = o[2], o[4]
    local len = redis.call('RPUSH', p .. ':log:' .. a, o[3])
    if ttl > 0 and len % 16 == 1 then  -- refresh the account's TTLs every 16 records, not on each
      redis.call('EXPIRE', p .. ':log:' .. a, ttl)
      redis.call('EXPIRE', meta(a), ttl)
      for _, kind in ipairs(KINDS) do redis.call('EXPIRE', p .. ':v:' .. a .. ':' .. kind, ttl) end
    end
  elseif op == 'S' then      -- suspect flag: account, 0/1
    redis.call('HSET', meta(o[2]), 'suspect', o[3])
  elseif op == 'T' then      -- token bucket take: key, rate, burst, t_us, ttl
    take(p .. ':b:' .. o[2], o[3], o[4], o[5], o[6])
  elseif op == 'N' then      -- fingerprint note: account, kind, value, cap, ttl
    local a, kind, v = o[2], o[3], o[4]
    local vk = p .. ':v:' .. a .. ':' .. kind
    if redis.call('SISMEMBER', vk, v) == 0 and redis.call('SCARD', vk) < o[5] then
      redis.call('SADD', vk, v)
      redis.call('SADD', p .. ':u:' .. kind .. ':' .. v, a)
      if redis.call('HGET', meta(a), 'contained') == '1' then redis.call('SADD', p .. ':cu:' .. kind .. ':' .. v, a) end
      if o[6] > 0 then redis.call('EXPIRE', vk, o[6]) end
    end
  elseif op == 'C' then      -- contain: account
    contain(o[2])
  elseif op == 'W' then      -- watchlist reasons: account, json
    redis.call('HSET', meta(o[2]), 'watch', o[3])
  elseif op == 'R' then      -- accounts row: account, json
    redis.call('SET', p .. ':row:' .. o[2], o[3])
  elseif op == 'K' then      -- checkpoint: account, index, blob
    local a, idx = o[2], o[3]
    local m = meta(a)
    local off = tonumber(redis.call('HGET', m, 'off') or '0')
    local n = off + redis.call('LLEN', p .. ':log:' .. a)
    if idx > off and idx <= n then
      redis.call('LTRIM', p .. ':log:' .. a, idx - off, -1)
      redis.call('HSET', m, 'off', idx, 'ck', o[4])
    end
  elseif op == 'X' then      -- context: model ceiling (max)
    local k = p .. ':ctx:ceil'
    local cur = redis.call('HGET', k, o[2])
    if not cur or o[3] > tonumber(cur) then redis.call('HSET', k, o[2], string.format('%.0f', o[3])) end
  elseif op == 'F' then      -- context: model first seen (min)
    local k = p .. ':ctx:first'
    local cur = redis.call('HGET', k, o[2])
    if not cur or o[3] < tonumber(cur) then redis.call('HSET', k, o[2], string.format('%.0f', o[3])) end
  elseif op == 'G' then      -- context: log start (min)
    local k = p .. ':ctx:start'
    local cur = redis.call('GET', k)
    if not cur or o[2] < tonumber(cur) then redis.call('SET', k, string.format('%.0f', o[2])) end
  elseif op == 'P' then      -- context: account seen on a template/preamble fp: kind, fp, account, min_others, ttl
    local sk = p .. ':ctx:shared:' .. o[2]
    if redis.call('SISMEMBER', sk, o[3]) == 0 then
      local fk = p .. ':ctx:fpa:' .. o[2] .. ':' .. o[3]
      redis.call('SADD', fk, o[4])
      if redis.call('SCARD', fk) > o[5] then
        redis.call('SADD', sk, o[3])
        redis.call('DEL', fk)
      elseif o[6] > 0 then
        redis.call('EXPIRE', fk, o[6])
      end
    end
  else
    return redis.error_reply('distillguard: unknown op ' .. tostring(op))
  end
end

local function read(rd)   -- rd: {account, applied, need_row, young_max, {kind: value}}
local a, applied, need_row, young_max, extra = rd[1], rd[2], rd[3], rd[4], rd[5]
local m = meta(a)
local mv = redis.call('HMGET', m, 'off', 'contained', 'suspect', 'watch')
local off = tonumber(mv[1] or '0')
local lk = p .. ':log:' .. a
local n = off + redis.call('LLEN', lk)
local ck = false
local from = applied
if applied < off or applied > n then
  from = off
  if off > 0 then ck = redis.call('HGET', m, 'ck') or false end
end
local entries = {}
if from < n then entries = redis.call('LRANGE', lk, from - off, -1) end
local batch = redis.call('HGET', p .. ':batch', a) or false
local bk = p .. ':b:'
local b1 = redis.call('HMGET', bk .. 'a:' .. a, 'k', 't')
local b2 = redis.call('HMGET', bk .. 'sa:' .. a, 'k', 't')
local b3, b4 = {false, false}, {false, false}
if batch then
  local cid = string.match(batch, '^([^\31]*)\31')
  if cid and cid ~= '' then
    b3 = redis.call('HMGET', bk .. 'c:' .. cid, 'k', 't')
    b4 = redis.call('HMGET', bk .. 'sc:' .. cid, 'k', 't')
  end
end
local row = false
if need_row == 1 then row = redis.call('GET', p .. ':row:' .. a) or false end
local matches = {}
if young_max > n and mv[2] ~= '1' and redis.call('SCARD', p .. ':contained') > 0 then
  for _, kind in ipairs(KINDS) do
    local vals = redis.call('SMEMBERS', p .. ':v:' .. a .. ':' .. kind)
    local x = extra[kind]
    if x then
      local seen = false
      for _, v in ipairs(vals) do if v == x then seen = true end end
      if not seen then table.insert(vals, x) end
    end
    for _, v in ipairs(vals) do
      local cuk = p .. ':cu:' .. kind .. ':' .. v
      local ncu = redis.call('SCARD', cuk)
      if ncu > 0 then
        local uk = p .. ':u:' .. kind .. ':' .. v
        table.insert(matches, {kind, redis.call('SCARD', uk), ncu, redis.call('SISMEMBER', uk, a),
                               redis.call('SISMEMBER', cuk, a)})
      end
    end
  end
end
return {n, off, entries, ck, mv[2] or '0', mv[3] or '0', mv[4] or false, batch,
                     {b1[1] or false, b1[2] or false, b2[1] or false, b2[2] or false,
                      b3[1] or false, b3[2] or false, b4[1] or false, b4[2] or false}, row, matches}
end

if ARGV[3] == '' then return '' end
local out = {}
for _, rd in ipairs(cjson.decode(ARGV[3])) do table.insert(out, read(rd)) end
return cjson.encode(out)
""".replace("@KINDS@", ", ".join(f"'{k}'" for k in FINGERPRINT_KINDS))


class _Meta:
    """What the last sync returned for one account (plus this replica's writes since)."""

    __slots__ = ("batch", "buckets", "contained", "matches", "n", "suspect", "watch")

    def __init__(self) -> None:
        self.n = 0
        self.contained = False
        self.suspect = False
        self.watch: list[str] = []
        self.batch: BatchAccount | None = None
        self.buckets: dict[str, tuple[float, int]] = {}
        self.matches: list[FingerprintMatch] = []


def _dumps(obj: Any) -> str:
    """``json.dumps(obj)`` as read back, written by orjson (several times faster on the per-decision ops,
    reads and records). Callers pass only strings, ints, None, bools and *finite* floats (orjson writes
    NaN/inf as null, json as NaN/Infinity: :func:`_record` checks the feature values, ``take`` its two
    floats); ints beyond 64 bits, which orjson cannot write, go through ``json``."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj)


def _record(replica: str, t_us: int, values: Any) -> str:
    """One feature record's JSON text: ``[replica, t_us, values]``."""
    for v in values:
        if v.__class__ is float and v - v != 0.0:  # NaN or ±inf: json writes them, orjson would write null
            return json.dumps([replica, t_us, values])
    return _dumps([replica, t_us, values])


def _loads(text: str | bytes) -> Any:
    """``json.loads`` of the script's reply (cjson: its numbers are doubles), through orjson."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _loads_record(text: str | bytes) -> Any:
    """A feature record as :func:`_dumps` wrote it: orjson's text has no ``", "`` outside strings, while
    ``json.dumps`` of a record (three items) always has one, so anything written by ``json`` (NaN, big
    ints, older replicas) is read back by ``json`` (orjson would turn an int beyond 64 bits into a float)."""
    if (b", " if isinstance(text, bytes) else ", ") in text:
        return json.loads(text)
    return orjson.loads(text)


def _json_default(x: Any) -> Any:
    if isinstance(x, datetime | date):
        return x.isoformat()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


class RedisState:
    """State in one Redis shared by every replica; see the module docstring for the design.

    Parameters
    ----------
    client: a ``redis.Redis`` client or a URL (``redis://host:6379/0``).
    prefix: key prefix (several independent deployments can share one Redis).
    replica: this replica's id in the log (default: random).
    account_ttl_s: an account's log, counters and fingerprint sets expire after this long without a
        request (default 30 days; 0: never). Its ``all``-window features then start over.
    checkpoint_every: records between checkpoints (bounds the log, and a cold replica's catch-up).
    context_refresh_s: how often the learned context (ceilings, shared templates) is merged from Redis.
    max_pending: buffered write ops that force a flush.
    max_local_accounts: accounts whose feature state this replica keeps locally (least recently
        decided evicted first; an evicted account is reloaded from its checkpoint and log on its next
        request). None: no limit.
    """

    #: Every key, for docs and operators (``{account}`` is the account id, ``{kind}`` a fingerprint kind).
    KEY_LAYOUT = {
        "log": "{prefix}:log:{account}",
        "meta": "{prefix}:m:{account}",
        "row": "{prefix}:row:{account}",
        "values": "{prefix}:v:{account}:{kind}",
        "users": "{prefix}:u:{kind}:{value}",
        "contained_users": "{prefix}:cu:{kind}:{value}",
        "contained": "{prefix}:contained",
        "bucket": "{prefix}:b:{a|sa|c|sc}:{account or cluster}",
        "batch": "{prefix}:batch",
        "context": "{prefix}:ctx:{ceil|first|start|shared:KIND|fpa:KIND:FP}",
    }

    def __init__(self, client: Any, *, prefix: str = "dg", replica: str | None = None,
                 account_ttl_s: int = 30 * 86400, checkpoint_every: int = 64, context_refresh_s: float = 1.0,
                 max_pending: int = 4096, max_local_accounts: int | None = 100_000) -> None:
        import redis

        self.client = redis.Redis.from_url(client) if isinstance(client, str) else client
        self.prefix = prefix
        self.replica = replica or os.urandom(4).hex()
        self.account_ttl_s = int(account_ttl_s)
        self.checkpoint_every = int(checkpoint_every)
        self.context_refresh_s = context_refresh_s
        self.max_pending = max_pending
        self.max_local_accounts = max_local_accounts
        self.features = OnlineFeatures()
        self._script = self.client.register_script(_LUA)
        self._cap = 32
        self._reset_local()

    def _reset_local(self) -> None:
        self._ops: list[tuple] = []
        self._plain_json = False
        self._noted: dict[str, dict[str, set[str]]] = {}  # account -> kind -> values this replica sent
        self._meta: dict[str, _Meta] = {}
        self._applied: dict[str, int] = {}
        self._fresh: str | None = None
        self._prefetched: frozenset[str] = frozenset()
        self._current: str | None = None
        self._batch = BatchView()
        self._ctx_at = 0.0

    def bind(self, features: OnlineFeatures, *, fp_cap: int = 32) -> None:
        self.features, self._cap = features, fp_cap

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- the round trip ------------------------------------------------------------------------------
    def _op(self, *args: Any) -> None:
        self._ops.append(args)
        if len(self._ops) >= self.max_pending:
            self.flush()

    def _dumps_ops(self, ops: list[tuple]) -> str:
        if self._plain_json:
            self._plain_json = False
            return json.dumps(ops)
        return _dumps(ops)

    def flush(self) -> None:
        if self._ops:
            ops, self._ops = self._ops, []
            self._script(args=[self.prefix, self._dumps_ops(ops), ""])

    def sync(self, account_id: str, extras: dict[str, Any], young_max: int) -> None:
        self._current = account_id  # whose cluster buckets bucket_level reads
        if self._fresh == account_id or account_id in self._prefetched:
            return
        self._prefetched = frozenset()
        self._round_trip([(account_id, extras, young_max)])
        self._fresh = account_id

    def prefetch(self, requests: list[tuple[str, dict[str, Any], int]]) -> None:
        """One round trip for several accounts (``sync``'s arguments each): a gateway serving concurrent
        requests decides them all on this view, as if they had arrived at the same instant; their
        ``learn`` calls then need no round trip either, until :meth:`end_batch`."""
        seen: dict[str, tuple[str, dict[str, Any], int]] = {}
        for r in requests:
            seen.setdefault(r[0], r)
        self._fresh = None
        self._round_trip(list(seen.values()))
        self._prefetched = frozenset(seen)

    def end_batch(self) -> None:
        """The prefetched view is used up: the next read of any account goes to Redis again."""
        self._prefetched = frozenset()

    def _round_trip(self, requests: list[tuple[str, dict[str, Any], int]]) -> None:
        now = time.monotonic()
        if now - self._ctx_at >= self.context_refresh_s:
            self._refresh_context()
            self._ctx_at = now
        f = self.features
        reads = [[a, self._applied.get(a, 0), 0 if a in f.accounts else 1, young, {k: str(v) for k, v in x.items()}]
                 for a, x, young in requests]
        ops, self._ops = self._ops, []
        results = _loads(self._script(args=[self.prefix, self._dumps_ops(ops), _dumps(reads)]))
        for (account_id, applied, *_), res in zip(reads, results, strict=True):
            self._absorb(account_id, applied, res)

    def _absorb(self, account_id: str, applied: int, res: list[Any]) -> None:
        f = self.features
        n, off, entries, ck, contained, suspect, watch, batch, bk, row, matches = res
        me = _Meta()
        me.n, me.contained, me.suspect = n, contained == "1", suspect == "1"
        me.watch = json.loads(watch) if watch else []
        if batch:
            cid, size, risk, flag = batch.split(_SEP)
            me.batch = BatchAccount(cid or None, int(size), float(risk) if risk else None, flag == "1")
        if bk:
            cid = me.batch.cluster_id if me.batch is not None else None
            for j, key in enumerate(("a:" + account_id, "sa:" + account_id, f"c:{cid}", f"sc:{cid}")):
                if bk[2 * j]:
                    me.buckets[key] = (float(bk[2 * j]), int(bk[2 * j + 1]))
        if matches:  # cjson writes an empty array as {}
            me.matches = [(k, nu, ncu, bool(iu), bool(ic)) for k, nu, ncu, iu, ic in matches]
        if row:
            f.learn_account(json.loads(row))
        # fold the records this replica has not seen
        if f.state(account_id) is None and not ck:
            own = None  # nothing local (new here, or evicted): fold every record, ours too
        elif ck or applied > n or applied < off:
            f.set_state(account_id, AccountState.from_tuple(marshal.loads(base64.b64decode(ck))) if ck else None)
            own = None  # state rebuilt from the checkpoint: fold every record, ours too
        else:
            own = self.replica
        for e in entries or ():
            rep, t_us, values = _loads_record(e)
            if rep != own:
                f.apply(account_id, t_us, values)
        self._applied.pop(account_id, None)
        self._applied[account_id] = n  # (re)inserted last: dict order is least recently synced first
        self._meta[account_id] = me
        if self.max_local_accounts is not None and len(self._applied) > self.max_local_accounts:
            self._evict(len(self._applied) - self.max_local_accounts, keep=account_id)
        if n - off >= self.checkpoint_every:  # exactly in sync now: checkpoint and trim the log
            st = f.state(account_id)
            if st is not None:
                self._op("K", account_id, n, base64.b64encode(marshal.dumps(st.to_tuple())).decode())

    def _evict(self, k: int, keep: str) -> None:
        """Drop the local copies of the ``k`` least recently synced accounts (their state is in Redis)."""
        drop: list[str] = []
        for a in self._applied:  # oldest first; stops after k
            if len(drop) >= k:
                break
            if a != keep and a not in self._prefetched:
                drop.append(a)
        for a in drop:
            self._applied.pop(a, None)
            self._meta.pop(a, None)
            self._noted.pop(a, None)
            self.features.set_state(a, None)

    def _m(self, account_id: str) -> _Meta:
        me = self._meta.get(account_id)
        if me is None:
            me = self._meta[account_id] = _Meta()
        return me

    # -- reads (as of the last sync) -----------------------------------------------------------------
    def requests(self, account_id: str) -> int:
        return self._m(account_id).n

    def is_contained(self, account_id: str) -> bool:
        return self._m(account_id).contained

    def is_suspect(self, account_id: str) -> bool:
        return self._m(account_id).suspect

    def watch_reasons(self, account_id: str) -> list[str]:
        return self._m(account_id).watch

    def batch_account(self, account_id: str) -> BatchAccount | None:
        return self._m(account_id).batch

    def bucket_level(self, key: str, bucket: Bucket, t_us: int) -> float:
        if key.startswith(("a:", "sa:")):
            me = self._meta.get(key.split(":", 1)[1])
        else:  # a cluster bucket: fetched with the account being decided
            me = self._meta.get(self._current) if self._current is not None else None
        return TokenBuckets.level_of(None if me is None else me.buckets.get(key), bucket, t_us)

    def fingerprint_matches(self, account_id: str, extras: dict[str, Any]) -> list[FingerprintMatch]:
        return self._m(account_id).matches

    @property
    def batch(self) -> BatchView:
        return self._batch

    def contained(self) -> set[str]:
        self.flush()
        return {x.decode() for x in self.client.smembers(self._key("contained"))}

    # -- writes (buffered) ---------------------------------------------------------------------------
    def learn(self, account_id: str, exchange: dict, signals: dict | None, t_us: int) -> int:
        f = self.features
        for what, k, v in f.context.learn(exchange, signals, t_us):
            if what == "ceiling":
                self._op("X", k, v)
            elif what == "first":
                self._op("F", k, v)
            elif what == "start":
                self._op("G", v)
            else:
                self._op("P", k, str(v), account_id, SHARED_MIN_OTHERS, self._fp_ttl())
        _, values = f.record(exchange, signals, t_us)
        f.apply(account_id, t_us, values)
        self._op("L", account_id, _record(self.replica, t_us, values), self.account_ttl_s)
        me = self._m(account_id)
        me.n += 1
        self._fresh = None  # the next read of this account must see this write (and others')
        return me.n

    def _fp_ttl(self) -> int:
        return (self.features.max_hours + 24) * 3600

    def set_suspect(self, account_id: str, suspect: bool) -> None:
        me = self._m(account_id)
        if me.suspect != suspect:
            me.suspect = suspect
            self._op("S", account_id, "1" if suspect else "0")

    def take(self, key: str, bucket: Bucket, t_us: int) -> None:
        # TTL: once full again by wall time the bucket can go (request time runs at least as fast)
        ttl = int(bucket.burst / bucket.rate) + 60 if bucket.rate > 0 else 0
        rate, burst = float(bucket.rate), float(bucket.burst)
        if not (math.isfinite(rate) and math.isfinite(burst)):
            self._plain_json = True  # orjson would write them as null: these ops go through json
        self._op("T", key, rate, burst, t_us, ttl)

    def note(self, account_id: str, kind: str, value: Any) -> None:
        v = str(value)
        known = self._noted.get(account_id)
        if known is None:
            known = self._noted[account_id] = {}
        sent = known.get(kind)
        if sent is None:
            sent = known[kind] = set()
        # Already sent: noting again changes nothing. Sent fp_cap distinct values: Redis holds at least
        # that many (each was added, or refused because the set was full), so the script would refuse
        # this one too. Either way the op would be a no-op there.
        if v in sent or len(sent) >= self._cap:
            return
        sent.add(v)
        self._op("N", account_id, kind, v, self._cap, self.account_ttl_s)

    def contain(self, account_id: str) -> None:
        self._m(account_id).contained = True
        self._op("C", account_id)

    def watch(self, account_id: str, reasons: list[str]) -> None:
        self._m(account_id).watch = list(reasons)
        self._op("W", account_id, json.dumps(reasons))

    def learn_account(self, row: dict) -> None:
        self.features.learn_account(row)
        self._op("R", row["account_id"], json.dumps(row, default=_json_default))

    def load_batch(self, view: BatchView) -> None:
        """Replace the shared batch view atomically (written aside, then RENAME)."""
        self.flush()
        tmp = self._key("batch", "loading", self.replica)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(tmp)
        items: dict[str, str] = {}
        for a, b in view.accounts.items():
            items[a] = _SEP.join((b.cluster_id or "", str(b.cluster_size),
                                  "" if b.cluster_risk is None else repr(float(b.cluster_risk)), "1" if b.flagged else "0"))
            if len(items) >= 5000:
                pipe.hset(tmp, mapping=items)
                items = {}
        if items:
            pipe.hset(tmp, mapping=items)
        if view.accounts:
            pipe.rename(tmp, self._key("batch"))
        else:
            pipe.delete(self._key("batch"))
        pipe.set(self._key("batch", "as_of"), view.as_of.isoformat() if view.as_of else "")
        pipe.execute()
        self._batch = view
        self._fresh = None

    def _refresh_context(self) -> None:
        ctx = self.features.context
        if ctx.frozen:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._key("ctx", "ceil"))
        pipe.hgetall(self._key("ctx", "first"))
        pipe.get(self._key("ctx", "start"))
        pipe.smembers(self._key("ctx", "shared", "template"))
        pipe.smembers(self._key("ctx", "shared", "preamble"))
        ceil, first, start, st, sp = pipe.execute()
        ctx.merge({k.decode(): int(v) for k, v in ceil.items()}, {k.decode(): int(v) for k, v in first.items()},
                  None if start is None else int(start),
                  {"template": {int(x) for x in st}, "preamble": {int(x) for x in sp}})

    # -- snapshot: Redis persists itself ------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        self.flush()
        return {"backend": "redis", "prefix": self.prefix}

    def load(self, d: dict[str, Any]) -> None:
        if d.get("backend") != "redis" or d.get("prefix") != self.prefix:
            raise ValueError(f"snapshot is for {d.get('backend')!r} prefix {d.get('prefix')!r}, not redis {self.prefix!r}")
        self._reset_local()
        for a in self.features.account_ids():  # local caches are rebuilt from Redis on the next sync
            self.features.set_state(a, None)
