"""Online containment: per-request decisions before a request is served (see ``docs/online.md``)."""

from distillguard.online.audit import AuditLog
from distillguard.online.batchview import BatchAccount, BatchView, load_batch
from distillguard.online.policy import Bucket, MarkRule, Policy, ReplacementRule, Tier, TokenBuckets
from distillguard.online.redis_state import RedisState
from distillguard.online.replay import ReplaySummary, replay
from distillguard.online.scorer import SEVERITY, Decision, OnlineScorer
from distillguard.online.state import FINGERPRINT_KINDS, MemoryState, StateBackend
from distillguard.online.watchlist import SHARED_INDICATOR, Watchlist

__all__ = ["FINGERPRINT_KINDS", "SEVERITY", "SHARED_INDICATOR", "AuditLog", "BatchAccount", "BatchView", "Bucket",
           "Decision", "MarkRule", "MemoryState", "OnlineScorer", "Policy", "RedisState", "ReplacementRule",
           "ReplaySummary", "StateBackend", "Tier", "TokenBuckets", "Watchlist", "load_batch", "replay"]
