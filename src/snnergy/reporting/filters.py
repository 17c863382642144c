"""Which records count, and what to call them: the first step of every report.

Every other reporting module builds on these; this one imports only :mod:`snnergy.reporting.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from snnergy.reporting.tables import collapsed_layers


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


def config_name(record: Mapping[str, Any]) -> str:
    """A record's configuration in a sentence.

    Example:
        >>> config_name({"config": {"regularizer": "l1", "strength": 0.1}}), config_name({"config": {"regularizer": "none"}})
        ('l1 (strength 0.1)', 'none')
    """
    cfg = record["config"]
    return cfg["regularizer"] if cfg["regularizer"] == "none" else f"{cfg['regularizer']} (strength {cfg['strength']:g})"


def config_label(record: Mapping[str, Any]) -> str:
    """A record's configuration as a short label (plots, tables).

    Example:
        >>> config_label({"config": {"regularizer": "l1", "strength": 0.1}})
        'l1 0.1'
    """
    cfg = record["config"]
    return cfg["regularizer"] if cfg["regularizer"] == "none" else f"{cfg['regularizer']} {cfg['strength']:g}"


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
    """The accuracy every configuration is judged against: the unregularized DNN's (mean over its
    runs), or the best DNN's when no unregularized run exists; each on the test images its SNN ran
    (:func:`dnn_reference`), and the description says how many when the records tell it.

    Example:
        >>> reference_accuracy([{"config": {"regularizer": "l1"}, "dnn": {"accuracy": 0.9}}])
        (0.9, 'best DNN')
        >>> reference_accuracy([{"config": {"regularizer": "none"},
        ...                      "dnn": {"accuracy": 0.9, "accuracy_snn_samples": 0.8, "snn_samples": 10}}])
        (0.8, 'unregularized DNN on the 10 test images the SNN ran')
    """
    finished = ok_records(records)
    plain = [r for r in finished if r["config"]["regularizer"] == "none"]
    if plain:
        values = [dnn_reference(r) for r in plain]
        reference, what, pool = sum(values) / len(values), "unregularized DNN", plain
    else:
        reference, what, pool = max((dnn_reference(r) for r in finished), default=math.nan), "best DNN", finished
    counts = {r["dnn"].get("snn_samples") for r in pool if r["dnn"].get("accuracy_snn_samples") is not None}
    if pool and len(counts) == 1 and None not in counts and all(
            r["dnn"].get("accuracy_snn_samples") is not None for r in pool):
        what += f" on the {counts.pop()} test images the SNN ran"
    return reference, what
