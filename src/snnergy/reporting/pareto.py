"""Sweep statistics: configurations averaged over seeds, Pareto fronts, smallest t to a target,
and the iso-accuracy summary ("which regularizer reaches the target for the least energy?").

Fronts and fixed-T columns use the listed T (``snn.timesteps``); the smallest t reaching a target
and the iso-accuracy verdict use each run's curve at every t (``snn.curve``, the listed T for older
records), with factors against the unregularized ReLU SNN (:mod:`snnergy.reporting.curves`).

It reads result records only (docs/design.md's schema). A *configuration* (:class:`Group`) is every
record whose resolved config is the same but for ``seed`` and ``device``; its numbers are means
over those seeds. An SNN point is a (configuration, T) pair, since energy grows with T while
accuracy converges. Fronts maximize accuracy and minimize cost (energy, or effective MACs).
A configuration with a collapsed run (a layer silent on every input) is listed with a note but
is never on a front nor in the iso-accuracy verdict: its low energy is not a saving.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import snnergy.reporting.curves as curves
from snnergy.reporting.filters import (
    axes,
    config_label,
    dnn_reference,
    is_baseline,
    is_full_baseline,
    lever_switch,
    model_label,
    ok_records,
    reference_accuracy,
)
from snnergy.reporting.identity import SEED_KEYS, record_hash, resolved_config
from snnergy.reporting.tables import collapsed_layers

IGNORED_KEYS = SEED_KEYS  # runs differing only by these are one configuration
HEADLINE_KEYS = ("data.dataset", "model.name", "train.regularizer", "train.strength", "dataset", "model", "regularizer",
                 "strength", "model.activation", "model.width", "activation", "levels", "width")
"""Settings every label shows (``model.levels`` too, for ``qcfs``: :func:`~snnergy.reporting.filters.config_label`)."""


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, by increasing cost: maximize accuracy, minimize cost.

    A point is dominated when another has cost <= and accuracy >= with one of them strict;
    exact duplicates of a front point are kept; points with a NaN are never on the front.

    Example:
        >>> # (cost, accuracy): 0 (1, .5)  1 (2, .9)  2 (3, .8) dominated by 1  3 (2, .7) dominated by 1
        >>> # 4 (4, .95)  5 (1, .4) dominated by 0
        >>> pareto_front([1, 2, 3, 2, 4, 1], [.5, .9, .8, .7, .95, .4])
        [0, 1, 4]
    """
    if len(costs) != len(accuracies):
        raise ValueError(f"{len(costs)} costs but {len(accuracies)} accuracies")
    valid = [i for i in range(len(costs)) if math.isfinite(costs[i]) and math.isfinite(accuracies[i])]
    valid.sort(key=lambda i: (costs[i], -accuracies[i]))
    front: list[int] = []
    best, last = -math.inf, None
    for i in valid:
        point = (costs[i], accuracies[i])
        if accuracies[i] > best:
            front.append(i)
            best, last = accuracies[i], point
        elif point == last:
            front.append(i)
    return front


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the finite values; std 0 for one value.

    Example:
        >>> mean_std([0.9, 0.92]), mean_std([0.5]), mean_std([])
        ((0.91, 0.014142135623730963), (0.5, 0.0), (nan, nan))
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's config as dotted keys, without seed and device: what tells configurations apart
    in labels (their identity is :func:`~snnergy.reporting.identity.record_hash` without seed)."""
    return {k: v for k, v in _flatten(resolved_config(record)).items() if k not in IGNORED_KEYS}


@dataclass(frozen=True)
class Group:
    """One configuration with its runs over seeds.

    Attributes:
        key: Its identity: :func:`~snnergy.reporting.identity.record_hash` without seed and device.
        label: Short name: model axes (activation, levels, width; see
            :func:`~snnergy.reporting.filters.config_label`), regularizer and strength, plus any other
            setting that varies.
        dataset: Dataset name.
        model: Model name.
        regularizer: Regularizer name.
        strength: Regularizer strength.
        records: Its finished records, one per seed.
    """

    key: str
    label: str
    dataset: str
    model: str
    regularizer: str
    strength: float
    records: tuple[Mapping[str, Any], ...] = field(compare=False)

    @property
    def family(self) -> str:
        """What its Pareto front groups it with: the model axes and the regularizer, all strengths
        together (the regularizer's name alone for full-width ReLU networks).

        Example:
            >>> rec = {"config": {"dataset": "d", "model": "m", "regularizer": "synops", "strength": 1e-7, "seed": 0,
            ...                   "activation": "qcfs", "levels": 4, "width": 0.5}, "dnn": {"accuracy": 0.9}}
            >>> group_records([rec])[0].family
            'qcfs4 w0.5 synops'
        """
        model = model_label(self.records[0])
        return f"{model} {self.regularizer}" if model else self.regularizer

    @property
    def seeds(self) -> list[Any]:
        """The seeds of its runs."""
        return [r["config"].get("seed") for r in self.records]

    @property
    def collapsed(self) -> list[str]:
        """Silent layers of any of its runs (see :func:`~snnergy.reporting.tables.collapsed_layers`)."""
        return list(dict.fromkeys(name for r in self.records for name in collapsed_layers(r)))


def usable(groups: Sequence[Group]) -> list[Group]:
    """The configurations that did not collapse: the candidates of fronts and verdicts."""
    return [g for g in groups if not g.collapsed]


def group_records(records: Sequence[Mapping[str, Any]]) -> list[Group]:
    """Groups finished records into configurations (same config but for seed), in first-seen order.

    Example:
        >>> recs = [{"config": {"dataset": "d", "model": "m", "regularizer": r, "strength": s, "seed": seed},
        ...          "dnn": {"accuracy": 0.9}} for r, s in (("none", 0.0), ("l1", 0.1)) for seed in (0, 1)]
        >>> [(g.label, g.seeds) for g in group_records(recs)]
        [('none', [0, 1]), ('l1 0.1', [0, 1])]
    """
    finished = ok_records(records)
    identities = [settings(r) for r in finished]
    varying = sorted(
        key for key in {k for ident in identities for k in ident}
        if key not in HEADLINE_KEYS and not _tagged(key, identities)
        and len({json.dumps(i.get(key), sort_keys=True) for i in identities}) > 1
    )
    levels_by_activation: dict[str, set[int]] = {}
    for record in finished:
        activation, levels, _ = axes(record)
        levels_by_activation.setdefault(activation, set()).add(levels)
    levels_vary = {activation: len(levels) > 1 for activation, levels in levels_by_activation.items()}
    order: dict[str, list[Mapping[str, Any]]] = {}
    for record in finished:
        order.setdefault(record_hash(record, IGNORED_KEYS), []).append(record)
    groups = []
    for key, members in order.items():
        cfg, ident = members[0]["config"], settings(members[0])
        name = config_label(members[0])
        activation = axes(members[0])[0]
        extras = [f"{k}={_short(ident.get(k))}" for k in varying  # qcfs labels show L; others only when theirs vary
                  if not (k == "model.levels" and (activation == "qcfs" or not levels_vary.get(activation)))
                  and _lever_used(k, ident)]
        label = ", ".join([name, *extras])
        groups.append(Group(key, label, cfg["dataset"], cfg["model"], cfg["regularizer"], cfg["strength"], tuple(members)))
    return groups


def _lever_used(key: str, ident: Mapping[str, Any]) -> bool:
    """Whether a configuration uses the lever ``key`` belongs to (any other key: ``True``): a
    fine-tuning setting is no part of the label of a configuration that was not fine-tuned."""
    switch = lever_switch(key)
    return switch is None or bool(ident.get(switch))


def _tagged(key: str, identities: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a lever tag (:func:`~snnergy.reporting.filters.levers`: ``init``, ``kd``, ``ft<T>``)
    already tells the configurations apart on ``key``: the switch itself (``ft<T>`` shows T), or a
    lever's setting that is the same wherever the lever is used."""
    switch = lever_switch(key)
    if switch is None:
        return False
    used = [i for i in identities if i.get(switch)]
    return key == "finetune.timesteps" or len({json.dumps(i.get(key), sort_keys=True) for i in used}) <= 1


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def sections(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, list[Group]]]:
    """Finished records split by (dataset, model), each as its configurations.

    Example:
        >>> recs = [{"config": {"dataset": "d", "model": m, "regularizer": "none", "strength": 0.0, "seed": 0},
        ...          "dnn": {"accuracy": 0.9}} for m in ("lenet", "vgg")]
        >>> [(d, m, len(g)) for d, m, g in sections(recs)]
        [('d', 'lenet', 1), ('d', 'vgg', 1)]
    """
    parts: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in ok_records(records):
        parts.setdefault((record["config"]["dataset"], record["config"]["model"]), []).append(record)
    return [(dataset, model, group_records(recs)) for (dataset, model), recs in parts.items()]


def dnn_stats(group: Group, profile: str) -> dict[str, tuple[float, float]]:
    """(mean, std) over seeds of DNN accuracy, mean sparsity, effective MACs and energy."""
    dnns = [r["dnn"] for r in group.records]
    return {
        "accuracy": mean_std([d.get("accuracy") for d in dnns]),
        "sparsity": mean_std([statistics.fmean(d["sparsity"].values()) if d.get("sparsity") else None for d in dnns]),
        "macs_effective": mean_std([d.get("macs_effective") for d in dnns]),
        "energy_j": mean_std([d.get("energy_j", {}).get(profile) for d in dnns]),
    }


@dataclass(frozen=True)
class SNNPoint:
    """A (configuration, T) pair with its seed-mean accuracy and energy.

    Attributes:
        group: The configuration.
        timesteps: T.
        accuracy: Mean accuracy over seeds at T.
        accuracy_std: Its standard deviation.
        energy_j: Mean energy per sample at T on the profile.
        energy_std: Its standard deviation.
        synops: Mean SynOps per sample at T.
    """

    group: Group
    timesteps: int
    accuracy: float
    accuracy_std: float
    energy_j: float
    energy_std: float
    synops: float


def snn_points(group: Group, profile: str) -> list[SNNPoint]:
    """The configuration's SNN points, one per T reported by all of its seeds."""
    snns = [r["snn"] for r in group.records if r.get("snn")]
    if not snns:
        return []
    common = [t for t in snns[0]["timesteps"] if all(t in s["timesteps"] for s in snns)]
    points = []
    for t in common:
        at = [s["timesteps"].index(t) for s in snns]
        acc = mean_std([s["accuracy"][i] for s, i in zip(snns, at)])
        energy = mean_std([(s.get("energy_j", {}).get(profile) or [None] * (i + 1))[i] for s, i in zip(snns, at)])
        synops = mean_std([s["synops"][i] for s, i in zip(snns, at)])
        points.append(SNNPoint(group, t, acc[0], acc[1], energy[0], energy[1], synops[0]))
    return points


def curve_points(group: Group, profile: str) -> list[SNNPoint]:
    """The configuration's SNN points at every t of its runs' curves (``snn.curve``; the listed T
    of runs without one) that all of its seeds share, seed means as :func:`snn_points`.

    Example:
        >>> snn = {"timesteps": [2], "accuracy": [0.9], "synops": [2.0], "energy_j": {"p": [2.0]},
        ...        "curve": {"timesteps": [1, 2], "accuracy": [0.8, 0.9], "synops": [1.0, 2.0], "energy_j": {"p": [1.0, 2.0]}}}
        >>> rec = {"config": {"dataset": "d", "model": "m", "regularizer": "none", "strength": 0.0, "seed": 0},
        ...        "dnn": {"accuracy": 0.9}, "snn": snn}
        >>> [(p.timesteps, p.accuracy) for p in curve_points(group_records([rec])[0], "p")]
        [(1, 0.8), (2, 0.9)]
    """
    runs = [curves.snn_curve(r["snn"], profile) for r in group.records if r.get("snn")]
    if not runs:
        return []
    common = [t for t in runs[0].timesteps if all(t in c.timesteps for c in runs[1:])]
    points = []
    for t in common:
        at = [c.timesteps.index(t) for c in runs]
        acc = mean_std([c.accuracy[i] for c, i in zip(runs, at)])
        energy = mean_std([c.energy_j[i] for c, i in zip(runs, at)])
        synops = mean_std([c.synops[i] for c, i in zip(runs, at)])
        points.append(SNNPoint(group, t, acc[0], acc[1], energy[0], energy[1], synops[0]))
    return points


def every_t(group: Group) -> bool:
    """Whether every run of the configuration has its curve at every t (``snn.curve``)."""
    return all(bool((r.get("snn") or {}).get("curve")) for r in group.records)


def snn_fronts(groups: Sequence[Group], profile: str) -> dict[str, list[SNNPoint]]:
    """Per family (:attr:`Group.family`: model axes and regularizer; the regularizer alone for
    full-width ReLU networks), the Pareto front of SNN points (accuracy vs energy), by increasing
    energy; collapsed configurations are left out."""
    groups = usable(groups)
    fronts = {}
    for family in dict.fromkeys(g.family for g in groups):
        points = [p for g in groups if g.family == family for p in snn_points(g, profile)]
        if points:
            fronts[family] = [points[i] for i in pareto_front([p.energy_j for p in points], [p.accuracy for p in points])]
    return fronts


def overall_snn_front(groups: Sequence[Group], profile: str) -> list[SNNPoint]:
    """The Pareto front of SNN points (accuracy vs energy, listed T) over every configuration at
    once (every activation, width, regularizer and strength), by increasing energy; collapsed
    configurations are left out.

    Example:
        >>> def rec(reg, act, acc, energy):
        ...     return {"config": {"dataset": "d", "model": "m", "regularizer": reg, "strength": 0.0 if reg == "none" else 1.0,
        ...                        "seed": 0, "activation": act}, "dnn": {"accuracy": 0.9},
        ...             "snn": {"timesteps": [4], "accuracy": [acc], "synops": [energy], "energy_j": {"p": [energy]}}}
        >>> # relu none (0.9, 4 J) is dominated by qcfs8 none (0.9, 1 J); l1 (0.95, 2 J) is more accurate
        >>> groups = group_records([rec("none", "relu", 0.9, 4.0), rec("none", "qcfs", 0.9, 1.0), rec("l1", "relu", 0.95, 2.0)])
        >>> [p.group.label for p in overall_snn_front(groups, "p")]
        ['qcfs8 none', 'l1 1']
    """
    points = [p for g in usable(groups) for p in snn_points(g, profile)]
    return [points[i] for i in pareto_front([p.energy_j for p in points], [p.accuracy for p in points])]


def dnn_fronts(groups: Sequence[Group], profile: str) -> dict[str, list[Group]]:
    """Per family (:attr:`Group.family`), the Pareto front of configurations: DNN accuracy vs
    effective MACs; collapsed configurations are left out."""
    groups = usable(groups)
    fronts = {}
    for family in dict.fromkeys(g.family for g in groups):
        members = [g for g in groups if g.family == family]
        stats = [dnn_stats(g, profile) for g in members]
        front = pareto_front([s["macs_effective"][0] for s in stats], [s["accuracy"][0] for s in stats])
        fronts[family] = [members[i] for i in front]
    return fronts


def target_accuracy(groups: Sequence[Group], drop: float = 0.01, target: float | None = None) -> tuple[float, str]:
    """The target and how it was set: ``target`` if given, else the unregularized DNN's mean
    accuracy (the best DNN's without one) minus ``drop``."""
    if target is not None:
        return target, f"accuracy >= {target:.4f} (given)"
    reference, what = reference_accuracy([r for g in groups for r in g.records])
    return reference - drop, f"accuracy >= {reference - drop:.4f} ({what} {reference:.4f} minus {drop * 100:.3g} pp)"


def smallest_t(group: Group, target: float, profile: str) -> SNNPoint | None:
    """The first t at which the configuration's seed-mean SNN accuracy reaches ``target``, on its
    curve at every t (:func:`curve_points`)."""
    return next((p for p in curve_points(group, profile) if p.accuracy >= target), None)


def configuration_rows(groups: Sequence[Group], profile: str, target: float) -> list[dict[str, Any]]:
    """One row per configuration: DNN and largest-T SNN numbers as mean and std over seeds (fixed T),
    and the smallest t reaching ``target`` (every t) with its accuracy, energy and SynOps."""
    rows = []
    for g in groups:
        dnn = dnn_stats(g, profile)
        points = snn_points(g, profile)
        row: dict[str, Any] = {
            "configuration": g.label, "dataset": g.dataset, "model": g.model, "regularizer": g.regularizer,
            "strength": g.strength, "seeds": len(g.records),
            "note": f"collapsed: {', '.join(g.collapsed)} silent" if g.collapsed else "",
        }
        for name, (mean, std) in dnn.items():
            row[f"dnn_{name}"], row[f"dnn_{name}_std"] = mean, std
        if points:
            last, hit = points[-1], smallest_t(g, target, profile)
            row.update(
                timesteps=last.timesteps, snn_accuracy=last.accuracy, snn_accuracy_std=last.accuracy_std,
                snn_energy_j=last.energy_j, snn_energy_j_std=last.energy_std,
                t_target=hit.timesteps if hit else None, t_target_accuracy=hit.accuracy if hit else None,
                t_target_energy_j=hit.energy_j if hit else None, t_target_synops=hit.synops if hit else None,
            )
        rows.append(row)
    return rows


def _reference(group: Group) -> float:
    """Seed-mean DNN accuracy on the images the SNN ran (what the target is judged on)."""
    return mean_std([dnn_reference(r) for r in group.records])[0]


def iso_accuracy(groups: Sequence[Group], target: float, profile: str) -> list[dict[str, Any]]:
    """Per family (:attr:`Group.family`: model axes and regularizer): the lowest-energy DNN
    configuration (DNN accuracy on the images the SNN ran) and the lowest-energy SNN configuration
    at its smallest t whose seed-mean accuracy reaches ``target`` (every t); keys absent where none
    does; collapsed configurations are never chosen. ``regularizer`` names the family's regularizer,
    ``family`` the family."""
    rows = []
    for family in dict.fromkeys(g.family for g in groups):
        members = [g for g in usable(groups) if g.family == family]
        regularizer = next(g.regularizer for g in groups if g.family == family)
        dnn_ok = [(g, dnn_stats(g, profile)) for g in members]
        dnn_ok = [(g, s) for g, s in dnn_ok if _reference(g) >= target and math.isfinite(s["energy_j"][0])]
        snn_ok = [p for g in members for p in [smallest_t(g, target, profile)] if p is not None and math.isfinite(p.energy_j)]
        row: dict[str, Any] = {"family": family, "regularizer": regularizer}
        if dnn_ok:
            g, s = min(dnn_ok, key=lambda item: item[1]["energy_j"][0])
            row.update(dnn_configuration=g.label, dnn_accuracy=s["accuracy"][0], dnn_energy_j=s["energy_j"][0],
                       dnn_macs_effective=s["macs_effective"][0])
        if snn_ok:
            p = min(snn_ok, key=lambda q: q.energy_j)
            row.update(snn_configuration=p.group.label, snn_timesteps=p.timesteps, snn_accuracy=p.accuracy,
                       snn_energy_j=p.energy_j, snn_synops=p.synops)
        rows.append(row)
    return rows


def iso_accuracy_lines(rows: Sequence[Mapping[str, Any]], profile: str) -> list[str]:
    """The verdict over :func:`iso_accuracy` rows: lowest SNN and DNN energy, and which regularizer."""
    lines = []
    dnn = [r for r in rows if "dnn_energy_j" in r]
    snn = [r for r in rows if "snn_energy_j" in r]
    if snn:
        best = min(snn, key=lambda r: r["snn_energy_j"])
        lines.append(
            f"- Lowest SNN energy: **{best['snn_configuration']} at T = {best['snn_timesteps']}** "
            f"({_family_text(best)}), {best['snn_energy_j']:.3g} J/sample on `{profile}`, "
            f"accuracy {best['snn_accuracy']:.4f}, {best['snn_synops']:.3g} SynOps."
        )
    else:
        lines.append("- No SNN reaches the target at the simulated timesteps.")
    if dnn:
        best = min(dnn, key=lambda r: r["dnn_energy_j"])
        lines.append(
            f"- Lowest DNN energy: **{best['dnn_configuration']}** ({_family_text(best)}), "
            f"{best['dnn_energy_j']:.3g} J/sample, accuracy {best['dnn_accuracy']:.4f}, "
            f"{best['dnn_macs_effective']:.3g} effective MACs."
        )
    else:
        lines.append("- No DNN reaches the target.")
    return lines


def _family_text(row: Mapping[str, Any]) -> str:
    """``regularizer **l1**``, with the model axes before it when the family has them."""
    model = row.get("family", row["regularizer"])[: -len(row["regularizer"])].strip()
    return f"{model}, regularizer **{row['regularizer']}**" if model else f"regularizer **{row['regularizer']}**"


def baseline_group(groups: Sequence[Group]) -> Group | None:
    """The unregularized ReLU configuration (:func:`~snnergy.reporting.filters.is_baseline`) every
    iso-accuracy factor is taken against: the full-width one (model width 1) when several."""
    plain = [g for g in usable(groups) if is_baseline(g.records[0])]
    full = [g for g in plain if is_full_baseline(g.records[0])]
    return (full or plain or [None])[0]


def mean_breakdown(group: Group, profile: str, t: int) -> dict[str, float] | None:
    """Seed-mean energy breakdown (:func:`~snnergy.reporting.curves.breakdown_at`) at ``t``."""
    parts = [curves.breakdown_at(r["snn"], profile, t) for r in group.records if r.get("snn")]
    if not parts or any(p is None for p in parts):
        return None
    return {name: mean_std([p[name] for p in parts])[0] for name in curves.PARTS}  # type: ignore[index]


def iso_factor_lines(groups: Sequence[Group], target: float, profile: str) -> list[str]:
    """The iso-accuracy answer over configurations (seed means, every t): the lowest-energy SNN at
    the target against the unregularized ReLU SNN (times fewer SynOps, times less energy, timesteps),
    its energy over the cheapest DNN's at the target, its energy breakdown and the input-layer floor.

    Example:
        >>> def rec(reg, acc, synops):  # curve at t = 1, 2; energy = SynOps (1 J each), input 0.5 J
        ...     snn = {"timesteps": [2], "accuracy": [acc[1]], "synops": [synops[1]], "energy_j": {"p": [synops[1] + 0.5]},
        ...            "energy_breakdown_j": {"p": {"input_layer": [0.5], "spiking_layers": [synops[1]], "neuron_updates": [0.0]}},
        ...            "curve": {"timesteps": [1, 2], "accuracy": acc, "synops": synops, "energy_j": {"p": [s + 0.5 for s in synops]}}}
        ...     return {"config": {"dataset": "d", "model": "m", "regularizer": reg, "strength": 0.0 if reg == "none" else 1.0,
        ...                        "seed": 0}, "dnn": {"accuracy": 0.9, "energy_j": {"p": 10.0}, "macs_effective": 1.0}, "snn": snn}
        >>> groups = group_records([rec("none", [0.5, 0.9], [3.0, 6.0]), rec("l1", [0.9, 0.9], [1.0, 2.0])])
        >>> lines = iso_factor_lines(groups, 0.85, "p")
        >>> # none reaches 0.85 at t = 2 (6 SynOps, 6.5 J); l1 at t = 1 (1 SynOp, 1.5 J): 6x, 6.5 / 1.5 = 4.33x
        >>> "**6x fewer SynOps** and **4.33x less energy**" in lines[0], "**0.15**" in lines[1]
        (True, True)
    """
    hits = [(g, smallest_t(g, target, profile)) for g in usable(groups)]
    hits = [(g, p) for g, p in hits if p is not None and math.isfinite(p.energy_j)]
    if not hits:
        return []
    group, point = min(hits, key=lambda item: item[1].energy_j)
    grid = "every t" if every_t(group) else "listed T"
    lines = []
    base = baseline_group(groups)
    base_point = smallest_t(base, target, profile) if base is not None else None
    if base is None:
        lines.append("- Iso-accuracy factors: no unregularized ReLU configuration to compare against.")
    elif base_point is None:
        lines.append(f"- Iso-accuracy factors: the unregularized ReLU SNN ({base.label}) does not reach the target.")
    else:
        lines.append(
            f"- Iso-accuracy ({grid}), **{group.label} at t = {point.timesteps}** against the unregularized full-width ReLU SNN "
            f"({base.label} at t = {base_point.timesteps}, {base_point.synops:.3g} SynOps, {base_point.energy_j:.3g} J): "
            f"**{curves.factor(base_point.synops, point.synops):.3g}x fewer SynOps** and "
            f"**{curves.factor(base_point.energy_j, point.energy_j):.3g}x less energy**, "
            f"in {point.timesteps} instead of {base_point.timesteps} timesteps."
        )
    dnns = [(g, dnn_stats(g, profile)["energy_j"][0]) for g in usable(groups) if _reference(g) >= target]
    dnns = [(g, e) for g, e in dnns if math.isfinite(e)]
    if dnns:
        cheapest, energy = min(dnns, key=lambda item: item[1])
        ratio = point.energy_j / energy if energy else math.nan
        lines.append(f"- SNN/DNN energy at iso-accuracy: **{ratio:.3g}** ({point.energy_j:.3g} J against the cheapest "
                     f"DNN at the target, {cheapest.label}, {energy:.3g} J).")
    parts = mean_breakdown(group, profile, point.timesteps)
    if parts is not None:
        lines.append(f"- Its energy at t = {point.timesteps}: input layer {parts['input_layer']:.3g} J, spiking layers "
                     f"{parts['spiking_layers']:.3g} J, neuron updates {parts['neuron_updates']:.3g} J.")
        reference = base_point.energy_j if base_point is not None else point.energy_j
        whose = "the unregularized ReLU SNN's" if base_point is not None else "this SNN's"
        if parts["input_layer"] > 0:
            lines.append(
                f"- Input-layer floor: the analog first layer costs {parts['input_layer']:.3g} J/sample whatever the "
                f"regularizer, so the SNN energy can fall at most {reference / parts['input_layer']:.3g}x below "
                f"{whose} {reference:.3g} J (REFERENCE.md section 7)."
            )
    return lines


def layer_stats(group: Group) -> list[dict[str, Any]]:
    """Per layer of a configuration: DNN sparsity and SNN spike rate, mean and std over seeds."""
    layers = list(dict.fromkeys(name for r in group.records for name in r["dnn"].get("sparsity", {})))
    rows = []
    for layer in layers:
        sparsity = mean_std([r["dnn"]["sparsity"].get(layer) for r in group.records])
        rate = mean_std([(r.get("snn") or {}).get("spike_rate", {}).get(layer) for r in group.records])
        rows.append({"configuration": group.label, "layer": layer, "sparsity": sparsity[0], "sparsity_std": sparsity[1],
                     "spike_rate": rate[0], "spike_rate_std": rate[1]})
    return rows
