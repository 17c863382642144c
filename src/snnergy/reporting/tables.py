"""Tables of results: flat rows, Markdown and CSV.

It sees only the JSON form of results (``results.json``: a list of records with ``config``,
``dnn`` and optionally ``snn`` parts, docs/design.md's schema), never the stages' classes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import atomic_write

DEFAULT_PROFILE = "cmos45-fp32"

DEFAULT_AXES = ("relu", 8, 1.0)
"""(activation, levels, width) of a record that does not say: what records written before these
keys existed (and ``ModelConfig``'s defaults) mean."""


def axes(record: Mapping[str, Any]) -> tuple[str, int, float]:
    """A record's model axes (activation, QCFS levels, width): the headline ``config`` keys, else
    ``config.resolved.model``, else :data:`DEFAULT_AXES` (records written before the keys existed).

    Example:
        >>> axes({"config": {"activation": "qcfs", "levels": 4, "width": 0.5}})
        ('qcfs', 4, 0.5)
        >>> axes({"config": {"regularizer": "none", "resolved": {"model": {"activation": "clip"}}}}), axes({"config": {}})
        (('clip', 8, 1.0), ('relu', 8, 1.0))
    """
    cfg = record["config"]
    resolved = cfg.get("resolved")
    model = resolved.get("model") if isinstance(resolved, Mapping) else None
    model = model if isinstance(model, Mapping) else {}
    checks = (lambda v: isinstance(v, str) and bool(v),
              lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
              lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
    values = []
    for key, default, valid in zip(("activation", "levels", "width"), DEFAULT_AXES, checks):
        value = next((v for v in (cfg.get(key), model.get(key)) if v is not None and valid(v)), default)
        values.append(value)
    return str(values[0]), int(values[1]), float(values[2])


def collapsed_layers(record: Mapping[str, Any]) -> list[str]:
    """The layers that make a record's network *collapsed*: silent (every activation zero) on the
    DNN's test data (``dnn.collapsed``, or a sparsity of exactly 1 in records written before that
    key) or on the conversion's calibration data (``snn.silent_layers``).

    A collapsed network's output no longer depends on its input; its low energy is not a saving,
    so reports note it and leave it out of ratios, fronts and "lowest energy" verdicts.

    Example:
        >>> collapsed_layers({"dnn": {"sparsity": {"relu1": 0.5, "relu2": 1.0}}, "snn": {"silent_layers": ["relu3"]}})
        ['relu2', 'relu3']
    """
    dnn = record.get("dnn") or {}
    names = list(dnn["collapsed"]) if "collapsed" in dnn else [
        name for name, value in dnn.get("sparsity", {}).items() if value >= 1.0]
    snn = record.get("snn") or {}
    return names + [name for name in snn.get("silent_layers", []) if name not in names]


def energy_ratio(snn_energy: Any, dnn_energy: Any, collapsed: bool = False) -> float:
    """SNN energy over DNN energy; NaN (never inf) when the DNN's is zero or missing, or the network
    collapsed.

    Example:
        >>> energy_ratio(1.0, 4.0), energy_ratio(1.0, 0.0), energy_ratio(1.0, 4.0, collapsed=True)
        (0.25, nan, nan)
    """
    if collapsed or not dnn_energy or snn_energy is None:
        return math.nan
    ratio = snn_energy / dnn_energy
    return ratio if math.isfinite(ratio) else math.nan


def dnn_row(record: Mapping[str, Any], profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """The headline DNN numbers of one record as a flat row.

    Example:
        >>> rec = {"config": {"dataset": "digits", "model": "lenet", "regularizer": "l1", "strength": 0.1, "seed": 0},
        ...        "dnn": {"accuracy": 0.9, "sparsity": {"a": 0.5, "b": 0.7}, "macs_dense": 100.0,
        ...                "macs_effective": 40.0, "energy_j": {"cmos45-fp32": 1.84e-10}}}
        >>> row = dnn_row(rec)
        >>> row["sparsity"], row["effective_ratio"]
        (0.6, 0.4)
    """
    cfg, dnn = record["config"], record.get("dnn", {})
    sparsity = dnn.get("sparsity", {})
    dense = dnn.get("macs_dense", 0.0)
    return {
        "dataset": cfg["dataset"],
        "model": cfg["model"],
        "regularizer": cfg["regularizer"],
        "strength": cfg["strength"],
        "seed": cfg["seed"],
        **dict(zip(("activation", "levels", "width"), axes(record))),
        "dnn_accuracy": dnn.get("accuracy", math.nan),
        "sparsity": sum(sparsity.values()) / len(sparsity) if sparsity else math.nan,
        "macs_dense": dense,
        "macs_effective": dnn.get("macs_effective", math.nan),
        "effective_ratio": dnn.get("macs_effective", math.nan) / dense if dense else math.nan,
        "dnn_energy_j": dnn.get("energy_j", {}).get(profile, math.nan),
        "collapsed": " ".join(collapsed_layers(record)),
    }


def result_rows(records: Iterable[Mapping[str, Any]], profile: str = DEFAULT_PROFILE) -> list[dict[str, Any]]:
    """Long-format rows: one per (configuration, reported T), or one per configuration without SNN.

    Each row repeats the DNN numbers and adds the SNN's accuracy, SynOps, input MACs, neuron
    updates and energy on ``profile`` at that T. ``collapsed`` names the silent layers of a
    collapsed network (space-separated; empty otherwise), whose energy ratio is left NaN.
    """
    rows = []
    for record in records:
        base = dnn_row(record, profile)
        snn = record.get("snn")
        if not snn:
            rows.append(base)
            continue
        energies = snn.get("energy_j", {}).get(profile, [])
        for i, t in enumerate(snn["timesteps"]):
            snn_energy = energies[i] if i < len(energies) else math.nan
            rows.append(
                {
                    **base,
                    "timesteps": t,
                    "snn_accuracy": snn["accuracy"][i],
                    "synops": snn["synops"][i],
                    "input_macs": snn["input_macs"][i],
                    "neuron_updates": snn["neuron_updates"][i],
                    "snn_energy_j": snn_energy,
                    "snn_dnn_energy_ratio": energy_ratio(snn_energy, base["dnn_energy_j"], bool(base["collapsed"])),
                }
            )
    return rows


def format_value(value: Any) -> str:
    """Short human form: 3 significant digits for floats, percent for accuracies is left to callers.

    Example:
        >>> format_value(0.123456), format_value(1234567.0), format_value(3), format_value(None)
        ('0.123', '1.23e+06', '3', '')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A Markdown table of ``columns`` of ``rows``.

    Example:
        >>> print(markdown_table([{"a": 1, "b": 0.5}], ["a", "b"]))
        | a | b |
        | --- | --- |
        | 1 | 0.5 |
    """
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text with the union of the rows' keys as header, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes ``rows`` as CSV, atomically."""
    text = csv_text(rows)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
