"""The comparison report (``snnergy compare``): one row per configuration and a verdict on which
regularizer gives an accurate-enough network for the least energy.

Two kinds of figures, labelled apart: *fixed-T* ones (every SNN at the largest simulated T) and
*iso-accuracy* ones (every SNN at its own smallest t reaching the target, picked on its curve at
every t, :mod:`snnergy.reporting.curves`), whose factors are taken against the unregularized ReLU
SNN. The target's reference is the DNN's accuracy on the test images the SNN ran.

Markdown text only; :mod:`snnergy.reporting.writer` writes it with its plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import snnergy.reporting.curves as curves
from snnergy.reporting.deployment import core_section, quantization_section
from snnergy.reporting.filters import (
    collapsed_line,
    config_name,
    dnn_reference,
    model_label,
    ok_records,
    reference_accuracy,
    usable_records,
)
from snnergy.reporting.tables import DEFAULT_PROFILE, collapsed_layers, dnn_row, energy_ratio, markdown_table

SUMMARY_COLUMNS = [
    ("network", "network"),
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
    ("t_within", "t to DNN-1pp"),
    ("t_within_synops", "SynOps at t"),
    ("t_within_energy_j", "energy at t (J)"),
    ("note", "note"),
]
"""The network (activation, QCFS levels, width), the regularizer and strength; fixed-T columns
(``T`` .. ``SNN/DNN energy``: at the largest T), then the iso-accuracy ones
(``t to DNN-1pp``: the smallest t on the every-t curve within the drop of its own DNN)."""

BREAKDOWN_COLUMNS = [
    ("configuration", "configuration"),
    ("at", "at"),
    ("timesteps", "t"),
    ("input_layer", "input layer (J)"),
    ("spiking_layers", "spiking layers (J)"),
    ("neuron_updates", "neuron updates (J)"),
    ("total", "total (J)"),
    ("input_share", "input share"),
]


def reference_target(records: Sequence[Mapping[str, Any]], drop: float, target: float | None) -> tuple[float, str]:
    """The target and how it was set: ``target`` when given, else the reference accuracy
    (:func:`~snnergy.reporting.filters.reference_accuracy`: the unregularized DNN's on the images
    its SNN ran) minus ``drop``.

    Example:
        >>> recs = [{"config": {"regularizer": "none"}, "dnn": {"accuracy": 0.9, "accuracy_snn_samples": 0.75,
        ...                                                  "snn_samples": 100}}]
        >>> reference_target(recs, 0.25, None)
        (0.5, 'unregularized DNN on the 100 test images the SNN ran 0.7500 minus 25 pp')
    """
    if target is not None:
        return target, "given"
    reference, what = reference_accuracy(records)
    return reference - drop, f"{what} {reference:.4f} minus {drop * 100:.3g} pp"


def summary_rows(
    records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01
) -> list[dict[str, Any]]:
    """One row per finished configuration: DNN numbers, SNN numbers at the largest T (fixed T), and
    the smallest t (on the every-t curve; the listed T for older records) at which the SNN is within
    ``drop`` of its own DNN (on the same images), with its SynOps and energy there. A collapsed network (see
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
        row["network"] = model_label(record, always=True)
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
            )
            hit = None if silent else curves.smallest_sufficient(
                curves.snn_curve(snn, profile), dnn_reference(record) - drop)
            row.update(t_within=hit.timesteps if hit else None, t_within_synops=hit.synops if hit else None,
                       t_within_energy_j=hit.energy_j if hit else None)
        rows.append(row)
    return rows


def verdict(
    records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01, target: float | None = None
) -> list[str]:
    """Lines answering: within ``drop`` of the reference accuracy (or at ``target`` and above, when
    given), which configuration spends the least energy as a DNN, and which as an SNN at its
    smallest sufficient t? Then, at iso-accuracy, how many times fewer SynOps and how much less
    energy that SNN spends than the unregularized ReLU SNN, the SNN/DNN energy ratio, the energy
    breakdown and the input-layer floor. Collapsed networks are never candidates; a last line
    names them."""
    target, how = reference_target(records, drop, target)
    lines = [f"Target: accuracy >= {target:.4f} ({how}), profile `{profile}`."]
    dnn_ok = [r for r in usable_records(records) if dnn_reference(r) >= target and profile in r["dnn"]["energy_j"]]
    cheapest_dnn = min(dnn_ok, key=lambda r: r["dnn"]["energy_j"][profile]) if dnn_ok else None
    if cheapest_dnn is not None:
        best = cheapest_dnn
        lines.append(
            f"- Lowest DNN energy: **{config_name(best)}**, {best['dnn']['energy_j'][profile]:.3g} J/sample, "
            f"accuracy {dnn_reference(best):.4f}, {best['dnn']['macs_effective']:.3g} effective MACs."
        )
    else:
        lines.append("- No DNN reaches the target.")
    hits = [(r, curves.smallest_sufficient(curves.snn_curve(r["snn"], profile), target))
            for r in usable_records(records) if r.get("snn") and profile in r["snn"]["energy_j"]]
    hits = [(r, p) for r, p in hits if p is not None and math.isfinite(p.energy_j)]
    if hits:
        r, p = min(hits, key=lambda item: item[1].energy_j)
        grid = "the smallest sufficient t, every t checked" if p.every_t else "the smallest sufficient listed T"
        lines.append(
            f"- Lowest SNN energy: **{config_name(r)} at T = {p.timesteps}** ({grid}), "
            f"{p.energy_j:.3g} J/sample, accuracy {p.accuracy:.4f}, {p.synops:.3g} SynOps."
        )
        lines += _iso_lines(records, r, p, cheapest_dnn, profile, target)
    elif any(r.get("snn") for r in ok_records(records)):
        lines.append("- No SNN reaches the target at the simulated timesteps.")
    collapsed = [r for r in ok_records(records) if collapsed_layers(r)]
    if collapsed:
        lines.append(collapsed_line([f"{config_name(r)} ({', '.join(collapsed_layers(r))})" for r in collapsed]))
    return lines


def _iso_lines(records: Sequence[Mapping[str, Any]], best: Mapping[str, Any], point: curves.IsoPoint,
               cheapest_dnn: Mapping[str, Any] | None, profile: str, target: float) -> list[str]:
    """The iso-accuracy factors of the lowest-energy SNN: against the unregularized ReLU SNN and the
    cheapest DNN, its energy breakdown and the input-layer floor."""
    lines = []
    base = curves.baseline_record(records)
    base_hit = curves.smallest_sufficient(curves.snn_curve(base["snn"], profile), target) if base else None
    if base is None:
        lines.append("- Iso-accuracy factors: no unregularized ReLU SNN to compare against.")
    elif base_hit is None:
        lines.append(f"- Iso-accuracy factors: the unregularized ReLU SNN ({config_name(base)}) does not reach the "
                     "target at the simulated timesteps.")
    else:
        synops = curves.factor(base_hit.synops, point.synops)
        energy = curves.factor(base_hit.energy_j, point.energy_j)
        lines.append(
            f"- Iso-accuracy, against the unregularized full-width ReLU SNN ({config_name(base)} at its smallest sufficient "
            f"T = {base_hit.timesteps}, {base_hit.synops:.3g} SynOps, {base_hit.energy_j:.3g} J): "
            f"**{synops:.3g}x fewer SynOps** and **{energy:.3g}x less energy** "
            f"({(1 - point.energy_j / base_hit.energy_j) * 100 if base_hit.energy_j else math.nan:.3g} % saved), "
            f"in {point.timesteps} instead of {base_hit.timesteps} timesteps."
        )
    if cheapest_dnn is not None:
        dnn_energy = cheapest_dnn["dnn"]["energy_j"][profile]
        ratio = energy_ratio(point.energy_j, dnn_energy)
        lines.append(f"- SNN/DNN energy at iso-accuracy: **{ratio:.3g}** ({point.energy_j:.3g} J against the cheapest "
                     f"DNN at the target, {config_name(cheapest_dnn)}, {dnn_energy:.3g} J).")
    parts = curves.breakdown_at(best["snn"], profile, point.timesteps)
    if parts is not None:
        lines.append(
            f"- Its energy at T = {point.timesteps}: input layer {parts['input_layer']:.3g} J, spiking layers "
            f"{parts['spiking_layers']:.3g} J, neuron updates {parts['neuron_updates']:.3g} J."
        )
    floor = curves.input_floor(best["snn"], profile)
    if floor:
        reference = base_hit.energy_j if base_hit is not None else point.energy_j
        whose = "the unregularized ReLU SNN's" if base_hit is not None else "this SNN's"
        lines.append(
            f"- Input-layer floor: the analog first layer's MACs cost {floor:.3g} J/sample whatever the "
            f"regularizer, so the SNN energy can fall at most {reference / floor:.3g}x below {whose} "
            f"{reference:.3g} J (REFERENCE.md section 7)."
        )
    return lines


def breakdown_rows(
    records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01, target: float | None = None
) -> list[dict[str, Any]]:
    """Per finished configuration with an SNN: its energy split into input layer, spiking layers and
    neuron updates at the largest T (fixed T) and at its smallest sufficient t (iso-accuracy).

    Example:
        >>> snn = {"timesteps": [2], "accuracy": [0.9], "synops": [2.0], "energy_j": {"p": [7.0]},
        ...        "energy_breakdown_j": {"p": {"input_layer": [3.0], "spiking_layers": [2.0], "neuron_updates": [2.0]}}}
        >>> rec = {"config": {"regularizer": "none", "strength": 0.0}, "dnn": {"accuracy": 0.9}, "snn": snn}
        >>> [(r["at"], r["total"], round(r["input_share"], 3)) for r in breakdown_rows([rec], "p", target=0.5)]
        [('largest T', 7.0, 0.429), ('target', 7.0, 0.429)]
    """
    target, _ = reference_target(records, drop, target)
    rows = []
    for record in ok_records(records):
        snn = record.get("snn")
        if not snn:
            continue
        hit = curves.smallest_sufficient(curves.snn_curve(snn, profile), target)
        for at, t in (("largest T", snn["timesteps"][-1]), ("target", hit.timesteps if hit else None)):
            parts = curves.breakdown_at(snn, profile, t) if t is not None else None
            if parts is None:
                continue
            total = sum(parts.values())
            rows.append({"configuration": config_name(record), "at": at, "timesteps": t, **parts, "total": total,
                         "input_share": parts["input_layer"] / total if total else math.nan})
    return rows


MEMORY_COLUMNS = [
    ("configuration", "configuration"),
    ("dnn_compute_j", "DNN compute (J)"),
    ("dnn_memory_j", "DNN memory (J)"),
    ("timesteps", "SNN t"),
    ("snn_compute_j", "SNN compute (J)"),
    ("snn_memory_j", "SNN memory (J)"),
    ("snn_dnn_energy_ratio", "SNN/DNN total"),
    ("note", "note"),
]
"""Compute vs memory energy on one memory-aware profile: the DNN's, and the SNN's at its smallest t
reaching the target (its largest T, with a note, when it never does)."""


def memory_profiles(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The memory-aware profiles the finished records hold (``dnn.energy_breakdown_j``), in order.

    Example:
        >>> memory_profiles([{"config": {}, "dnn": {"energy_breakdown_j": {"m": {"compute": 1.0, "memory": 2.0}}}}])
        ['m']
    """
    names: list[str] = []
    for record in ok_records(records):
        for name in (record.get("dnn") or {}).get("energy_breakdown_j", {}):
            if name not in names:
                names.append(name)
    return names


def memory_rows(records: Sequence[Mapping[str, Any]], profile: str, target: float | None = None) -> list[dict[str, Any]]:
    """Per finished configuration: DNN and SNN energy on ``profile`` split into compute and memory
    (``dnn.energy_breakdown_j``; the SNN's ``memory`` part against the rest). The SNN is read at its
    smallest t reaching ``target`` (iso-accuracy; :func:`~snnergy.reporting.curves.breakdown_at`
    derives the split at any t of the curve), at its largest T with a note when it never reaches
    it or when no target is given.

    Example:
        >>> dnn = {"accuracy": 0.9, "energy_j": {"m": 5.0}, "energy_breakdown_j": {"m": {"compute": 2.0, "memory": 3.0}}}
        >>> snn = {"timesteps": [4], "energy_j": {"m": [10.0]}, "energy_breakdown_j": {"m": {
        ...     "input_layer": [1.0], "spiking_layers": [2.0], "neuron_updates": [0.0], "memory": [7.0]}}}
        >>> row = memory_rows([{"config": {"regularizer": "none", "strength": 0.0}, "dnn": dnn, "snn": snn}], "m")[0]
        >>> [row[k] for k in ("dnn_compute_j", "dnn_memory_j", "snn_compute_j", "snn_memory_j", "snn_dnn_energy_ratio")]
        [2.0, 3.0, 3.0, 7.0, 2.0]
    """
    rows = []
    for record in ok_records(records):
        split = (record.get("dnn") or {}).get("energy_breakdown_j", {}).get(profile)
        if split is None:
            continue
        row: dict[str, Any] = {"configuration": config_name(record), "dnn_compute_j": split["compute"],
                               "dnn_memory_j": split["memory"]}
        snn = record.get("snn") or {}
        t, note = _memory_t(snn, profile, target)
        parts = curves.breakdown_at(snn, profile, t) if t is not None else None
        if parts is not None and "memory" in parts:
            memory = parts.pop("memory")
            total = sum(parts.values()) + memory
            row.update(timesteps=t, snn_compute_j=sum(parts.values()), snn_memory_j=memory,
                       snn_dnn_energy_ratio=energy_ratio(total, split["compute"] + split["memory"]), note=note)
        rows.append(row)
    return rows


def _memory_t(snn: Mapping[str, Any], profile: str, target: float | None) -> tuple[int | None, str]:
    """The t the compute-vs-memory row reads an SNN at, and the row's note."""
    if not snn.get("timesteps"):
        return None, ""
    hit = curves.smallest_sufficient(curves.snn_curve(snn, profile), target) if target is not None else None
    if hit is not None:
        return hit.timesteps, ""
    return snn["timesteps"][-1], "largest T: never reaches the target" if target is not None else "largest T"


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
        f"Energies are joules per sample on profile `{profile}`. Fixed-T figures are at the largest "
        "simulated T; iso-accuracy figures at each SNN's smallest t reaching the target (every t checked).",
        "",
        "## Which regularizer?",
        "",
        *verdict(records, profile, drop, target),
        "",
        "## Configurations",
        "",
        "Fixed T: *T* .. *SNN/DNN energy* at the largest T. Iso-accuracy: *t to DNN-1pp*, the smallest t at "
        "which the SNN is within the drop of its own DNN (on the same test images), with its SynOps and energy there.",
        "",
        markdown_table(summary_rows(records, profile, drop), [c for c, _ in SUMMARY_COLUMNS], [h for _, h in SUMMARY_COLUMNS]),
        "",
        "## Energy breakdown",
        "",
        "SNN energy = input layer (the analog first layer's MACs x E_mac, paid once per sample: the floor no "
        "regularizer lowers) + spiking layers (SynOps x E_ac) + neuron updates (x E_neuron, where the profile "
        "charges them); at the largest T and at the smallest t reaching the verdict's target.",
        "",
        _breakdown_table(breakdown_rows(records, profile, drop, target)),
        "",
        *memory_section(records, reference_target(records, drop, target)[0]),
        *quantization_section(records, reference_target(records, drop, target)[0], profile),
        *core_section(records),
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


def _breakdown_table(rows: list[dict[str, Any]]) -> str:
    """The breakdown table; with a ``memory (J)`` column before the total when the profile has one."""
    columns = list(BREAKDOWN_COLUMNS)
    if any("memory" in row for row in rows):
        columns.insert(columns.index(("total", "total (J)")), ("memory", "memory (J)"))
    return markdown_table(rows, [c for c, _ in columns], [h for _, h in columns])


def memory_section(records: Sequence[Mapping[str, Any]], target: float | None = None) -> list[str]:
    """The compute-vs-memory tables of the energy breakdown, one per memory-aware profile held; each
    SNN at its smallest t reaching ``target`` (:func:`memory_rows`)."""
    lines: list[str] = []
    where = (f"SNN at its smallest t reaching the target {target:.4f} (iso-accuracy), its largest T where it "
             "never does." if target is not None else "SNN at the largest T.")
    for name in memory_profiles(records):
        lines += [f"Compute vs memory on `{name}`: compute is the arithmetic (MACs, SynOps, neuron updates); "
                  "memory one weight read per effective MAC (DNN) or per MAC and SynOp (SNN), plus the SNN's "
                  "neuron-state read + write per update (docs/design.md, \"Memory-aware energy\"). " + where, "",
                  markdown_table(memory_rows(records, name, target), [c for c, _ in MEMORY_COLUMNS],
                                 [h for _, h in MEMORY_COLUMNS]), ""]
    return lines


def format_summary(records: Sequence[Mapping[str, Any]], profile: str = DEFAULT_PROFILE, drop: float = 0.01) -> str:
    """The summary table as printed by ``snnergy compare``."""
    return markdown_table(summary_rows(records, profile, drop), [c for c, _ in SUMMARY_COLUMNS], [h for _, h in SUMMARY_COLUMNS])


__all__ = [
    "BREAKDOWN_COLUMNS",
    "MEMORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "breakdown_rows",
    "format_summary",
    "layer_rows",
    "memory_profiles",
    "memory_rows",
    "memory_section",
    "reference_target",
    "report_markdown",
    "summary_rows",
    "verdict",
]
