"""Tests of snnergy.energy: profiles, the estimate, and the profile listing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snnergy.energy import (
    ENERGY_PROFILES,
    EnergyProfile,
    describe_profiles,
    energy_by_profile,
    estimate_energy,
)
from snnergy.errors import ConfigError
from snnergy.records import OpCounts

counts_values = st.floats(0.0, 1e12, allow_nan=False, allow_infinity=False)
op_counts = st.builds(
    OpCounts, macs=counts_values, synops=counts_values, neuron_updates=counts_values
)


@pytest.mark.parametrize("name", ENERGY_PROFILES.names())
def test_every_profile_zero_for_zero_counts_and_cited(name):
    profile = ENERGY_PROFILES.get(name)
    assert estimate_energy(OpCounts(), name) == 0.0
    assert profile.name == name and profile.source.strip()
    assert isinstance(profile.spiking, bool)


def test_registration_order_and_default_first():
    assert ENERGY_PROFILES.names() == [
        "cmos45-fp32", "cmos45-fp16", "cmos45-int8", "loihi", "spinnaker", "spinnaker2",
        "cpu-i7-4960x", "gpu-titan-black", "arm-cortex-a",
        "cmos45-fp32-sram", "cmos45-fp32-sram1m", "cmos45-fp32-dram",
    ]


def test_hand_values():
    # 1e6 MACs x 4.6 pJ (fp32 mult 3.7 + add 0.9) = 4.6e-6 J
    assert estimate_energy(OpCounts(macs=1e6), "cmos45-fp32") == pytest.approx(4.6e-6, rel=1e-12)
    # 1e6 synops x 0.9 pJ (fp32 add) = 0.9e-6 J
    assert estimate_energy(OpCounts(synops=1e6), "cmos45-fp32") == pytest.approx(0.9e-6, rel=1e-12)
    # loihi: 1e6 synops x 27.1 pJ + 1e3 updates x 81 pJ = 27.1e-6 + 81e-9 J
    loihi = estimate_energy(OpCounts(synops=1e6, neuron_updates=1e3), "loihi")
    assert loihi == pytest.approx(27.1e-6 + 81e-9, rel=1e-12)
    # int8: MAC 0.2 + 0.1 = 0.3 pJ, AC 0.1 pJ: 10 MACs + 10 ACs = 4 pJ
    assert estimate_energy(OpCounts(macs=10, synops=10), "cmos45-int8") == pytest.approx(4e-12)
    # spinnaker: one synop 13.3 nJ, one update 26 nJ
    one_each = OpCounts(synops=1, neuron_updates=1)
    assert estimate_energy(one_each, "spinnaker") == pytest.approx(39.3e-9)  # 13.3 + 26 nJ
    assert estimate_energy(one_each, "spinnaker2") == pytest.approx(2.64e-9)  # 0.45 + 2.19 nJ


def test_profile_object_accepted():
    toy = EnergyProfile("toy", 2.0, 1.0, 0.5, spiking=False, source="test")
    # 3 x 2 + 4 x 1 + 2 x 0.5 = 11 pJ
    assert estimate_energy(OpCounts(3, 4, 2), toy) == pytest.approx(11e-12)


def test_chips_without_mac_unit_charge_a_mac_as_a_synop():
    for name in ("loihi", "spinnaker", "spinnaker2"):
        profile = ENERGY_PROFILES.get(name)
        assert profile.spiking and profile.e_mac_pj == profile.e_ac_pj and profile.notes


@pytest.mark.parametrize(
    "name, nj", [("cpu-i7-4960x", 8.6), ("gpu-titan-black", 0.3), ("arm-cortex-a", 0.9)]
)
def test_conventional_profiles_one_energy_per_op(name, nj):
    profile = ENERGY_PROFILES.get(name)
    assert not profile.spiking
    assert profile.e_mac_pj == profile.e_ac_pj == profile.e_neuron_pj == pytest.approx(nj * 1e3)


@settings(max_examples=50, deadline=None)
@given(a=op_counts, b=op_counts, scale=st.floats(0.0, 1e3))
def test_energy_is_linear_in_counts(a, b, scale):
    for name in ENERGY_PROFILES.names():
        total = estimate_energy(a + b, name)
        parts = estimate_energy(a, name) + estimate_energy(b, name)
        assert total == pytest.approx(parts, rel=1e-9, abs=1e-30)
        scaled = OpCounts(a.macs * scale, a.synops * scale, a.neuron_updates * scale)
        expected = scale * estimate_energy(a, name)
        assert estimate_energy(scaled, name) == pytest.approx(expected, rel=1e-9, abs=1e-30)


def test_unknown_profile_lists_names():
    with pytest.raises(ConfigError, match="unknown energy profile 'tpu'.*cmos45-fp32.*loihi"):
        estimate_energy(OpCounts(macs=1), "tpu")
    with pytest.raises(ConfigError, match="'tpu'"):
        energy_by_profile(OpCounts(macs=1), ["loihi", "tpu"])


def test_bad_counts_and_profiles_refused():
    with pytest.raises(ConfigError, match="synops=-1"):
        estimate_energy(OpCounts(synops=-1.0), "loihi")
    with pytest.raises(ConfigError, match="macs=nan"):
        estimate_energy(OpCounts(macs=math.nan), "loihi")
    with pytest.raises(ConfigError, match="e_ac_pj"):
        EnergyProfile("neg", 1.0, -1.0, 0.0, False, "test")
    with pytest.raises(ConfigError, match="source"):
        EnergyProfile("nosource", 1.0, 1.0, 0.0, False, " ")


def test_energy_by_profile_and_describe():
    counts = OpCounts(macs=100, synops=1000, neuron_updates=10)
    by_profile = energy_by_profile(counts)
    assert list(by_profile) == ENERGY_PROFILES.names()
    assert by_profile["cmos45-fp32"] == pytest.approx((100 * 4.6 + 1000 * 0.9) * 1e-12)
    assert list(energy_by_profile(counts, ["loihi"])) == ["loihi"]
    rows = describe_profiles()
    assert [r["name"] for r in rows] == ENERGY_PROFILES.names()
    keys = {"name", "spiking", "e_mac_pj", "e_ac_pj", "e_neuron_pj", "source", "notes",
            "memory", "e_weight_read_pj", "e_state_pj"}
    assert set(rows[0]) == keys
    assert rows[0]["e_mac_pj"] == 4.6 and rows[0]["e_ac_pj"] == 0.9


def test_energy_breakdown_sums_to_the_estimate_by_hand():
    from snnergy.energy import BREAKDOWN_PARTS, energy_breakdown

    counts = OpCounts(macs=1000.0, synops=2000.0, neuron_updates=300.0)
    # Loihi: 1000 x 27.1 = 27,100 pJ; 2000 x 27.1 = 54,200 pJ; 300 x 81 = 24,300 pJ; total 105,600 pJ
    parts = energy_breakdown(counts, "loihi")
    assert tuple(parts) == BREAKDOWN_PARTS
    assert parts["input_layer"] == pytest.approx(27_100e-12)
    assert parts["spiking_layers"] == pytest.approx(54_200e-12)
    assert parts["neuron_updates"] == pytest.approx(24_300e-12)
    assert sum(parts.values()) == pytest.approx(105_600e-12) == pytest.approx(estimate_energy(counts, "loihi"))
    with pytest.raises(ConfigError):
        energy_breakdown(OpCounts(macs=-1.0), "loihi")


def test_memory_term_on_a_hand_counted_layer() -> None:
    from snnergy.energy import compute_memory_split, energy_breakdown

    # A Linear 4 -> 3 with 2 non-zero inputs: 2 x 3 = 6 effective MACs, 6 weight reads.
    # cmos45-fp32-sram: compute 6 x 4.6 = 27.6 pJ; memory 6 reads x 5 pJ (8 KB SRAM 64-bit read
    # 10 pJ / 2 words) = 30 pJ; total 57.6 pJ.
    dnn = OpCounts(macs=6.0)
    split = compute_memory_split(dnn, "cmos45-fp32-sram")
    assert split["compute"] == pytest.approx(27.6e-12) and split["memory"] == pytest.approx(30e-12)
    assert estimate_energy(dnn, "cmos45-fp32-sram") == pytest.approx(57.6e-12)
    # 1 MB SRAM: 6 x 50 pJ = 300 pJ; DRAM: 6 x 650 pJ = 3900 pJ (1.3 nJ per 64 bits / 2)
    assert compute_memory_split(dnn, "cmos45-fp32-sram1m")["memory"] == pytest.approx(300e-12)
    assert compute_memory_split(dnn, "cmos45-fp32-dram")["memory"] == pytest.approx(3900e-12)
    # An SNN: 6 input MACs, 12 SynOps, 20 neuron updates. Compute 6 x 4.6 + 12 x 0.9 = 38.4 pJ;
    # memory (6 + 12) weight reads x 5 pJ + 20 state read+writes x 10 pJ = 90 + 200 = 290 pJ.
    snn = OpCounts(macs=6.0, synops=12.0, neuron_updates=20.0)
    parts = energy_breakdown(snn, "cmos45-fp32-sram")
    assert list(parts) == ["input_layer", "spiking_layers", "neuron_updates", "memory"]
    assert parts["input_layer"] == pytest.approx(27.6e-12)
    assert parts["spiking_layers"] == pytest.approx(10.8e-12)
    assert parts["memory"] == pytest.approx(290e-12)
    assert sum(parts.values()) == pytest.approx(328.4e-12) == pytest.approx(estimate_energy(snn, "cmos45-fp32-sram"))


def test_compute_only_profiles_unchanged_by_the_memory_terms() -> None:
    from snnergy.energy import compute_memory_split, energy_breakdown

    counts = OpCounts(macs=100.0, synops=1000.0, neuron_updates=10.0)
    for name in ENERGY_PROFILES.names():
        profile = ENERGY_PROFILES.get(name)
        if profile.has_memory:
            # the memory profiles keep cmos45-fp32's compute costs: their compute term is its energy
            assert compute_memory_split(counts, name)["compute"] == estimate_energy(counts, "cmos45-fp32")
            continue
        assert profile.memory == "" and profile.e_weight_read_pj == profile.e_state_pj == 0.0
        assert compute_memory_split(counts, name)["memory"] == 0.0
        assert tuple(energy_breakdown(counts, name)) == ("input_layer", "spiking_layers", "neuron_updates")
    # cmos45-fp32 as before: 100 x 4.6 + 1000 x 0.9 = 1360 pJ
    assert estimate_energy(counts, "cmos45-fp32") == pytest.approx(1360e-12, rel=1e-12)


def test_memory_profile_fields_checked() -> None:
    with pytest.raises(ConfigError, match="need a named memory level"):
        EnergyProfile("bad", 1.0, 1.0, 0.0, False, "test", e_weight_read_pj=5.0)
    with pytest.raises(ConfigError, match="e_state_pj=-1"):
        EnergyProfile("bad", 1.0, 1.0, 0.0, False, "test", memory="sram", e_state_pj=-1.0)
    sram = ENERGY_PROFILES.get("cmos45-fp32-sram")
    assert sram.memory == "sram-8kb" and sram.e_weight_read_pj == 5.0 and "Horowitz" in sram.source
