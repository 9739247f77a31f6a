"""Account behaviour features, declared once and run in batch (SQL) and online (incremental state).

See ``docs/features.md`` for every column; :mod:`distillguard.features.account` declares them.
"""

from distillguard.features.account import ATTRIBUTES, FEATURES
from distillguard.features.batch import build_features, feature_columns
from distillguard.features.spec import Feature, Input, Op, Window

__all__ = ["ATTRIBUTES", "FEATURES", "Feature", "Input", "Op", "Window", "build_features", "feature_columns"]
