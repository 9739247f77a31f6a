"""Provenance: prove, later, that a suspect model learned from our outputs (see ``docs/provenance.md``).

Three independent lines of evidence, each with its own p-value or chance probability:

- a keyed green-list **watermark** on served text (:mod:`.watermark`, HF adapter in :mod:`.hf`) and
  the **radioactivity** tests of a suspect model (:mod:`.radioactivity`);
- **canaries**: keyed fictional details served to suspects, and the probes that find them (:mod:`.canary`);
- the tamper-evident **evidence log** of what was served to whom (:mod:`.evidence`).

``torch``/``transformers`` are needed only by :mod:`.hf` and :mod:`.harness` (the ``provenance`` extra).
"""

from distillguard.provenance.canary import (
    PAYLOAD_SPACE,
    Canary,
    CanaryReport,
    canary_for,
    check,
    insert,
    probe_set,
)
from distillguard.provenance.evidence import EVIDENCE_LOG, EvidenceLog, VerifyResult, export, served, verify
from distillguard.provenance.keys import EvidenceKey, Key, WatermarkKey, generate_key, load_key, save_key
from distillguard.provenance.radioactivity import RadioactivityResult, blackbox_test, whitebox_test
from distillguard.provenance.watermark import (
    Detection,
    KeyRing,
    UnknownKeyError,
    Watermarker,
    WatermarkParams,
    detect_ids,
    detect_many,
    detect_text,
    watermark_logits,
)

__all__ = [
    "EVIDENCE_LOG",
    "PAYLOAD_SPACE",
    "Canary",
    "CanaryReport",
    "Detection",
    "EvidenceKey",
    "EvidenceLog",
    "Key",
    "KeyRing",
    "RadioactivityResult",
    "UnknownKeyError",
    "VerifyResult",
    "WatermarkKey",
    "WatermarkParams",
    "Watermarker",
    "blackbox_test",
    "canary_for",
    "check",
    "detect_ids",
    "detect_many",
    "detect_text",
    "export",
    "generate_key",
    "insert",
    "load_key",
    "probe_set",
    "save_key",
    "served",
    "verify",
    "watermark_logits",
    "whitebox_test",
]
