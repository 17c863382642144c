"""Reporting: tables (Markdown, CSV), plots (PNG) and the Markdown report, from result records.

It reads only the JSON form of results (``results.json``: a list of records with ``config``,
``dnn`` and optionally ``snn`` parts, DESIGN.md's schema), never the stages' classes.
"""

from snnergy.reporting.report import format_summary, report_markdown, summary_rows, verdict, write_report
from snnergy.reporting.tables import (
    DEFAULT_PROFILE,
    csv_text,
    dnn_row,
    format_value,
    markdown_table,
    result_rows,
    write_csv,
)

__all__ = [
    "DEFAULT_PROFILE",
    "csv_text",
    "dnn_row",
    "format_summary",
    "format_value",
    "markdown_table",
    "report_markdown",
    "result_rows",
    "summary_rows",
    "verdict",
    "write_csv",
    "write_report",
]
