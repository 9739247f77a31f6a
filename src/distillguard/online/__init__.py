"""Online containment: per-request decisions before a request is served (see ``docs/online.md``)."""

from distillguard.online.audit import AuditLog
from distillguard.online.batchview import BatchAccount, BatchView, load_batch
from distillguard.online.policy import Bucket, Policy, ReplacementRule, Tier, TokenBuckets
from distillguard.online.replay import ReplaySummary, replay
from distillguard.online.scorer import SEVERITY, Decision, OnlineScorer

__all__ = ["SEVERITY", "AuditLog", "BatchAccount", "BatchView", "Bucket", "Decision", "OnlineScorer", "Policy",
           "ReplacementRule", "ReplaySummary", "Tier", "TokenBuckets", "load_batch", "replay"]
