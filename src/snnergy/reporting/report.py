"""The Markdown report: which regularizer gives an accurate-enough network for the least energy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import atomic_write
from snnergy.errors import ConfigError
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
            f"- Lowest DNN energy: **{_name(best)}**, {best['dnn']['energy_j'][profile]:.3g} J/sample, "
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
            f"- Lowest SNN energy: **{_name(r)} at T = {snn['timesteps'][i]}**, "
            f"{snn['energy_j'][profile][i]:.3g} J/sample, accuracy {snn['accuracy'][i]:.4f}, "
            f"{snn['synops'][i]:.3g} SynOps."
        )
    elif any(r.get("snn") for r in ok_records(records)):
        lines.append("- No SNN reaches the target at the simulated timesteps.")
    collapsed = [r for r in ok_records(records) if collapsed_layers(r)]
    if collapsed:
        lines.append(collapsed_line([f"{_name(r)} ({', '.join(collapsed_layers(r))})" for r in collapsed]))
    return lines


def collapsed_line(names: Sequence[str]) -> str:
    """The report's sentence naming the collapsed configurations it left out.

    Example:
        >>> collapsed_line(["l1 (strength 9) (relu2)"])
        '- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): l1 (strength 9) (relu2).'
    """
    return ("- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): "
            + "; ".join(names) + ".")


def _name(record: Mapping[str, Any]) -> str:
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
                    "configuration": _name(record),
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
        lines += [f"- {_name(r)}: {r['error']}" for r in failed]
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




# --- the sweep report: configurations averaged over seeds, Pareto fronts, iso-accuracy ---------

CONFIGURATION_COLUMNS = [
    ("configuration", "configuration"),
    ("seeds", "seeds"),
    ("dnn_accuracy", "DNN acc"),
    ("dnn_sparsity", "sparsity"),
    ("dnn_macs_effective", "eff. MACs"),
    ("dnn_energy_j", "DNN energy (J)"),
    ("timesteps", "T"),
    ("snn_accuracy", "SNN acc"),
    ("snn_energy_j", "SNN energy (J)"),
    ("t_target", "T to target"),
    ("t_target_accuracy", "acc at that T"),
    ("t_target_energy_j", "energy at that T (J)"),
    ("note", "note"),
]


def _pm(mean: Any, std: Any) -> str:
    """``"0.972 ± 0.004"``; the mean alone when there is no spread to show.

    Example:
        >>> _pm(0.97213, 0.0041), _pm(0.5, 0.0), _pm(None, None)
        ('0.972 ± 0.0041', '0.5', '')
    """
    if mean is None:
        return ""
    if std is None or (isinstance(std, float) and (math.isnan(std) or std == 0.0)):
        return format_value(mean)
    return f"{format_value(mean)} ± {format_value(std)}"


def _with_std(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with each ``x``/``x_std`` pair merged into one ``x`` cell reading "mean ± std"."""
    merged = []
    for row in rows:
        out = {k: v for k, v in row.items() if not k.endswith("_std")}
        for key in out:
            if f"{key}_std" in row:
                out[key] = _pm(row[key], row[f"{key}_std"])
        merged.append(out)
    return merged


def _section_markdown(groups: Sequence[Any], profile: str, drop: float, target: float | None, plots: Sequence[str]) -> list[str]:
    from snnergy.reporting import pareto

    goal, how = pareto.target_accuracy(groups, drop, target)
    iso = pareto.iso_accuracy(groups, goal, profile)
    snn_fronts = pareto.snn_fronts(groups, profile)
    dnn_fronts = pareto.dnn_fronts(groups, profile)
    members = list(dict.fromkeys(p.group for front in snn_fronts.values() for p in front))
    lines = [
        "### Iso-accuracy: which regularizer?",
        "",
        f"Target: {how}; seed means, profile `{profile}`.",
        "",
        *pareto.iso_accuracy_lines(iso, profile),
        *([collapsed_line([f"{g.label} ({', '.join(g.collapsed)})" for g in groups if g.collapsed])]
          if any(g.collapsed for g in groups) else []),
        "",
        markdown_table(
            iso,
            ["regularizer", "dnn_configuration", "dnn_accuracy", "dnn_energy_j", "snn_configuration", "snn_timesteps", "snn_accuracy", "snn_energy_j"],
            ["regularizer", "lowest-energy DNN", "acc", "energy (J)", "lowest-energy SNN", "T", "acc", "energy (J)"],
        ),
        "",
        "### Configurations (mean ± std over seeds)",
        "",
        "SNN columns at the largest T; *T to target*: the smallest T whose mean accuracy reaches the target.",
        "",
        markdown_table(
            _with_std(pareto.configuration_rows(groups, profile, goal)),
            [c for c, _ in CONFIGURATION_COLUMNS],
            [h for _, h in CONFIGURATION_COLUMNS],
        ),
        "",
        "### Pareto fronts: accuracy vs SNN energy",
        "",
        "Per regularizer, the (configuration, T) points no other point of that regularizer beats in both accuracy and energy.",
        "",
        markdown_table(
            _with_std([
                {"regularizer": reg, "configuration": p.group.label, "T": p.timesteps, "accuracy": p.accuracy,
                 "accuracy_std": p.accuracy_std, "energy": p.energy_j, "energy_std": p.energy_std, "synops": p.synops}
                for reg, front in snn_fronts.items() for p in front
            ]),
            ["regularizer", "configuration", "T", "accuracy", "energy", "synops"],
            ["regularizer", "configuration", "T", "SNN acc", "SNN energy (J)", "SynOps"],
        ),
        "",
        "### Pareto fronts: accuracy vs DNN effective MACs",
        "",
        markdown_table(
            _with_std([
                {"regularizer": reg, "configuration": g.label,
                 **{k: v for name, (m, s) in pareto.dnn_stats(g, profile).items() for k, v in ((name, m), (f"{name}_std", s))}}
                for reg, front in dnn_fronts.items() for g in front
            ]),
            ["regularizer", "configuration", "accuracy", "macs_effective", "energy_j", "sparsity"],
            ["regularizer", "configuration", "DNN acc", "eff. MACs", "DNN energy (J)", "sparsity"],
        ),
        "",
        "### Layers of the SNN fronts' members",
        "",
        "Sparsity: fraction of zeros in the DNN's post-ReLU map. Spike rate: spikes per neuron per step at the largest T.",
        "",
        markdown_table(
            _with_std([row for g in members for row in pareto.layer_stats(g)]),
            ["configuration", "layer", "sparsity", "spike_rate"],
        ),
    ]
    if plots:
        lines += ["", *[f"![{Path(p).stem}]({p})" for p in plots]]
    return lines


def sweep_report_markdown(
    records: Sequence[Mapping[str, Any]],
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    target: float | None = None,
    plots: Mapping[tuple[str, str], Sequence[str]] | None = None,
) -> str:
    """The ``report.md`` of a sweep: per (dataset, model), the iso-accuracy summary, every
    configuration as mean ± std over seeds with its smallest T to the target, the Pareto fronts
    per regularizer, and the layers of the fronts' members; then the failed configurations.

    Args:
        records: Result records, failed ones (with ``error``) included.
        profile: Energy profile of every energy column.
        drop: Target = unregularized DNN accuracy (seed mean) minus ``drop``.
        target: An absolute target accuracy instead.
        plots: Relative plot paths per (dataset, model).
    """
    from snnergy.reporting import pareto

    parts = pareto.sections(records)
    finished = ok_records(records)
    configurations = sum(len(groups) for _, _, groups in parts)
    lines = [
        "# snnergy sweep report",
        "",
        f"{len(finished)} finished run(s) in {configurations} configuration(s) (runs differing only by seed are one "
        f"configuration), {len(records) - len(finished)} failed. Energies are joules per sample on profile `{profile}`; "
        "± is the standard deviation over seeds.",
    ]
    for dataset, model, groups in parts:
        lines += ["", f"## {dataset} / {model}", "", *_section_markdown(groups, profile, drop, target, (plots or {}).get((dataset, model), ()))]
    failed = [r for r in records if "error" in r]
    if failed:
        lines += ["", "## Failed configurations", ""]
        lines += [f"- {r['config'].get('dataset')}/{r['config'].get('model')} {_name(r)} seed {r['config'].get('seed')}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def write_sweep_report(
    out: str | Path,
    records: Sequence[Mapping[str, Any]],
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    target: float | None = None,
) -> Path:
    """Writes ``out/report.md``, ``out/plots/*.png``, ``out/summary.csv`` (one row per
    configuration, mean and std columns) and ``out/layers.csv``; returns the report's path."""
    from snnergy.reporting import pareto
    from snnergy.reporting.plots import write_sweep_plots
    from snnergy.reporting.tables import write_csv

    stored = sorted({name for r in ok_records(records) for name in r["dnn"].get("energy_j", {})})
    if stored and profile not in stored:
        raise ConfigError(f"energy profile '{profile}' is not in the stored results; stored: {', '.join(stored)}")
    out = Path(out)
    plots: dict[tuple[str, str], list[str]] = {}
    summary: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    for dataset, model, groups in pareto.sections(records):
        goal, _ = pareto.target_accuracy(groups, drop, target)
        paths = write_sweep_plots(out / "plots", groups, profile, goal, f"{dataset}_{model}")
        plots[(dataset, model)] = [str(Path(p).relative_to(out)) for p in paths]
        summary += pareto.configuration_rows(groups, profile, goal)
        layers += [{"dataset": dataset, "model": model, **row} for g in groups for row in pareto.layer_stats(g)]
    if summary:
        write_csv(out / "summary.csv", summary)
        write_csv(out / "layers.csv", layers)
    text = sweep_report_markdown(records, profile, drop, target, plots)
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


__all__ = [
    "collapsed_layers",
    "collapsed_line",
    "format_summary",
    "format_value",
    "report_markdown",
    "summary_rows",
    "sweep_report_markdown",
    "verdict",
    "write_report",
    "write_sweep_report",
]
