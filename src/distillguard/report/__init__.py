"""Stage 6, campaign reports: table ``campaigns`` from the stage tables, then Markdown, self-contained
HTML and JSON for people and machines (see ``docs/report.md``)."""

from distillguard.report.build import CAMPAIGNS, JSON_COLUMNS, build_campaigns, read_campaigns
from distillguard.report.render import summary_sentence, write_reports

__all__ = ["CAMPAIGNS", "JSON_COLUMNS", "build_campaigns", "read_campaigns", "summary_sentence", "write_reports"]
