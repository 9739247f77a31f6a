"""distillguard: detect, contain, attribute and prove distillation attacks on LLM APIs.

Each pipeline stage is a subpackage whose main verb is a documented function; the command line
calls exactly these:

- ``from distillguard.ingest import ingest``: load traffic logs into the store, quarantining bad rows;
- ``from distillguard.stats import store_stats``: what the store holds;
- ``from distillguard.simulate import simulate``: adversary-emulation traffic with ground truth;
- ``from distillguard.evaluate import evaluate``: score any detector's output against that truth.

(The functions are not re-exported here: a name like ``distillguard.ingest`` must stay the
subpackage, or ``import distillguard.ingest.otel`` would break.)
"""

from distillguard.contract import ACCOUNTS, DECISIONS, DETECTIONS, EXCHANGES, QUARANTINE
from distillguard.store import connect

__version__ = "0.1.0"

__all__ = ["ACCOUNTS", "DECISIONS", "DETECTIONS", "EXCHANGES", "QUARANTINE", "__version__", "connect"]
