"""Redis-shared online state, against a real ``redis-server`` (started here on a free loopback port,
no persistence, killed at teardown): the same stream gives the same decisions in process and through
Redis; a new scorer on the same Redis continues exactly (restart loses nothing); two scorer
*processes* see each other's learning (containment, token spends, features, hydra replacement)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distillguard.features.online import Context
from distillguard.online import (
    BatchAccount,
    BatchView,
    Bucket,
    MemoryState,
    OnlineScorer,
    Policy,
    RedisState,
)
from distillguard.scoring.defaults import default_model
from test_online import T0, _acct, _ex, _model, _policy, _stream

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not on PATH (apt-get install redis-server)")
TESTS = Path(__file__).resolve().parent


def _prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


def _frozen_context() -> Context:
    """A batch-style context (frozen), so that a restarted replica needs nothing but Redis."""
    start = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    return Context(ceiling={"m1": 8192, "m2": 8192}, model_first_us={"m1": start, "m2": start + 3 * 86_400_000_000},
                   log_start_us=start, shared={"template": {1, 2}, "preamble": {7}}, frozen=True)


def _world(n: int = 800, seed: int = 5):
    accounts, ex, sig = _stream(n, seed=seed)
    by_id = {a["account_id"]: a for a in accounts}
    by_id["a1"]["payment_fingerprint"] = "card-X"  # a1 is batch-flagged below; a5 shares its card
    by_id["a5"]["payment_fingerprint"] = "card-X"
    for x, g in zip(ex, sig, strict=True):
        if x["account_id"] in ("a10", "a11"):  # ordinary chat users: served until their bucket runs dry
            g.update(capability="chat", cot_score=0.0)
            x.update(thinking=False, max_tokens=512)
        x["signals"] = g
    return accounts, ex, sig


def _run(s: OnlineScorer, ex: list, sig: list) -> list[tuple]:
    out = []
    for x, g in zip(ex, sig, strict=True):
        d = s.score_one(x)
        s.learn_one(x, g, d)
        out.append((d.request_id, d.action, round(d.score, 12), tuple(d.reasons), d.watermark, d.retry_after_s))
    return out


def _scorer(state, context=None) -> OnlineScorer:
    pol = replace(Policy.default(), min_requests=3, default_account=Bucket(0.0001, 10),
                  suspect_account=Bucket(0.0001, 3))  # buckets that refill and run dry
    return OnlineScorer(default_model(), pol, context, state=state)


def _setup(s: OnlineScorer, accounts: list) -> None:
    for r in accounts:
        s.learn_account(r)
    s.load_batch(BatchView(T0, {"a1": BatchAccount("c9", 3, 50.0, True), "a2": BatchAccount("c9", 3, 50.0, False)}))


def test_same_stream_same_decisions_memory_and_redis(redis_url):
    accounts, ex, sig = _world()
    mem = _scorer(MemoryState())
    red = _scorer(RedisState(redis_url, prefix=_prefix(), checkpoint_every=16))
    _setup(mem, accounts)
    _setup(red, accounts)
    a, b = _run(mem, ex, sig), _run(red, ex, sig)
    assert a == b
    acts = {x[1] for x in a}
    assert {"throttle", "block"} <= acts, acts  # buckets, tiers and the replacement rule all took part
    assert any("HYDRA_REPLACEMENT" in r for x in a for r in x[3])
    assert mem.contained() == red.contained() and {"a1", "a5"} <= red.contained()
    # the log was checkpointed and trimmed: at most checkpoint_every records (+ those since) per account
    import redis

    c = redis.Redis.from_url(redis_url)
    lens = [c.llen(k) for k in c.scan_iter(f"{red.state.prefix}:log:*")]
    assert lens and max(lens) < 16 + 2


def test_small_local_cache_evicts_and_reloads_exactly(redis_url):
    """A replica that keeps only 3 accounts locally reloads the others from checkpoint + log: the
    decisions stay those of the in-process run."""
    accounts, ex, sig = _world(500, seed=13)
    mem = _scorer(MemoryState())
    red = _scorer(RedisState(redis_url, prefix=_prefix(), checkpoint_every=8, max_local_accounts=3))
    _setup(mem, accounts)
    _setup(red, accounts)
    assert _run(mem, ex, sig) == _run(red, ex, sig)
    assert len(red.features.account_ids()) <= 3


def test_restart_on_same_redis_loses_nothing(redis_url):
    accounts, ex, sig = _world(900, seed=11)
    ref = _scorer(MemoryState(), _frozen_context())
    _setup(ref, accounts)
    expect = _run(ref, ex, sig)
    prefix = _prefix()
    first = _scorer(RedisState(redis_url, prefix=prefix, checkpoint_every=16), _frozen_context())
    _setup(first, accounts)
    got = _run(first, ex[:500], sig[:500])
    first.flush()
    del first  # "restart": a new process state, nothing local carried over
    again = _scorer(RedisState(redis_url, prefix=prefix, checkpoint_every=16), _frozen_context())
    got += _run(again, ex[500:], sig[500:])
    assert got == expect
    assert {x[1] for x in expect[500:]} - {"allow"}


_CHILD = textwrap.dedent("""
    import sys
    from datetime import timedelta
    sys.path.insert(0, {tests!r})
    from test_online import T0, _acct, _ex, _model, _policy
    from distillguard.online import Bucket, OnlineScorer, RedisState

    url, prefix = sys.argv[1], sys.argv[2]
    s = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 10)), state=RedisState(url, prefix=prefix,
                     replica="A", checkpoint_every=32))
    s.learn_account(_acct("x", payment_fingerprint="card-X"))
    for k in range(12):   # thinking on every request: flagged at the re-check after 8 -> contained
        e = _ex(k, "x", T0 + timedelta(seconds=k), thinking=True)
        s.learn_one(e, None, s.score_one(e))
    for k in range(10):   # spends the whole default bucket (burst 10, no refill)
        e = _ex(100 + k, "t", T0 + timedelta(seconds=k), thinking=False)
        s.learn_one(e, None, s.score_one(e))
    for k in range(200):  # races the parent on the same account
        e = _ex(1000 + k, "z", T0 + timedelta(seconds=k), thinking=True)
        s.learn_one(e, None, s.score_one(e))
    s.flush()
    print("done", sorted(s.contained()))
""")


def test_two_processes_share_one_redis(redis_url, tmp_path):
    prefix = _prefix()
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(tests=str(TESTS)))
    child = subprocess.Popen([sys.executable, str(script), redis_url, prefix], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    pol = _policy(default_account=Bucket(0.0, 10_000))
    b = OnlineScorer(_model(), pol, state=RedisState(redis_url, prefix=prefix, replica="B", checkpoint_every=32))
    for k in range(200):  # the same account, at the same time, from this process
        e = _ex(5000 + k, "z", T0 + timedelta(seconds=k, milliseconds=500), thinking=False)
        b.learn_one(e, None, b.score_one(e))
    b.flush()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "'x'" in out
    # a fresh scorer (a third replica) sees what both learned
    c = OnlineScorer(_model(), _policy(default_account=Bucket(0.0, 10)),
                     state=RedisState(redis_url, prefix=prefix, replica="C"))
    assert "x" in c.contained()
    dx = c.score_one(_ex(9000, "x", T0 + timedelta(minutes=5)))
    assert dx.action == "block" and dx.score == 1.0  # features A learned: 100% thinking
    dt = c.score_one(_ex(9001, "t", T0 + timedelta(minutes=5)))
    assert dt.action == "throttle" and "RATE_LIMIT" in dt.reasons[0]  # A spent its tokens
    dz = c.score_one(_ex(9002, "z", T0 + timedelta(minutes=5)))
    assert c.state.requests("z") == 400  # every record from both processes, none lost in the race
    assert dz.score == pytest.approx(0.5)  # A sent thinking, B did not: the merged share
    # hydra replacement caught through shared state: B never saw x's card, A contained x
    b.learn_account(_acct("new", payment_fingerprint="card-X"))
    dn = b.score_one(_ex(9100, "new", T0 + timedelta(minutes=6), thinking=False))
    assert dn.action == "block" and "HYDRA_REPLACEMENT" in dn.reasons[0] and "payment" in dn.reasons[0]


def test_snapshot_is_a_marker_and_restore_rereads(redis_url, tmp_path):
    prefix = _prefix()
    s = OnlineScorer(_model(), _policy(), state=RedisState(redis_url, prefix=prefix))
    for k in range(5):
        e = _ex(k, "q", T0 + timedelta(seconds=k), thinking=k % 2 == 0)
        s.learn_one(e, None, s.score_one(e))
    p = s.snapshot(tmp_path / "snap.pkl")
    s2 = OnlineScorer(_model(), _policy(), state=RedisState(redis_url, prefix=prefix))
    s2.restore(p)
    assert s2.score_one(_ex(99, "q", T0 + timedelta(minutes=1))).score == pytest.approx(0.6)
    with pytest.raises(ValueError, match="redis"):
        OnlineScorer(_model(), _policy()).restore(p)


def test_score_many_one_round_trip_same_as_in_process(redis_url):
    """Concurrent requests decided together: the same decisions in process and through Redis. (The
    hydra rule is off here: within a batch Redis reads its fingerprint counts as of the batch start,
    the in-process backend live, so the two may differ there by design.)"""
    accounts, ex, sig = _world(600, seed=7)
    mem, red = _scorer(MemoryState()), _scorer(RedisState(redis_url, prefix=_prefix(), checkpoint_every=16))
    for s in (mem, red):
        s.policy = replace(s.policy, replacement=replace(s.policy.replacement, enabled=False))
    out = []
    for s in (mem, red):
        _setup(s, accounts)
        got = []
        for i in range(0, len(ex), 8):
            ds = s.score_many(ex[i:i + 8])
            s.learn_many(list(zip(ex[i:i + 8], sig[i:i + 8], ds, strict=True)))
            got += [(d.request_id, d.action, round(d.score, 12), tuple(d.reasons)) for d in ds]
        out.append(got)
    assert out[0] == out[1] and {x[1] for x in out[0]} - {"allow"}


def test_cluster_bucket_and_watchlist_across_replicas(redis_url):
    """A cluster's token bucket is shared (also inside score_many), and a watchlist hit recorded by one
    replica challenges the account on another that has no watchlist at all."""

    class Cards:
        def match_account(self, row):
            return ["card on a shared list"] if row.get("payment_fingerprint") == "bad" else []

        def match_exchange(self, exchange):
            return []

    prefix = _prefix()
    pol = _policy(default_account=Bucket(0.0, 100), default_cluster=Bucket(0.0, 4))
    a = OnlineScorer(_model(), pol, state=RedisState(redis_url, prefix=prefix), watchlist=Cards())
    b = OnlineScorer(_model(), pol, state=RedisState(redis_url, prefix=prefix))
    a.load_batch(BatchView(T0, {k: BatchAccount("cz", 3, 0.1, False) for k in ("x", "y", "z")}))
    xs = [_ex(i, "xyz"[i % 3], T0 + timedelta(seconds=i)) for i in range(4)]
    ds = a.score_many(xs)
    a.learn_many(list(zip(xs, [None] * 4, ds, strict=True)))
    a.flush()
    assert [d.action for d in ds] == ["allow"] * 4  # one view: all four fit the burst of 4
    dy = b.score_many([_ex(10, "y", T0 + timedelta(seconds=10))])[0]
    assert dy.action == "throttle" and "cluster cz" in dy.reasons[0]  # A spent the cluster's tokens
    a.learn_account(_acct("w", payment_fingerprint="bad"))
    a.flush()
    dw = b.score_one(_ex(20, "w", T0 + timedelta(seconds=20)))
    assert dw.action == "challenge" and dw.reasons[0] == "SHARED_INDICATOR: card on a shared list"


def test_records_and_ops_json_round_trip_exactly():
    """Records and ops are written with orjson where it is faithful and with json where not (NaN, ±inf,
    ints beyond 64 bits); every record reads back to exactly what json would have given."""
    import json
    import math

    from distillguard.online.redis_state import _dumps, _loads, _loads_record, _record

    cases = [(1, 2.5, None, True, "plain"), (0.1 + 0.2, -0.0, 1e-300, 2**63 - 1, "a, b", 'q"uote'),
             (math.nan, None), (math.inf, -math.inf), (2**70, 3), ()]
    for values in cases:
        text = _record("rep", 1_772_409_600_000_001, values)
        got = _loads_record(text)
        want = json.loads(json.dumps(["rep", 1_772_409_600_000_001, list(values)]))
        assert repr(got) == repr(want), (text, got, want)  # repr: NaN compares unequal, -0.0 equal to 0.0
    ops = [("L", "acct", _record("r", 5, (1.5, None)), 86400), ("T", "a:x", 50.0, 3000.0, 5, 120), ("C", "acct")]
    assert _loads(_dumps(ops)) == json.loads(json.dumps(ops))
    assert _dumps([2**70]) == json.dumps([2**70])  # orjson cannot write it: json does
