"""Indicator sharing between providers: keyed hashing of identifiers, STIX 2.1 campaign bundles,
TAXII 2.1 push/pull, import into a watchlist, and matching in batch and online (``docs/sharing.md``).

Names are imported lazily (as in ``distillguard.serve``), so registering ``share`` in the CLI does not
load stix2 and DuckDB SQL modules into every ``distillguard`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"ExportPlan": "export", "PrivacyPolicy": "export", "build_bundle": "export", "export_campaign": "export", "plan_export": "export", "render_privacy_report": "export", "validate_bundle": "export", "LEDGER": "imports", "SHARED_INDICATORS": "imports", "ImportSummary": "imports", "ShareImportError": "imports", "import_bundle": "imports", "revoke": "imports", "GroupKey": "keys", "KeyRing": "keys", "PlainHashError": "keys", "generate_key": "keys", "load_keys": "keys", "TaxiiError": "taxii", "medallion_config": "taxii", "pull": "taxii", "push": "taxii", "INDICATOR_MATCHES": "watchlist", "IntelRule": "watchlist", "Watchlist": "watchlist", "apply_intel": "watchlist", "build_indicator_matches": "watchlist"}

__all__ = [
    "INDICATOR_MATCHES",
    "LEDGER",
    "SHARED_INDICATORS",
    "ExportPlan",
    "GroupKey",
    "ImportSummary",
    "IntelRule",
    "KeyRing",
    "PlainHashError",
    "PrivacyPolicy",
    "ShareImportError",
    "TaxiiError",
    "Watchlist",
    "apply_intel",
    "build_bundle",
    "build_indicator_matches",
    "export_campaign",
    "generate_key",
    "import_bundle",
    "load_keys",
    "medallion_config",
    "plan_export",
    "pull",
    "push",
    "render_privacy_report",
    "revoke",
    "validate_bundle",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'distillguard.share' has no attribute {name!r}")
    return getattr(importlib.import_module(f"distillguard.share.{mod}"), name)
