"""The CLI's file-to-file steps: a trained run folder -> a converted SNN folder -> SNN results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from snnergy.checkpoints import read_json
from snnergy.config import ConvertConfig, ExperimentConfig, config_from_dict, config_to_dict
from snnergy.conversion import convert as convert_model
from snnergy.data import DatasetSplits, calibration_set, load_dataset
from snnergy.errors import CheckpointError, ConfigError
from snnergy.interop import export_nir, load_model_file
from snnergy.records import SNNRecord
from snnergy.simulation import SpikingNetwork, load_snn, quantize_weights, save_snn
from snnergy.train_state import config_difference
from snnergy.training import Checkpoint, load_checkpoint, resolve_device

from snnergy.experiments.pipeline import CHECKPOINT_DIR, result_record
from snnergy.experiments.measure import measure
from snnergy.experiments.snn import simulate
from snnergy.experiments.store import CONFIG_JSON, RESULTS_JSON, check_out_folder, write_config, write_results
from snnergy.experiments.variants import snn_extras


def convert(
    model,
    calibration=None,
    config: ConvertConfig | None = None,
    *,
    percentile: float | None = None,
    channelwise: bool | None = None,
    reset: str | None = None,
    v0: float | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> SpikingNetwork:
    """Converts a trained DNN to a rate-coded SNN (a copy; the DNN is untouched).

    Args:
        model (torch.nn.Module): Any model the network plan describes (:func:`snnergy.structure.trace`).
        calibration (Tensor | DataLoader | None): Inputs ``(N, C, H, W)`` or a DataLoader, for data-based normalization
            (optional when every activation has a trained threshold: pass ``input_shape``).
        config: Conversion settings; the keyword arguments override its fields.
        percentile: Percentile of non-zero activations used as each layer's scale (100 = max).
        channelwise: One scale per output channel.
        reset: ``"subtract"`` or ``"zero"``.
        v0: Initial membrane potential as a fraction of the threshold (``None``: 1/2 for trained
            thresholds, 0 otherwise).
        input_shape: Per-sample input shape, when there is no calibration data.
    """
    config = config or ConvertConfig()
    fields = {"percentile": percentile, "channelwise": channelwise, "reset": reset, "v0": v0}
    changes = {k: v for k, v in fields.items() if v is not None}
    return convert_model(model, calibration, replace(config, **changes), input_shape=input_shape)


def load_run(folder: str | Path) -> Checkpoint:
    """Loads the checkpoint of a ``snnergy train`` folder (the folder or its ``checkpoint/``)."""
    folder = Path(folder)
    if (folder / CHECKPOINT_DIR).is_dir():
        folder = folder / CHECKPOINT_DIR
    return load_checkpoint(folder)


def convert_checkpoint(checkpoint: Checkpoint, config: ExperimentConfig, out: str | Path) -> SpikingNetwork:
    """Converts a loaded checkpoint with calibration data from its dataset's training split and
    writes the SNN (``snn.safetensors``, ``snn.json``) and the resolved config into ``out``.

    Raises:
        ConfigError: ``out`` is a file or holds another run's results
            (:func:`~snnergy.experiments.store.check_out_folder`), checked before any work.
    """
    check_out_folder(out, config, "convert")
    splits = load_dataset(config.data, seed=config.seed)
    if tuple(splits.input_shape) != tuple(checkpoint.input_shape):
        raise ConfigError(
            f"dataset '{config.data.dataset}' has inputs {splits.input_shape}, "
            f"the checkpoint's model expects {tuple(checkpoint.input_shape)}"
        )
    calibration = calibration_set(splits, config.data.calibration_size, seed=config.seed)
    snn = convert_model(checkpoint.model, calibration, config.convert)
    save_snn(snn, Path(out))
    write_config(out, config)
    return snn


def convert_model_file(spec: str, weights: str | Path, config: ExperimentConfig, out: str | Path) -> SpikingNetwork:
    """Converts a user's model (``FILE.py:FACTORY`` and safetensors weights) and writes the SNN.

    Calibration data come from the training split of ``config.data``'s dataset, as for
    :func:`convert_checkpoint`; the factory gets ``input_shape=`` and ``num_classes=`` when it
    takes such parameters. The written config names the model by ``spec``.

    Raises:
        ConfigError: A bad file or factory (see :func:`snnergy.interop.load_model_file`), or a
            model whose outputs do not match the dataset's classes.
        CheckpointError: Weights that do not match the model's ``state_dict``.
    """
    check_out_folder(out, replace(config, model=replace(config.model, name=str(spec))), "convert")
    splits = load_dataset(config.data, seed=config.seed)
    model = load_model_file(spec, weights, input_shape=splits.input_shape, num_classes=splits.num_classes)
    calibration = calibration_set(splits, config.data.calibration_size, seed=config.seed)
    snn = convert_model(model, calibration, config.convert)
    outputs = snn.shapes()[snn.stages[-1].name][1]
    if outputs != (splits.num_classes,):
        raise ConfigError(f"{spec} gives outputs of shape {outputs}; dataset '{config.data.dataset}' "
                          f"has {splits.num_classes} classes")
    config = replace(config, model=replace(config.model, name=str(spec)))
    save_snn(snn, Path(out))
    write_config(out, config)
    return snn


def export_run_nir(folder: str | Path, out: str | Path, *, reader: str | None = None,
                   pooling: str | None = None) -> SpikingNetwork:
    """Writes the SNN of a ``snnergy convert`` folder to the NIR file ``out`` (``reader`` and
    ``pooling``: see :func:`snnergy.interop.export_nir`)."""
    folder = Path(folder)
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a folder: give the .nir file to write")
    if not (folder / "snn.json").is_file():
        raise CheckpointError(f"{folder}: no converted network here (snn.json); run `snnergy convert` first")
    snn = load_snn(folder)
    export_nir(snn, out, reader=reader, pooling=pooling)
    return snn


def load_converted(folder: str | Path) -> tuple[SpikingNetwork, ExperimentConfig]:
    """Loads an SNN folder written by :func:`convert_checkpoint` with its config."""
    folder = Path(folder)
    snn = load_snn(folder)
    try:
        config = config_from_dict(ExperimentConfig, read_json(folder / CONFIG_JSON))
    except ConfigError as err:
        raise CheckpointError(f"{folder / CONFIG_JSON}: {err}") from None
    return snn, config


def quantize_converted(folder: str | Path, bits: int, per_channel: bool, out: str | Path) -> SpikingNetwork:
    """Quantizes the weights of a ``snnergy convert`` folder's SNN (:func:`~snnergy.simulation.quantize_weights`)
    and writes it, with its config (``convert.weight_bits`` / ``weight_per_channel`` set), to ``out``.

    Raises:
        ConfigError: Bad ``bits`` (an integer in [2, 16]), an already quantized network, or an
            ``out`` holding another run (:func:`~snnergy.experiments.store.check_out_folder`).
        CheckpointError: ``folder`` holds no converted network.
    """
    if not (Path(folder) / "snn.json").is_file():
        raise CheckpointError(f"{folder}: no converted network here (snn.json); run `snnergy convert` first")
    snn, config = load_converted(folder)
    quantized = quantize_weights(snn, bits, per_channel)
    config = replace(config, convert=replace(config.convert, weight_bits=quantized.weight_bits,
                                             weight_per_channel=per_channel))
    check_out_folder(out, config, "convert")
    save_snn(quantized, Path(out))
    write_config(out, config)
    return quantized


def simulate_test_split(snn: SpikingNetwork, config: ExperimentConfig, splits: DatasetSplits, device: torch.device,
                        progress: bool = False) -> SNNRecord:
    """The SNN record of ``snn`` on the test split, with the config's simulate slice, profiles and seed."""
    return simulate(snn, (splits.test_x, splits.test_y), config.simulate, profiles=config.profiles,
                    seed=config.seed, device=device, progress=progress)


def simulate_converted(snn: SpikingNetwork, config: ExperimentConfig, out: str | Path, progress: bool = False,
                       dnn_run: str | Path | None = None) -> SNNRecord:
    """Simulates on the test split of the config's dataset and writes ``results.json``/``.csv``: the
    record's ``snn`` part with ``snn.cores`` and, when ``simulate.quantize`` lists widths,
    ``snn.quantized`` (:func:`~snnergy.experiments.variants.snn_extras`).

    Args:
        snn: The converted network.
        config: Its config (the SNN folder's, with the caller's overrides).
        out: Folder for ``results.json``, ``results.csv`` and ``config.json``.
        progress: Show progress bars.
        dnn_run: A ``snnergy train`` folder of the DNN ``snn`` was converted from: measured on the
            same test split (checked by :func:`same_network_run`), it makes the record's ``dnn`` part, so that
            ``snnergy report OUT`` compares the DNN and the SNN.

    Raises:
        ConfigError: ``out`` is a file or holds the results of another network
            (:func:`~snnergy.experiments.store.check_out_folder`), or ``dnn_run`` trained another
            network; both checked before simulating.
    """
    check_out_folder(out, config, "simulate")
    splits = load_dataset(config.data, seed=config.seed)
    device = resolve_device(config.device)
    checkpoint = same_network_run(dnn_run, config) if dnn_run is not None else None
    dnn = None
    if checkpoint is not None:
        dnn = measure(checkpoint.model, (splits.test_x, splits.test_y), profiles=config.profiles, device=device,
                      snn_samples=config.simulate.max_samples)
    record = simulate_test_split(snn, config, splits, device, progress)
    result = result_record(config, dnn, snn=record)
    result["snn"].update(snn_extras(snn, config, (splits.test_x, splits.test_y), device, progress))
    write_config(out, config)
    write_results(out, [result])
    return record


NETWORK_KEYS = ("model", "train", "seed")
"""The config slices that decide which trained network a run folder holds (with ``data.dataset``)."""


def same_network_run(folder: str | Path, config: ExperimentConfig) -> Checkpoint:
    """The checkpoint of the ``snnergy train`` folder ``folder``, checked to hold the network
    ``config`` describes (same dataset, :data:`NETWORK_KEYS`).

    Raises:
        CheckpointError: ``folder`` holds no training run.
        ConfigError: It trained another network (the message names the first differing key).
    """
    checkpoint = load_run(folder)
    trained, wanted = config_to_dict(checkpoint.config), config_to_dict(config)
    identity = [{"data.dataset": c["data"]["dataset"], **{k: c[k] for k in NETWORK_KEYS}} for c in (trained, wanted)]
    difference = config_difference(*identity)
    if difference is not None:
        raise ConfigError(f"--dnn {folder}: trained another network than this SNN's ({difference.replace('stored', 'there')}); "
                          "give the snnergy train folder the SNN was converted from")
    return checkpoint


__all__ = ["RESULTS_JSON", "convert", "simulate_test_split", "convert_checkpoint", "convert_model_file", "export_run_nir", "load_converted", "quantize_converted",
           "load_run", "same_network_run", "simulate_converted"]
