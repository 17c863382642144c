"""Which records count, and what to call them: the first step of every report.

Every other reporting module builds on these; this one imports only :mod:`snnergy.reporting.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from snnergy.reporting.tables import DEFAULT_AXES, axes, collapsed_layers


def ok_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records of configurations that finished (no ``error`` part).

    Example:
        >>> len(ok_records([{"config": {}, "dnn": {}}, {"config": {}, "error": "boom"}]))
        1
    """
    return [r for r in records if "error" not in r and "dnn" in r]


def usable_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Finished records whose network did not collapse: the candidates of every verdict."""
    return [r for r in ok_records(records) if not collapsed_layers(r)]


def model_label(record: Mapping[str, Any], always: bool = False) -> str:
    """The model axes as a short label: the activation (with its levels for ``qcfs``) and ``w<width>``
    when the width is not 1; ``""`` for a full-width ReLU network unless ``always``.

    Example:
        >>> rec = {"config": {"activation": "qcfs", "levels": 4, "width": 0.5}}
        >>> model_label(rec), model_label({"config": {"width": 0.25}}), model_label({"config": {}}), model_label({"config": {}}, True)
        ('qcfs4 w0.5', 'relu w0.25', '', 'relu')
    """
    activation, levels, width = axes(record)
    if activation == "relu" and width == 1.0 and not always:
        return ""
    name = f"{activation}{levels}" if activation == "qcfs" else activation
    return name if width == 1.0 else f"{name} w{width:g}"


LEVER_SWITCHES = (("finetune.", "finetune.timesteps"), ("train.distill", "train.distill"),
                  ("train.init_from", "train.init_from"))
"""(dotted-key prefix, the key that switches its lever on): the settings :func:`levers` tags."""


def lever_switch(key: str) -> str | None:
    """The dotted key that switches on the lever ``key`` belongs to (``None``: no lever's).

    Example:
        >>> lever_switch("finetune.strength"), lever_switch("train.distill_weight"), lever_switch("train.lr")
        ('finetune.timesteps', 'train.distill', None)
    """
    return next((switch for prefix, switch in LEVER_SWITCHES if key.startswith(prefix)), None)


def levers(record: Mapping[str, Any]) -> list[str]:
    """The training levers a configuration used beyond its activation and penalty, as short tags:
    ``init`` (started from a checkpoint, ``train.init_from``), ``kd`` (knowledge distillation,
    ``train.distill``), ``ft<T>`` (SNN-in-the-loop fine-tuning at T steps, ``finetune.timesteps``).

    Example:
        >>> levers({"config": {"resolved": {"train": {"init_from": "runs/t", "distill": "runs/t"},
        ...                                 "finetune": {"timesteps": 8}}}})
        ['init', 'kd', 'ft8']
        >>> levers({"config": {"regularizer": "none"}})
        []
    """
    resolved = record["config"].get("resolved")
    resolved = resolved if isinstance(resolved, Mapping) else {}
    train = resolved.get("train") if isinstance(resolved.get("train"), Mapping) else {}
    finetune = resolved.get("finetune") if isinstance(resolved.get("finetune"), Mapping) else {}
    tags = []
    if train.get("init_from"):
        tags.append("init")
    if train.get("distill"):
        tags.append("kd")
    if finetune.get("timesteps"):
        tags.append(f"ft{finetune['timesteps']}")
    return tags


def config_name(record: Mapping[str, Any]) -> str:
    """A record's configuration in a sentence: model axes (when not the full-width ReLU network),
    regularizer and strength.

    Example:
        >>> config_name({"config": {"regularizer": "l1", "strength": 0.1}}), config_name({"config": {"regularizer": "none"}})
        ('l1 (strength 0.1)', 'none')
        >>> config_name({"config": {"regularizer": "synops", "strength": 7e-7, "activation": "qcfs", "levels": 4, "width": 0.5}})
        'qcfs4 w0.5 synops (strength 7e-07)'
    """
    cfg = record["config"]
    name = cfg["regularizer"] if cfg["regularizer"] == "none" else f"{cfg['regularizer']} (strength {cfg['strength']:g})"
    return " ".join(part for part in (model_label(record), name, " ".join(levers(record))) if part)


def config_label(record: Mapping[str, Any]) -> str:
    """A record's configuration as a short label (plots, tables).

    Example:
        >>> config_label({"config": {"regularizer": "l1", "strength": 0.1}})
        'l1 0.1'
        >>> config_label({"config": {"regularizer": "none", "strength": 0.0, "activation": "qcfs", "levels": 8}})
        'qcfs8 none'
        >>> config_label({"config": {"regularizer": "synops", "strength": 5e-7, "activation": "qcfs", "levels": 8,
        ...                          "resolved": {"train": {"distill": "runs/t"}, "finetune": {"timesteps": 8}}}})
        'qcfs8 synops 5e-07 kd ft8'
    """
    cfg = record["config"]
    name = cfg["regularizer"] if cfg["regularizer"] == "none" else f"{cfg['regularizer']} {cfg['strength']:g}"
    return " ".join(part for part in (model_label(record), name, " ".join(levers(record))) if part)


def is_baseline(record: Mapping[str, Any]) -> bool:
    """Whether the record is an unregularized ReLU network (any width) trained plainly: no checkpoint
    start, distillation or SNN fine-tuning (:func:`levers`).

    Example:
        >>> is_baseline({"config": {"regularizer": "none"}}), is_baseline({"config": {"regularizer": "l1"}})
        (True, False)
        >>> is_baseline({"config": {"regularizer": "none", "activation": "qcfs"}})
        False
    """
    return record["config"]["regularizer"] == "none" and axes(record)[0] == "relu" and not levers(record)


def is_full_baseline(record: Mapping[str, Any]) -> bool:
    """Whether the record is the unregularized full-width ReLU network: the reference of the target
    and of every iso-accuracy factor."""
    return is_baseline(record) and axes(record)[2] == 1.0


def collapsed_line(names: Sequence[str]) -> str:
    """The report's sentence naming the collapsed configurations it left out.

    Example:
        >>> collapsed_line(["l1 (strength 9) (relu2)"])
        '- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): l1 (strength 9) (relu2).'
    """
    return ("- Collapsed networks (a layer silent on every input; excluded from the verdict and the energy ratios): "
            + "; ".join(names) + ".")


def dnn_reference(record: Mapping[str, Any]) -> float:
    """The DNN's accuracy on the test images its SNN ran (``dnn.accuracy_snn_samples``), else
    ``dnn.accuracy`` (older records, or no SNN sample limit): what targets and DNN candidates are
    judged on, so that DNN and SNN are compared on the same images.

    Example:
        >>> dnn_reference({"dnn": {"accuracy": 0.9, "accuracy_snn_samples": 0.88}}), dnn_reference({"dnn": {"accuracy": 0.9}})
        (0.88, 0.9)
    """
    dnn = record["dnn"]
    same = dnn.get("accuracy_snn_samples")
    return same if same is not None else dnn["accuracy"]


def reference_accuracy(records: Sequence[Mapping[str, Any]]) -> tuple[float, str]:
    """The accuracy every configuration is judged against: the unregularized full-width ReLU DNN's
    (mean over its runs; any unregularized one's when there is none), or the best DNN's when no
    unregularized run exists; each on the test images its SNN ran
    (:func:`dnn_reference`), and the description says how many when the records tell it.

    Example:
        >>> reference_accuracy([{"config": {"regularizer": "l1"}, "dnn": {"accuracy": 0.9}}])
        (0.9, 'best DNN')
        >>> reference_accuracy([{"config": {"regularizer": "none"},
        ...                      "dnn": {"accuracy": 0.9, "accuracy_snn_samples": 0.8, "snn_samples": 10}}])
        (0.8, 'unregularized DNN on the 10 test images the SNN ran')
    """
    finished = ok_records(records)
    full = [r for r in finished if is_full_baseline(r)]
    plain = full or [r for r in finished if r["config"]["regularizer"] == "none"]
    if plain:
        values = [dnn_reference(r) for r in plain]
        what = "unregularized full-width ReLU DNN" if full and len(full) < len(
            [r for r in finished if r["config"]["regularizer"] == "none"]) else "unregularized DNN"
        reference, pool = sum(values) / len(values), plain
    else:
        reference, what, pool = max((dnn_reference(r) for r in finished), default=math.nan), "best DNN", finished
    counts = {r["dnn"].get("snn_samples") for r in pool if r["dnn"].get("accuracy_snn_samples") is not None}
    if pool and len(counts) == 1 and None not in counts and all(
            r["dnn"].get("accuracy_snn_samples") is not None for r in pool):
        what += f" on the {counts.pop()} test images the SNN ran"
    return reference, what
