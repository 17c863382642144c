"""The sweep report (``snnergy report``): per dataset and model, the iso-accuracy verdict, mean ± std
over seeds, Pareto fronts of accuracy against SNN energy and DNN effective MACs, the smallest T
reaching the target, and per-layer sparsity and spike rates.

Markdown text only; :mod:`snnergy.reporting.writer` writes it with its plots and tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import snnergy.reporting.pareto as pareto
from snnergy.reporting.deployment import core_section, quantization_section
from snnergy.reporting.filters import collapsed_line, config_name, ok_records
from snnergy.reporting.report import memory_section
from snnergy.reporting.tables import DEFAULT_PROFILE, format_value, markdown_table

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
    ("t_target", "t to target"),
    ("t_target_accuracy", "acc at that t"),
    ("t_target_synops", "SynOps at that t"),
    ("t_target_energy_j", "energy at that t (J)"),
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


def target_breakdown_rows(groups: Sequence[Any], profile: str, goal: float) -> list[dict[str, Any]]:
    """Per usable configuration reaching ``goal``: its seed-mean energy breakdown at its smallest
    such t (``configuration``, ``t``, the parts and ``total``): the breakdown table and chart."""
    rows = []
    for g in pareto.usable(groups):
        point = pareto.smallest_t(g, goal, profile)
        parts = pareto.mean_breakdown(g, profile, point.timesteps) if point is not None else None
        if parts is not None:
            rows.append({"configuration": g.label, "t": point.timesteps, **parts, "total": sum(parts.values())})
    return rows


def _deployment_lines(groups: Sequence[Any], profile: str, goal: float) -> list[str]:
    """Compute vs memory energy (memory-aware profiles), weight quantization and core mapping of one
    section's runs (:mod:`snnergy.reporting.deployment`); the seed is named when a configuration has several."""
    records = [r for g in groups for r in g.records]
    memory = memory_section(records, goal)
    seeds = any(len(g.records) > 1 for g in groups)
    return [*(["### Compute vs memory", "", *memory] if memory else []),
            *quantization_section(records, goal, profile, "###", seeds), *core_section(records, "###")]


def _section_markdown(groups: Sequence[Any], profile: str, drop: float, target: float | None, plots: Sequence[str]) -> list[str]:
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
        *pareto.iso_factor_lines(groups, goal, profile),
        *([collapsed_line([f"{g.label} ({', '.join(g.collapsed)})" for g in groups if g.collapsed])]
          if any(g.collapsed for g in groups) else []),
        "",
        markdown_table(
            iso,
            ["family", "dnn_configuration", "dnn_accuracy", "dnn_energy_j", "snn_configuration", "snn_timesteps", "snn_accuracy", "snn_energy_j"],
            ["family", "lowest-energy DNN", "acc", "energy (J)", "lowest-energy SNN", "T", "acc", "energy (J)"],
        ),
        "",
        "### Configurations (mean ± std over seeds)",
        "",
        "Fixed T: *T* .. *SNN energy* at the largest T. Iso-accuracy: *t to target*, the smallest t (every t "
        "checked, the listed T for runs without a curve) whose mean accuracy reaches the target, and the numbers there.",
        "",
        markdown_table(
            _with_std(pareto.configuration_rows(groups, profile, goal)),
            [c for c, _ in CONFIGURATION_COLUMNS],
            [h for _, h in CONFIGURATION_COLUMNS],
        ),
        "",
        "### Energy breakdown at the target",
        "",
        "Seed means at each configuration's *t to target*: input layer (analog first layer's MACs x E_mac, the "
        "floor no regularizer lowers), spiking layers (SynOps x E_ac), neuron updates (x E_neuron where charged).",
        "",
        markdown_table(
            target_breakdown_rows(groups, profile, goal),
            ["configuration", "t", "input_layer", "spiking_layers", "neuron_updates", "total"],
            ["configuration", "t", "input layer (J)", "spiking layers (J)", "neuron updates (J)", "total (J)"],
        ),
        "",
        *_deployment_lines(groups, profile, goal),
        "### Pareto front over all configurations: accuracy vs SNN energy (listed T)",
        "",
        "The (configuration, T) points, over every activation, width, regularizer and strength, that no other point "
        "beats in both accuracy and energy.",
        "",
        markdown_table(
            _with_std([
                {"configuration": p.group.label, "T": p.timesteps, "accuracy": p.accuracy, "accuracy_std": p.accuracy_std,
                 "energy": p.energy_j, "energy_std": p.energy_std, "synops": p.synops}
                for p in pareto.overall_snn_front(groups, profile)
            ]),
            ["configuration", "T", "accuracy", "energy", "synops"],
            ["configuration", "T", "SNN acc", "SNN energy (J)", "SynOps"],
        ),
        "",
        "### Pareto fronts: accuracy vs SNN energy (listed T)",
        "",
        "Per family (model axes and regularizer: the regularizer alone for full-width ReLU networks), the "
        "(configuration, T) points no other point of that family beats in both accuracy and energy.",
        "",
        markdown_table(
            _with_std([
                {"regularizer": reg, "configuration": p.group.label, "T": p.timesteps, "accuracy": p.accuracy,
                 "accuracy_std": p.accuracy_std, "energy": p.energy_j, "energy_std": p.energy_std, "synops": p.synops}
                for reg, front in snn_fronts.items() for p in front
            ]),
            ["regularizer", "configuration", "T", "accuracy", "energy", "synops"],
            ["family", "configuration", "T", "SNN acc", "SNN energy (J)", "SynOps"],
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
            ["family", "configuration", "DNN acc", "eff. MACs", "DNN energy (J)", "sparsity"],
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
        lines += [f"- {r['config'].get('dataset')}/{r['config'].get('model')} {config_name(r)} seed {r['config'].get('seed')}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


__all__ = ["CONFIGURATION_COLUMNS", "sweep_report_markdown", "target_breakdown_rows"]
