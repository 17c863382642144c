"""Core mapping: cores per stage derived by hand on made-up chips, conv synapse counts by hand,
the binding limit, and the chip registry's errors."""

from __future__ import annotations

import pytest
from torch import nn

from snnergy.errors import ConfigError
from snnergy.hardware import CHIPS, ChipLimits, chip_limits, map_plan
from snnergy.structure import trace


def _mlp_plan():
    return trace(nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10)), (64,))


def _toy(axons: int = 512, cores: int = 8) -> ChipLimits:
    # 128 neurons, `axons` input axons and 64 x 64 synapses of 8 bits (32,768 bits) per core.
    return ChipLimits("toy", 128, axons, 64 * 64 * 8, 8, cores, False, "made up for the test")


def test_mlp_core_count_by_hand() -> None:
    # fc1 (64 -> 300): every neuron reads the 64 inputs and holds 64 synapses.
    #   neurons: ceil(300 / 128) = 3 cores; fan-in 64 <= 512: 1 core;
    #   memory: 4,096 synapses per core / 64 = 64 neurons per core -> ceil(300 / 64) = 5 cores.
    #   -> 5 cores, synaptic memory binds; the fullest core holds 64 neurons, 64 x 64 synapses.
    # fc2 (300 -> 10, the readout): fan-in 300 <= 512: 1; memory: 4,096 / 300 = 13 neurons per
    #   core >= 10: 1; neurons: 1 -> 1 core: no limit binds ("none").
    # Total 6 <= 8 cores: fits one chip.
    mapping = map_plan(_mlp_plan(), _toy())
    fc1, fc2 = mapping.layers
    assert (fc1.neurons, fc1.connections, fc1.synapses) == (300, 19_200, 19_200)
    assert fc1.cores_by_limit == {"neurons": 3, "fan-in": 1, "synaptic memory": 5}
    assert (fc1.cores, fc1.binding, fc1.neurons_per_core, fc1.fan_in) == (5, "synaptic memory", 64, 64)
    assert (fc2.neurons, fc2.connections, fc2.cores, fc2.binding, fc2.fan_in) == (10, 3_000, 1, "none", 300)
    assert (mapping.total_cores, mapping.fits, mapping.chips, mapping.binding_layer) == (6, True, 1, "0")


def test_too_few_cores_needs_more_chips() -> None:
    # Same 6 cores on a 4-core chip: ceil(6 / 4) = 2 chips.
    mapping = map_plan(_mlp_plan(), _toy(cores=4))
    assert (mapping.total_cores, mapping.fits, mapping.chips) == (6, False, 2)


def test_fan_in_above_the_axon_limit_cannot_be_mapped() -> None:
    # With 256 axons, one readout neuron already reads 300 hidden neurons: no block fits.
    mapping = map_plan(_mlp_plan(), _toy(axons=256))
    readout = mapping.layers[1]
    assert readout.cores is None and readout.binding == "fan-in" and readout.cores_by_limit["fan-in"] is None
    assert (mapping.total_cores, mapping.fits, mapping.chips, mapping.binding_layer) == (None, False, None, "2")


def _conv_plan():
    return trace(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5)), (2, 4, 4))


def test_conv_synapses_by_hand() -> None:
    # Conv2d(2 -> 3, 3x3, padding 1) on 2x4x4: 3x4x4 = 48 neurons. Kernel rows inside the input
    # for output rows 0..3: 2, 3, 3, 2 (sum 10); columns alike (10). Connections = 3 out channels
    # x 2 in channels x 10 x 10 = 600. Shared weights store the kernel once: 3 x 2 x 3 x 3 = 54.
    # The readout Linear(48 -> 5): 5 x 48 = 240 connections.
    unshared = map_plan(_conv_plan(), ChipLimits("u", None, None, None, 8, 4, False, "made up"))
    shared = map_plan(_conv_plan(), ChipLimits("s", None, None, None, 8, 4, True, "made up"))
    conv, readout = unshared.layers
    assert (conv.neurons, conv.connections, conv.synapses, conv.fan_in) == (48, 600, 600, 32)
    assert (shared.layers[0].connections, shared.layers[0].synapses) == (600, 54)
    assert (readout.connections, readout.synapses, readout.fan_in) == (240, 240, 48)
    # No limit checked: one core per stage, no limit binds.
    assert [m.cores for m in unshared.layers] == [1, 1] and conv.binding == "none"


def test_conv_rows_per_core_and_their_fan_in() -> None:
    # 12 neurons per core = one output row (3 channels x 4 columns): 4 cores. An interior row reads
    # 3 input rows x 4 columns x 2 channels = 24 neurons (an edge row 16): worst core 24.
    mapping = map_plan(_conv_plan(), ChipLimits("rows", 12, 24, None, 8, 8, False, "made up"))
    conv = mapping.layers[0]
    assert (conv.cores, conv.neurons_per_core, conv.fan_in, conv.binding) == (4, 12, 24, "neurons")
    # The fan-in limit alone allows 2-row blocks: rows 0-1 read input rows 0-2, rows 2-3 read
    # rows 1-3, each 3 x 4 x 2 = 24 <= 24 -> 2 cores; the neuron limit (4 cores) binds.
    assert conv.cores_by_limit == {"neurons": 4, "fan-in": 2}
    # With 20 axons an interior row (24) is too wide: blocks of channels of one row. A channel
    # still reads all 2 input channels x 3 rows x 4 columns = 24 > 20, so columns of one channel of
    # one row: 3 columns (0-2 read input columns 0-3) read 2 x 3 x 4 = 24 > 20; pairs of columns
    # (0-1 read input columns 0-2, 2-3 read 1-3) read 2 x 3 x 3 = 18 <= 20.
    # -> 2 neurons per core: 4 rows x 3 channels x 2 column pairs = 24 cores, fan-in binds.
    tight = map_plan(_conv_plan(), ChipLimits("tight", 12, 20, None, 8, 64, False, "made up")).layers[0]
    assert (tight.cores, tight.neurons_per_core, tight.fan_in, tight.binding) == (24, 2, 18, "fan-in")
    # With 10 axons even one interior neuron (2 x 3 x 3 = 18) is too many: unmappable, fan-in binds.
    none = map_plan(_conv_plan(), ChipLimits("none", 12, 10, None, 8, 64, False, "made up")).layers[0]
    assert none.cores is None and none.binding == "fan-in" and none.cores_by_limit["fan-in"] is None


def test_pooling_is_traced_back_to_the_source_neurons() -> None:
    # Conv2d(1 -> 2, 3x3, padding 1) on 1x4x4, ReLU, AvgPool2d(2), Linear(8 -> 3): the readout reads
    # the 8 pooled values, i.e. all 2 x 4 x 4 = 32 spiking neurons: 3 x 32 = 96 connections.
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    readout = map_plan(trace(net, (1, 4, 4)), "loihi").layers[1]
    assert (readout.fan_in, readout.connections, readout.cores) == (32, 96, 1)


def test_every_chip_has_a_source_and_unknown_names_list_the_chips() -> None:
    assert set(CHIPS.names()) >= {"loihi", "loihi2", "spinnaker2", "speck"}
    for name in CHIPS.names():
        assert chip_limits(name).source.strip() and chip_limits(name).cores_per_chip >= 1
    with pytest.raises(ConfigError, match="no chip limits for profile 'cmos45-fp32'.*loihi, loihi2"):
        chip_limits("cmos45-fp32")
    with pytest.raises(ConfigError, match="neurons_per_core=0"):
        ChipLimits("bad", 0, None, None, 8, 1, False, "made up")
    with pytest.raises(ConfigError, match="needs weight_bits"):
        ChipLimits("bad", 1, None, 8, None, 1, False, "made up")
