"""Stage 3: the linkage graph between accounts and its communities.

``build_edges`` writes ``edges`` (shared infrastructure, templates, synchrony, sign-up waves, with hub
guards); ``build_clusters`` runs :class:`LinkageClusterer` (Leiden) on them and writes ``clusters``.
See ``docs/graph.md``.
"""

from distillguard.graph.cluster import LinkageClusterer, build_clusters, cluster_id
from distillguard.graph.edges import DEFAULTS, RULES, KindRule, build_edges

__all__ = ["DEFAULTS", "RULES", "KindRule", "LinkageClusterer", "build_clusters", "build_edges", "cluster_id"]
