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


def reference_accuracy(records: Sequence[Mapping[str, Any]]) -> tuple[float, str]:
    """The accuracy every configuration is judged against: the unregularized DNN's (mean over its
    runs), or the best DNN's when no unregularized run exists.

    Example:
        >>> reference_accuracy([{"config": {"regularizer": "l1"}, "dnn": {"accuracy": 0.9}}])
        (0.9, 'best DNN')
    """
    plain = [r["dnn"]["accuracy"] for r in ok_records(records) if r["config"]["regularizer"] == "none"]
    if plain:
        return sum(plain) / len(plain), "unregularized DNN"
    best = max((r["dnn"]["accuracy"] for r in ok_records(records)), default=math.nan)
    return best, "best DNN"
