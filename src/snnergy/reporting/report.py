"""The comparison report (``snnergy compare``): one row per configuration and a verdict on which
regularizer gives an accurate-enough network for the least energy.

Markdown text only; :mod:`snnergy.reporting.writer` writes it with its plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snnergy.reporting.filters import collapsed_line, config_name, ok_records, reference_accuracy, usable_records
from snnergy.reporting.tables import DEFAULT_PROFILE, collapsed_layers, dnn_row, energy_ratio, markdown_table

SUMMARY_COLUMNS = [
    ("regularizer", "regularizer"),
    ("strength", "strength"),
    ("dnn_accuracy", "DNN acc"),
    ("sparsity", "sparsity"),
    ("macs_effective", "eff. MACs"),
    ("dnn_energy_j", "DNN energy (J)"),
    ("timesteps", "T"),
    ("snn_accuracy", "SNN acc"),
    ("synops", "SynOps"),
    ("snn_energy_j", "SNN energy (J)"),
    ("snn_dnn_energy_ratio", "SNN/DNN energy"),
    ("t_within", "T to DNN-1pp"),
    ("note", "note"),
]


def _first_t_within(snn: Mapping[str, Any], target: float) -> int | None:
    for t, acc in zip(snn["timesteps"], snn["accuracy"]):
        if acc >= target:
            return t
    return None


def summary_rows(
    records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01
) -> list[dict[str, Any]]:
    """One row per finished configuration: DNN numbers, SNN numbers at the largest T, and the
    smallest T at which the SNN is within ``drop`` of its own DNN. A collapsed network (see
    :func:`~snnergy.reporting.tables.collapsed_layers`) gets a note, and neither an energy ratio
    nor a T to its DNN's accuracy.

    Example:
        >>> rec = {"config": {"dataset": "d", "model": "m", "regularizer": "l1", "strength": 1.0, "seed": 0},
        ...        "dnn": {"accuracy": 0.9, "sparsity": {"r": 0.5}, "macs_dense": 10.0, "macs_effective": 5.0,
        ...                "energy_j": {"p": 2.0}},
        ...        "snn": {"timesteps": [1, 2, 4], "accuracy": [0.5, 0.895, 0.9], "synops": [1.0, 2.0, 4.0],
        ...                "energy_j": {"p": [0.1, 0.2, 0.4]}}}
        >>> row = summary_rows([rec], profile="p")[0]
        >>> row["timesteps"], row["snn_accuracy"], row["snn_dnn_energy_ratio"], row["t_within"]
        (4, 0.9, 0.2, 2)
    """
    rows = []
    for record in ok_records(records):
        row = dnn_row(record, profile)
        silent = collapsed_layers(record)
        row["note"] = f"collapsed: {', '.join(silent)} silent" if silent else ""
        snn = record.get("snn")
        if snn:
            energy = snn["energy_j"].get(profile, [math.nan] * len(snn["timesteps"]))
            row.update(
                timesteps=snn["timesteps"][-1],
                snn_accuracy=snn["accuracy"][-1],
                synops=snn["synops"][-1],
                snn_energy_j=energy[-1],
                snn_dnn_energy_ratio=energy_ratio(energy[-1], row["dnn_energy_j"], bool(silent)),
                t_within=None if silent else _first_t_within(snn, row["dnn_accuracy"] - drop),
            )
        rows.append(row)
    return rows


def verdict(
    records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01, target: float | None = None
) -> list[str]:
    """Lines answering: within ``drop`` of the reference accuracy (or at ``target`` and above, when
    given), which configuration spends the least energy as a DNN, and which (configuration, T) as
    an SNN? Collapsed networks are never candidates; a last line names them."""
    if target is None:
        reference, what = reference_accuracy(records)
        target = reference - drop
        how = f"{what} {reference:.4f} minus {drop * 100:.3g} pp"
    else:
        how = "given"
    lines = [f"Target: accuracy >= {target:.4f} ({how}), profile `{profile}`."]
    dnn_ok = [r for r in usable_records(records) if r["dnn"]["accuracy"] >= target and profile in r["dnn"]["energy_j"]]
    if dnn_ok:
        best = min(dnn_ok, key=lambda r: r["dnn"]["energy_j"][profile])
        lines.append(
            f"- Lowest DNN energy: **{config_name(best)}**, {best['dnn']['energy_j'][profile]:.3g} J/sample, "
            f"accuracy {best['dnn']['accuracy']:.4f}, {best['dnn']['macs_effective']:.3g} effective MACs."
        )
    else:
        lines.append("- No DNN reaches the target.")
    snn_points = [
        (r, i)
        for r in usable_records(records)
        if r.get("snn")
        for i, acc in enumerate(r["snn"]["accuracy"])
        if acc >= target and profile in r["snn"]["energy_j"]
    ]
    if snn_points:
        r, i = min(snn_points, key=lambda p: p[0]["snn"]["energy_j"][profile][p[1]])
        snn = r["snn"]
        lines.append(
            f"- Lowest SNN energy: **{config_name(r)} at T = {snn['timesteps'][i]}**, "
            f"{snn['energy_j'][profile][i]:.3g} J/sample, accuracy {snn['accuracy'][i]:.4f}, "
            f"{snn['synops'][i]:.3g} SynOps."
        )
    elif any(r.get("snn") for r in ok_records(records)):
        lines.append("- No SNN reaches the target at the simulated timesteps.")
    collapsed = [r for r in ok_records(records) if collapsed_layers(r)]
    if collapsed:
        lines.append(collapsed_line([f"{config_name(r)} ({', '.join(collapsed_layers(r))})" for r in collapsed]))
    return lines


def layer_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration and layer: DNN sparsity, SNN spike rate and DNN-SNN correlation."""
    rows = []
    for record in ok_records(records):
        snn = record.get("snn") or {}
        for layer, sparsity in record["dnn"]["sparsity"].items():
            rows.append(
                {
                    "configuration": config_name(record),
                    "layer": layer,
                    "sparsity": sparsity,
                    "spike_rate": snn.get("spike_rate", {}).get(layer),
                    "correlation": snn.get("correlation", {}).get(layer),
                }
            )
    return rows


def report_markdown(
    records: Sequence[Mapping[str, Any]],
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    plots: Sequence[str] = (),
    target: float | None = None,
) -> str:
    """The whole ``report.md`` text of a comparison.

    Args:
        records: Result records, failed ones (with ``error``) included.
        profile: Energy profile of every energy column.
        drop: Target = unregularized DNN accuracy minus ``drop``.
        plots: Relative paths of the plots to show.
        target: An absolute target accuracy instead.
    """
    finished = ok_records(records)
    first = finished[0]["config"] if finished else (records[0]["config"] if records else {})
    lines = [
        "# snnergy report",
        "",
        f"Dataset `{first.get('dataset', '?')}`, model `{first.get('model', '?')}`: "
        f"{len(finished)} finished configuration(s), {len(records) - len(finished)} failed. "
        f"Energies are joules per sample on profile `{profile}`; SNN columns are at the largest T.",
        "",
        "## Which regularizer?",
        "",
        *verdict(records, profile, drop, target),
        "",
        "## Configurations",
        "",
        markdown_table(summary_rows(records, profile, drop), [c for c, _ in SUMMARY_COLUMNS], [h for _, h in SUMMARY_COLUMNS]),
        "",
        "## Layers",
        "",
        "Sparsity: fraction of zeros in the DNN's post-ReLU map. Spike rate: spikes per neuron per step "
        "at the largest T. Correlation: Pearson r between the normalized DNN activation and the SNN rate.",
        "",
        markdown_table(layer_rows(records), ["configuration", "layer", "sparsity", "spike_rate", "correlation"]),
    ]
    failed = [r for r in records if "error" in r]
    if failed:
        lines += ["", "## Failed configurations", ""]
        lines += [f"- {config_name(r)}: {r['error']}" for r in failed]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def format_summary(records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01) -> str:
    """The summary table as printed by ``snnergy compare``."""
    return markdown_table(summary_rows(records, profile, drop), [c for c, _ in SUMMARY_COLUMNS], [h for _, h in SUMMARY_COLUMNS])


__all__ = [
    "SUMMARY_COLUMNS",
    "format_summary",
    "layer_rows",
    "report_markdown",
    "summary_rows",
    "verdict",
]
