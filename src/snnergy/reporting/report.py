"""The Markdown report: which regularizer gives an accurate-enough network for the least energy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import atomic_write
from snnergy.reporting.tables import DEFAULT_PROFILE, collapsed_layers, dnn_row, energy_ratio, format_value, markdown_table

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


def ok_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records of configurations that finished (no ``error`` part)."""
    return [r for r in records if "error" not in r and "dnn" in r]


def usable_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Finished records whose network did not collapse: the candidates of every verdict."""
    return [r for r in ok_records(records) if not collapsed_layers(r)]


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


def reference_accuracy(records: Sequence[Mapping[str, Any]]) -> tuple[float, str]:
    """The accuracy every configuration is judged against: the unregularized DNN's (mean over its
    runs), or the best DNN's when no unregularized run exists."""
    plain = [r["dnn"]["accuracy"] for r in ok_records(records) if r["config"]["regularizer"] == "none"]
    if plain:
        return sum(plain) / len(plain), "unregularized DNN"
    best = max((r["dnn"]["accuracy"] for r in ok_records(records)), default=math.nan)
    return best, "best DNN"


def verdict(records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01) -> list[str]:
    """Lines answering: within ``drop`` of the reference accuracy, which configuration spends
    the least energy as a DNN, and which (configuration, T) as an SNN? Collapsed networks are
    never candidates; a last line names them."""
    reference, what = reference_accuracy(records)
    target = reference - drop
    lines = [f"Target: accuracy >= {target:.4f} ({what} {reference:.4f} minus {drop * 100:.3g} pp), profile `{profile}`."]
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


def collapsed_line(names: Sequence[str]) -> str:
    """The report's sentence naming the collapsed configurations it left out.

    Example:
        >>> collapsed_line(["l1 (strength 9) (relu2)"])
        '- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): l1 (strength 9) (relu2).'
    """
    return ("- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): "
            + "; ".join(names) + ".")


def config_name(record: Mapping[str, Any]) -> str:
    cfg = record["config"]
    return cfg["regularizer"] if cfg["regularizer"] == "none" else f"{cfg['regularizer']} (strength {cfg['strength']:g})"


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
) -> str:
    """The whole ``report.md`` text."""
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
        *verdict(records, profile, drop),
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


def write_report(
    out: str | Path, records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01
) -> Path:
    """Writes ``out/report.md`` and ``out/plots/*.png``; returns the report's path."""
    from snnergy.reporting.plots import write_plots

    out = Path(out)
    plots = write_plots(out / "plots", records, profile) if ok_records(records) else []
    text = report_markdown(records, profile, drop, [str(Path(p).relative_to(out)) for p in plots])
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def format_summary(records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01) -> str:
    """The summary table as printed by ``snnergy compare``."""
    return markdown_table(summary_rows(records, profile, drop), [c for c, _ in SUMMARY_COLUMNS], [h for _, h in SUMMARY_COLUMNS])


__all__ = [
    "collapsed_layers",
    "collapsed_line",
    "config_name",
    "format_summary",
    "format_value",
    "ok_records",
    "report_markdown",
    "summary_rows",
    "verdict",
    "write_report",
]
