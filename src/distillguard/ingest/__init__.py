"""Ingest stage: traffic-log files (JSONL, Parquet, OpenTelemetry GenAI spans) into the store.

See ``docs/traffic-log.md`` for what is accepted and what is quarantined.
"""

from distillguard.ingest.readers import Source, SourceError, find_sources
from distillguard.ingest.run import IngestSummary, SourceSummary, ingest, ingest_sources

__all__ = ["IngestSummary", "Source", "SourceError", "SourceSummary", "find_sources", "ingest", "ingest_sources"]
