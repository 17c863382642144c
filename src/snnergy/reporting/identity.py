"""The one identity of a configuration: the SHA-256 of its resolved config's canonical JSON.

A sweep's store, ``snnergy compare``'s resume and the reports' grouping over seeds all name a
configuration by :func:`config_hash`; a record carries its resolved config (``config.resolved``),
so :func:`record_hash` gives the same identity from ``results.json`` or the store alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from snnergy.config import config_to_dict

SEED_KEYS = ("seed", "device")
"""Top-level keys left out when runs that differ only by seed are one configuration."""


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace: equal configurations give equal text.

    Example:
        >>> canonical_json({"b": [1, 2], "a": 0.5})
        '{"a":0.5,"b":[1,2]}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def config_hash(config: Any, ignore: Sequence[str] = ()) -> str:
    """A configuration's identity: SHA-256 of the canonical JSON of its resolved config.

    Args:
        config: An :class:`~snnergy.config.ExperimentConfig`, or its resolved form as a mapping
            (``config_to_dict``; a record's ``config.resolved``): both give the same hash.
        ignore: Top-level keys to leave out (:data:`SEED_KEYS`: one configuration over seeds).

    Canonical: :func:`~snnergy.config.config_to_dict`, sorted keys, no whitespace; ints given
    for float fields are floats by then, so ``strength = 0`` and ``0.0`` are the same run.

    Example:
        >>> from snnergy.config import ExperimentConfig, config_to_dict
        >>> a = ExperimentConfig()
        >>> config_hash(a) == config_hash(config_to_dict(a)), len(config_hash(a))
        (True, 64)
        >>> b = dataclasses.replace(a, seed=1)
        >>> config_hash(a) == config_hash(b), config_hash(a, SEED_KEYS) == config_hash(b, SEED_KEYS)
        (False, True)
    """
    data = config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    kept = {key: value for key, value in data.items() if key not in ignore}
    return hashlib.sha256(canonical_json(kept).encode("utf-8")).hexdigest()


def resolved_config(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resolved config a record carries (``config.resolved``); the headline ``config`` part of
    a record written without one."""
    cfg = record["config"]
    resolved = cfg.get("resolved")
    return resolved if isinstance(resolved, Mapping) else cfg


def record_hash(record: Mapping[str, Any], ignore: Sequence[str] = ()) -> str:
    """:func:`config_hash` of the configuration a result record belongs to.

    Example:
        >>> from snnergy.config import ExperimentConfig, config_to_dict
        >>> record = {"config": {"regularizer": "none", "resolved": config_to_dict(ExperimentConfig())}}
        >>> record_hash(record) == config_hash(ExperimentConfig())
        True
    """
    return config_hash(resolved_config(record), ignore)
