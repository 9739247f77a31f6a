"""distillguard: detect, contain, attribute and prove distillation attacks on LLM APIs."""

from distillguard.contract import ACCOUNTS, DECISIONS, DETECTIONS, EXCHANGES, QUARANTINE

__version__ = "0.1.0"

__all__ = ["ACCOUNTS", "DECISIONS", "DETECTIONS", "EXCHANGES", "QUARANTINE", "__version__"]
