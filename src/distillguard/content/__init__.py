"""Content stage: per-exchange signals over Arrow record batches (capability class, chain-of-thought
coercion score, template and role-preamble fingerprints). See ``docs/content.md``."""

from distillguard.content._signals import build_signals, compute_signals
from distillguard.content._template import preamble_fp, template_fingerprints

__all__ = ["build_signals", "compute_signals", "preamble_fp", "template_fingerprints"]
