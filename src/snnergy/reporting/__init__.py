"""Reporting: tables (Markdown, CSV), plots (PNG) and the Markdown report, from result records.

It reads only the JSON form of results (``results.json``: a list of records with ``config``,
``dnn`` and optionally ``snn`` parts, DESIGN.md's schema), never the stages' classes.
"""

from snnergy.reporting.pareto import iso_accuracy, pareto_front, snn_fronts
from snnergy.reporting.schema import check_record, check_records
from snnergy.reporting.report import (
    format_summary,
    report_markdown,
    summary_rows,
    verdict,
    write_report,
)
from snnergy.reporting.sweep_report import sweep_report_markdown, write_sweep_report
from snnergy.reporting.tables import (
    DEFAULT_PROFILE,
    collapsed_layers,
    csv_text,
    dnn_row,
    format_value,
    markdown_table,
    result_rows,
    write_csv,
)

__all__ = [
    "DEFAULT_PROFILE",
    "check_record",
    "check_records",
    "collapsed_layers",
    "csv_text",
    "dnn_row",
    "format_summary",
    "format_value",
    "iso_accuracy",
    "markdown_table",
    "pareto_front",
    "report_markdown",
    "result_rows",
    "snn_fronts",
    "summary_rows",
    "sweep_report_markdown",
    "verdict",
    "write_csv",
    "write_report",
    "write_sweep_report",
]
