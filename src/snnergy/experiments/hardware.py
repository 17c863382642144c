"""``snnergy hardware``: the core mapping of a run folder's spiking network on one chip."""

from __future__ import annotations

import json
from pathlib import Path

from snnergy.experiments.pipeline import CHECKPOINT_DIR
from snnergy.training import META_FILE
from snnergy.errors import CheckpointError
from snnergy.experiments.steps import load_converted, load_run
from snnergy.hardware import NetworkMapping, chip_limits, map_plan
from snnergy.structure import NetworkPlan, trace


def run_plan(folder: str | Path) -> NetworkPlan:
    """The network plan of a converted SNN folder (``SpikingNetwork.plan()``) or of a training run.

    A training run is not converted: conversion rescales weights and thresholds but keeps every
    stage, branch, pooling and layer geometry, which is all the mapping reads, so the plan is traced
    from the checkpoint's model (BatchNorm folded, as conversion does) without calibration data.

    Raises:
        CheckpointError: ``folder`` is missing or holds neither kind of run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; give a `snnergy train` (or compare) run folder "
                              "or a `snnergy convert` SNN folder")
    if (folder / "snn.json").is_file():
        snn, _ = load_converted(folder)
        return snn.plan()
    if (folder / CHECKPOINT_DIR).is_dir() or (folder / META_FILE).is_file():
        checkpoint = load_run(folder)
        return trace(checkpoint.model, tuple(checkpoint.input_shape))
    raise CheckpointError(f"{folder}: neither a converted SNN (snn.json, from `snnergy convert`) nor a "
                          f"training run ({CHECKPOINT_DIR}/, from `snnergy train` or compare's runs/<id>)")


def map_run(folder: str | Path, chip: str, out: str | Path | None = None) -> NetworkMapping:
    """Maps a run folder's network on ``chip`` and writes the mapping as JSON to ``out`` if given.

    Raises:
        ConfigError: ``chip`` has no registered limits (the message lists the chips).
        CheckpointError: ``folder`` holds no run.
    """
    limits = chip_limits(chip)
    mapping = map_plan(run_plan(folder), limits)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"run": str(folder), **mapping.to_dict()}, indent=2) + "\n")
    return mapping
