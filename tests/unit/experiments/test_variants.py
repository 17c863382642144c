"""The SNN record's extras: core mappings of a converted net derived by hand on the registered chips,
and quantized variants simulated by the same code path as the float32 SNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig, ExperimentConfig, SimulateConfig
from snnergy.conversion import convert
from snnergy.errors import ConfigError
from snnergy.experiments.snn import simulate
from snnergy.experiments.variants import QUANTIZED_KEYS, core_mappings, quantized_records, snn_extras
from snnergy.simulation import quantize_weights


def _snn(hidden: int, outputs: int = 10):
    # tests/unit/test_hardware.py's net (64 -> 300 -> 10) with `hidden` units, converted with
    # non-negative calibration inputs (the percentile scales do not change the geometry).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, outputs))
    return convert(model, torch.rand(32, 64), ConvertConfig())


def test_cores_of_the_hardware_test_net_by_hand() -> None:
    # 64 -> 300 -> 10 on the registered chips (docs/design.md's table):
    # loihi: fc1 300 <= 1,024 neurons, fan-in 64 <= 4,096, 300 x 64 = 19,200 synapses x 8 bits
    #   = 153,600 <= 131,072 x 8 = 1,048,576 bits: 1 core; readout 10 neurons reading 300: 1 core.
    # spinnaker2 (memory only): the same 153,600 bits: 1 + 1. loihi2 (neurons only), speck (none): 1 + 1.
    cores = core_mappings(_snn(300))
    assert set(cores) == {"loihi", "loihi2", "spinnaker2", "speck"}
    for chip, per_chip in (("loihi", 128), ("loihi2", 128), ("spinnaker2", 152), ("speck", 9)):
        entry = cores[chip]
        assert (entry["total_cores"], entry["fits"], entry["chips"], entry["cores_per_chip"]) == (2, True, 1, per_chip)
        assert [(layer["cores"], layer["binding"]) for layer in entry["layers"]] == [(1, "none"), (1, "none")]
        assert entry["binding"] == "none"
    assert [layer["synapses"] for layer in cores["loihi"]["layers"]] == [19_200, 3_000]


def test_cores_where_a_limit_binds_by_hand() -> None:
    # 64 -> 3,000 -> 10.
    # loihi fc1: neurons ceil(3,000 / 1,024) = 3 cores; memory: a core holds 1,048,576 / (64 x 8)
    #   = 2,048 neurons' synapses -> ceil(3,000 / 2,048) = 2; fan-in 64: 1 -> 3 cores, neurons bind.
    #   readout: fan-in 3,000 <= 4,096, 10 x 3,000 x 8 = 240,000 bits: 1 core. Total 4 of 128.
    # spinnaker2 fc1: memory alone, 2 cores (synaptic memory binds); readout 1: total 3 of 152.
    cores = core_mappings(_snn(3000), ["loihi", "spinnaker2"])
    loihi, spinnaker = cores["loihi"], cores["spinnaker2"]
    assert [(m["cores"], m["binding"]) for m in loihi["layers"]] == [(3, "neurons"), (1, "none")]
    assert (loihi["total_cores"], loihi["fits"], loihi["binding"]) == (4, True, "neurons")
    assert loihi["binding_layer"] == loihi["layers"][0]["name"]
    assert [(m["cores"], m["binding"]) for m in spinnaker["layers"]] == [(2, "synaptic memory"), (1, "none")]
    assert (spinnaker["total_cores"], spinnaker["binding"]) == (3, "synaptic memory")


def _on_grid_snn():
    # Every weight in {-a, 0, a}: a symmetric grid of any width holds them exactly
    # (scale = a / q_max, w / scale = +-q_max or 0), so quantizing changes nothing.
    snn = _snn(12, outputs=3)
    with torch.no_grad():
        for stage in snn.stages:
            w = stage.layer.weight
            w.copy_(torch.sign(w) * (torch.rand_like(w) > 0.3) * 0.25)
    return snn


def test_quantized_variant_of_an_on_grid_net_equals_the_float_record() -> None:
    snn = _on_grid_snn()
    data = (torch.rand(40, 64), torch.randint(0, 3, (40,)))
    config = ExperimentConfig(simulate=SimulateConfig(timesteps=(2, 8), quantize=(8, 4)), profiles=("cmos45-fp32",))
    fp32 = simulate(snn, data, config.simulate, profiles=config.profiles).to_dict()
    variants = quantized_records(snn, config, data)
    assert list(variants) == ["8", "4"]
    for bits, record in variants.items():
        assert set(record) == {"bits", "per_channel", *QUANTIZED_KEYS}
        assert (record["bits"], record["per_channel"]) == (int(bits), False)
        for key in ("timesteps", "accuracy", "synops", "input_macs", "neuron_updates", "energy_j", "curve"):
            assert record[key] == fp32[key], key


def test_quantized_variant_differs_when_weights_are_off_the_grid() -> None:
    # 2-bit weights (levels -1, 0, 1 times max|w|) of a random net: the simulation really ran on the
    # quantized copy (the same call on quantize_weights' network gives the same record).
    snn = _snn(12, outputs=3)
    data = (torch.rand(40, 64), torch.randint(0, 3, (40,)))
    config = ExperimentConfig(simulate=SimulateConfig(timesteps=(8,), quantize=(2,)), profiles=("cmos45-fp32",))
    variant = quantized_records(snn, config, data)["2"]
    direct = simulate(quantize_weights(snn, 2), data, config.simulate, profiles=config.profiles).to_dict()
    fp32 = simulate(snn, data, config.simulate, profiles=config.profiles).to_dict()
    assert variant["synops"] == direct["synops"] and variant["accuracy"] == direct["accuracy"]
    assert variant["synops"] != fp32["synops"]


def test_extras_default_has_cores_and_no_quantized() -> None:
    snn = _snn(12, outputs=3)
    extras = snn_extras(snn, ExperimentConfig(), (torch.rand(4, 64), torch.zeros(4, dtype=torch.long)))
    assert set(extras) == {"cores"}


def test_an_already_quantized_net_is_refused() -> None:
    snn = quantize_weights(_snn(12, outputs=3), 8)
    config = ExperimentConfig(simulate=SimulateConfig(timesteps=(2,), quantize=(4,)))
    with pytest.raises(ConfigError, match="already quantized to 8 bits"):
        quantized_records(snn, config, (torch.rand(4, 64), torch.zeros(4, dtype=torch.long)))
