"""Reporting: tables (Markdown, CSV), plots (PNG), the Markdown report and its HTML page, from result records.

It reads only the JSON form of results (``results.json``: a list of records with ``config``,
``dnn`` and optionally ``snn`` parts, docs/design.md's schema), never the stages' classes. Data flows
one way: ``tables`` -> ``filters`` -> ``report`` (per configuration) and ``pareto`` (over seeds)
-> ``plots`` and ``sweep_report`` -> ``figures`` (SVG charts, drawn by ``svg``) -> ``html``
(``report.html`` from the ``report.md`` text) -> ``writer`` (:func:`write_report`, the one report writer);
``curves`` (after ``filters``) reads one SNN's every-t curve, smallest sufficient t, energy breakdown
and input-layer floor; ``deployment`` (after ``curves``) tabulates quantized accuracy and core mappings; ``identity`` names a configuration, ``schema`` checks records.
"""

from snnergy.reporting.curves import breakdown_at, smallest_sufficient, snn_curve
from snnergy.reporting.filters import (
    config_label,
    config_name,
    dnn_reference,
    ok_records,
    reference_accuracy,
    usable_records,
)
from snnergy.reporting.html import render_html
from snnergy.reporting.identity import config_hash, record_hash
from snnergy.reporting.pareto import iso_accuracy, pareto_front, snn_fronts
from snnergy.reporting.report import breakdown_rows, format_summary, report_markdown, summary_rows, verdict
from snnergy.reporting.schema import check_record, check_records
from snnergy.reporting.sweep_report import sweep_report_markdown
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
from snnergy.reporting.writer import REPORT_STYLES, write_report

__all__ = [
    "DEFAULT_PROFILE",
    "REPORT_STYLES",
    "breakdown_at",
    "breakdown_rows",
    "check_record",
    "check_records",
    "collapsed_layers",
    "config_hash",
    "config_label",
    "config_name",
    "csv_text",
    "dnn_reference",
    "dnn_row",
    "format_summary",
    "format_value",
    "iso_accuracy",
    "markdown_table",
    "ok_records",
    "pareto_front",
    "record_hash",
    "reference_accuracy",
    "render_html",
    "report_markdown",
    "result_rows",
    "smallest_sufficient",
    "snn_curve",
    "snn_fronts",
    "summary_rows",
    "sweep_report_markdown",
    "usable_records",
    "verdict",
    "write_csv",
    "write_report",
]
