"""Energy profiles (per-operation energies with their source) and the energy estimate.

An :class:`EnergyProfile` prices the three operation types of :class:`~snnergy.records.OpCounts`
in picojoules; :func:`estimate_energy` turns counts into joules per sample (docs/design.md):
``E = macs*E_mac + synops*E_ac + neuron_updates*E_neuron``. For a DNN, ``macs`` are its effective
MACs; for an SNN, ``synops`` plus the analog first layer's ``input_macs`` and the neuron updates.

The profile entries below are the only place where hardware constants are written; each carries
its citation in ``source`` and its assumptions in ``notes``. Add a profile with
``ENERGY_PROFILES.add(name, EnergyProfile(...))``.

Like their sources, the compute-only profiles count arithmetic only: memory access, data movement
and static power are not included. The *memory-aware* profiles (``cmos45-fp32-sram``,
``cmos45-fp32-sram1m``, ``cmos45-fp32-dram``) add, as a separate term, the cost of reading weights
(and the neuron state) at a named memory level (docs/design.md, "Memory-aware energy"):
``E_memory = (macs + synops)*E_read + neuron_updates*E_state``; :func:`estimate_energy` is then
compute + memory, and :func:`compute_memory_split` gives the two terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

from snnergy.errors import ConfigError
from snnergy.records import OpCounts
from snnergy.registry import Registry

__all__ = [
    "ENERGY_PROFILES",
    "EnergyProfile",
    "BREAKDOWN_PARTS",
    "compute_memory_split",
    "describe_profiles",
    "energy_breakdown",
    "energy_by_profile",
    "estimate_energy",
]

_JOULES_PER_PICOJOULE = 1e-12


@dataclass(frozen=True)
class EnergyProfile:
    """Energy of one operation of each type on one kind of hardware.

    Args:
        name: Registry key, e.g. ``"cmos45-fp32"``.
        e_mac_pj: One multiply-accumulate, in pJ.
        e_ac_pj: One accumulate triggered by a spike (synaptic operation), in pJ.
        e_neuron_pj: One neuron state update, in pJ.
        spiking: Whether the hardware is neuromorphic (event-driven).
        source: Citation for the numbers.
        notes: Assumptions, e.g. how a MAC is charged on a chip that has no MAC unit.
        memory: The memory level weights are read from (e.g. ``"sram-8kb"``); ``""`` (default):
            a compute-only profile, no memory term.
        e_weight_read_pj: One weight read at that level, in pJ, charged once per MAC and once
            per synaptic operation (0 unless ``memory`` is named).
        e_state_pj: One neuron-state read + write, in pJ, charged once per neuron update
            (0 where the architecture keeps no state in memory, or unless ``memory`` is named).

    Example:
        >>> EnergyProfile("toy", 2.0, 1.0, 0.0, False, "made up").e_mac_pj
        2.0
        >>> EnergyProfile("toy", 2.0, 1.0, 0.0, False, "made up", memory="sram", e_weight_read_pj=5.0).has_memory
        True
    """

    name: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: float
    spiking: bool
    source: str
    notes: str = ""
    memory: str = ""
    e_weight_read_pj: float = 0.0
    e_state_pj: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or not self.source.strip():
            raise ConfigError(f"energy profile '{self.name}' needs a name and a source")
        if not self.memory and (self.e_weight_read_pj or self.e_state_pj):
            raise ConfigError(
                f"energy profile '{self.name}': e_weight_read_pj / e_state_pj need a named memory level"
            )
        for field_name in ("e_mac_pj", "e_ac_pj", "e_neuron_pj", "e_weight_read_pj", "e_state_pj"):
            value = getattr(self, field_name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"energy profile '{self.name}': {field_name}={value} must be finite and >= 0"
                )

    @property
    def has_memory(self) -> bool:
        """Whether the profile charges a memory term (names a memory level)."""
        return bool(self.memory)


ENERGY_PROFILES: Registry[EnergyProfile] = Registry("energy profile")


def _register(profile: EnergyProfile) -> None:
    ENERGY_PROFILES.add(profile.name, profile)


_HOROWITZ = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
    "45 nm at 0.9 V (table as in stillwater-sc/esim energysim/database/energy.py)"
)
_NO_NEURON_COST = (
    "Neuron updates are charged 0: the common E_SNN = SynOps x E_AC formula "
    "(e.g. https://pmc.ncbi.nlm.nih.gov/articles/PMC10242054/table/T3) charges none."
)
_KERAS_SPIKING = "as tabulated in nengo/keras-spiking keras_spiking/model_energy.py"
_MAC_AS_SYNOP = (
    "The chip has no MAC unit: a MAC (the analog first layer's inputs) is charged as one "
    "synaptic operation, as KerasSpiking charges non-spiking inputs per connection at the "
    "synop energy."
)
_DEGNAN = (
    "Degnan et al. 2015 (https://ieeexplore.ieee.org/abstract/document/7054508), "
    + _KERAS_SPIKING
)
_CONVENTIONAL = (
    "Conventional hardware: one energy per operation, charged alike for a MAC, a synaptic "
    "accumulate and a neuron update, as KerasSpiking does."
)

_register(
    EnergyProfile(
        name="cmos45-fp32",
        e_mac_pj=4.6,  # fp32 mult 3.7 + fp32 add 0.9
        e_ac_pj=0.9,  # fp32 add
        e_neuron_pj=0.0,
        spiking=False,
        source=_HOROWITZ + "; E_MAC = 4.6 pJ, E_AC = 0.9 pJ as in PMC10242054 Table 3",
        notes="MAC = fp32 mult 3.7 + fp32 add 0.9 pJ; AC = fp32 add 0.9 pJ. " + _NO_NEURON_COST,
    )
)
_register(
    EnergyProfile(
        name="cmos45-fp16",
        e_mac_pj=1.5,  # fp16 mult 1.1 + fp16 add 0.4
        e_ac_pj=0.4,  # fp16 add
        e_neuron_pj=0.0,
        spiking=False,
        source=_HOROWITZ,
        notes="MAC = fp16 mult 1.1 + fp16 add 0.4 pJ; AC = fp16 add 0.4 pJ. " + _NO_NEURON_COST,
    )
)
_register(
    EnergyProfile(
        name="cmos45-int8",
        e_mac_pj=0.3,  # int8 mult 0.2 + int32 add 0.1
        e_ac_pj=0.1,  # int32 add
        e_neuron_pj=0.0,
        spiking=False,
        source=_HOROWITZ,
        notes=(
            "8-bit operands accumulated in 32 bit: MAC = int8 mult 0.2 + int32 add 0.1 pJ; "
            "AC = int32 add 0.1 pJ. " + _NO_NEURON_COST
        ),
    )
)
_register(
    EnergyProfile(
        name="loihi",
        e_mac_pj=27.1,  # charged as one synop (notes)
        e_ac_pj=27.1,  # 23.6 + 3.5
        e_neuron_pj=81.0,
        spiking=True,
        source=(
            "M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', "
            "IEEE Micro 38(1), 2018 (23.6 pJ minimum per synaptic spike op); 23.6 + 3.5 pJ per "
            "synop and 81 pJ per neuron update " + _KERAS_SPIKING
        ),
        notes=(
            _MAC_AS_SYNOP + " What the extra 3.5 pJ per synop and the 81 pJ update stand for "
            "(e.g. spike routing) is not confirmed in the primary source."
        ),
    )
)
_register(
    EnergyProfile(
        name="spinnaker",
        e_mac_pj=13.3e3,  # charged as one synop (notes)
        e_ac_pj=13.3e3,  # 13.3 nJ
        e_neuron_pj=26e3,  # 26 nJ
        spiking=True,
        source="S. Hoeppner et al. 2019 (https://arxiv.org/abs/1903.08941), " + _KERAS_SPIKING,
        notes=_MAC_AS_SYNOP,
    )
)
_register(
    EnergyProfile(
        name="spinnaker2",
        e_mac_pj=450.0,  # charged as one synop (notes)
        e_ac_pj=450.0,
        e_neuron_pj=2.19e3,  # 2.19 nJ
        spiking=True,
        source="S. Hoeppner et al. 2019 (https://arxiv.org/abs/1903.08941), " + _KERAS_SPIKING,
        notes=_MAC_AS_SYNOP,
    )
)
for _name, _pj, _what in (
    ("cpu-i7-4960x", 8.6e3, "Intel i7-4960X CPU"),  # 8.6 nJ
    ("gpu-titan-black", 0.3e3, "Nvidia GTX Titan Black GPU"),  # 0.3 nJ
    ("arm-cortex-a", 0.9e3, "ARM Cortex-A CPU"),  # 0.9 nJ
):
    _register(
        EnergyProfile(
            name=_name,
            e_mac_pj=_pj,
            e_ac_pj=_pj,
            e_neuron_pj=_pj,
            spiking=False,
            source=_DEGNAN,
            notes=f"{_what}. {_CONVENTIONAL}",
        )
    )
del _name, _pj, _what

# Memory-aware profiles: cmos45-fp32's compute costs plus weight (and neuron-state) reads at a
# named memory level, from the same Horowitz ISSCC 2014 table (45 nm, 64-bit accesses; REFERENCE.md
# section 9, "Memory access energy"):
#   8 KB SRAM read 10 pJ, 32 KB SRAM 20 pJ, 1 MB SRAM 100 pJ, DRAM 1.3-2.6 nJ per 64 bits.
# Per fp32 word: a 64-bit access carries two 32-bit words, so one word read is charged half of it
# (8 KB: 10/2 = 5 pJ; 1 MB: 100/2 = 50 pJ; DRAM: 1.3 nJ/2 = 650 pJ, the low end of the range).
# Neuron state (one fp32 membrane potential) is read and written once per neuron update in a
# local 8 KB SRAM on every memory profile: 5 pJ read + 5 pJ write (Horowitz tabulates reads;
# a write is charged as a read) = 10 pJ. Weight reads: one per MAC and one per SynOp, no reuse
# (docs/design.md, "Memory-aware energy").
_MEMORY_NOTES = (
    "Compute as cmos45-fp32 (MAC 4.6 pJ, AC 0.9 pJ, no neuron compute cost). Memory: one fp32 "
    "weight read per MAC and per SynOp (no reuse; zero-skipped MACs read nothing); one neuron-state "
    "read + write per neuron update in a local 8 KB SRAM, 5 + 5 = 10 pJ (a write charged as a read)."
)
_HOROWITZ_MEMORY = "M. Horowitz, ISSCC 2014, 45 nm memory access energies per 64-bit access"
for _name, _level, _read, _derivation in (
    ("cmos45-fp32-sram", "sram-8kb", 5.0, "8 KB SRAM 64-bit read 10 pJ / 2 = 5 pJ per 32-bit word"),
    ("cmos45-fp32-sram1m", "sram-1mb", 50.0, "1 MB SRAM 64-bit read 100 pJ / 2 = 50 pJ per 32-bit word"),
    ("cmos45-fp32-dram", "dram", 650.0,
     "DRAM 1.3-2.6 nJ per 64 bits: low end 1.3 nJ / 2 = 650 pJ per 32-bit word"),
):
    _register(
        EnergyProfile(
            name=_name,
            e_mac_pj=4.6,  # as cmos45-fp32
            e_ac_pj=0.9,
            e_neuron_pj=0.0,
            spiking=False,
            source=f"{_HOROWITZ}; memory: {_HOROWITZ_MEMORY} ({_derivation})",
            notes=f"Weights in {_level}. " + _MEMORY_NOTES,
            memory=_level,
            e_weight_read_pj=_read,
            e_state_pj=10.0,  # 8 KB SRAM read 5 + write 5 pJ per fp32 state word
        )
    )
del _name, _level, _read, _derivation


def _resolve(profile: EnergyProfile | str) -> EnergyProfile:
    return ENERGY_PROFILES.get(profile) if isinstance(profile, str) else profile


_COUNT_FIELDS = tuple(f.name for f in fields(OpCounts))


def estimate_energy(counts: OpCounts, profile: EnergyProfile | str) -> float:
    """Energy in joules per sample of the given operation counts on one profile.

    ``(macs*e_mac_pj + synops*e_ac_pj + neuron_updates*e_neuron_pj) * 1e-12``.

    Args:
        counts: Operations per sample.
        profile: An :class:`EnergyProfile` or the name of a registered one.

    Returns:
        Joules per sample.

    Raises:
        ConfigError: for an unknown profile name (listing the known ones) or a negative or
            non-finite count.

    Example:
        >>> round(estimate_energy(OpCounts(macs=1e6), "cmos45-fp32"), 15)  # 1e6 x 4.6 pJ
        4.6e-06
    """
    spec = _resolve(profile)
    for field_name in _COUNT_FIELDS:  # the flat numbers of OpCounts (asdict deep-copies: 40 us a call)
        value = getattr(counts, field_name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"operation count {field_name}={value} must be finite and >= 0")
    picojoules = (
        counts.macs * spec.e_mac_pj
        + counts.synops * spec.e_ac_pj
        + counts.neuron_updates * spec.e_neuron_pj
    )
    if spec.has_memory:
        picojoules += _memory_pj(counts, spec)
    return picojoules * _JOULES_PER_PICOJOULE


def _memory_pj(counts: OpCounts, spec: EnergyProfile) -> float:
    """Weight reads (one per MAC and per SynOp) and neuron-state read + writes, in pJ."""
    return (counts.macs + counts.synops) * spec.e_weight_read_pj + counts.neuron_updates * spec.e_state_pj


def compute_memory_split(counts: OpCounts, profile: EnergyProfile | str) -> dict[str, float]:
    """:func:`estimate_energy` split into ``compute`` (the arithmetic) and ``memory`` (weight and
    neuron-state accesses), in joules per sample; ``memory`` is 0 on a compute-only profile.

    ``memory = ((macs + synops) * e_weight_read_pj + neuron_updates * e_state_pj) * 1e-12``.

    Raises:
        ConfigError: as :func:`estimate_energy`.

    Example:
        >>> # 6 effective MACs: compute 6 x 4.6 = 27.6 pJ, memory 6 weight reads x 5 pJ = 30 pJ
        >>> {k: round(v, 16) for k, v in compute_memory_split(OpCounts(macs=6), "cmos45-fp32-sram").items()}
        {'compute': 2.76e-11, 'memory': 3e-11}
    """
    spec = _resolve(profile)
    estimate_energy(counts, spec)  # the same checks
    memory = _memory_pj(counts, spec) * _JOULES_PER_PICOJOULE if spec.has_memory else 0.0
    compute = (
        counts.macs * spec.e_mac_pj + counts.synops * spec.e_ac_pj + counts.neuron_updates * spec.e_neuron_pj
    ) * _JOULES_PER_PICOJOULE
    return {"compute": compute, "memory": memory}


BREAKDOWN_PARTS = ("input_layer", "spiking_layers", "neuron_updates")
"""The parts of :func:`energy_breakdown`, in the order of the energy formula's terms."""


def energy_breakdown(counts: OpCounts, profile: EnergyProfile | str) -> dict[str, float]:
    """The three terms of :func:`estimate_energy`, in joules per sample: what an SNN spends where.

    - ``input_layer``: ``macs * E_mac``, for an SNN the analog first layer's ``input_macs``, paid
      once per sample whatever the regularizer: the floor its energy cannot fall below
      (REFERENCE.md section 7, "The input-layer floor");
    - ``spiking_layers``: ``synops * E_ac``, the accumulates the spikes trigger;
    - ``neuron_updates``: ``neuron_updates * E_neuron`` (0 on profiles that charge none).

    - ``memory`` (only on a profile with a memory level): :func:`compute_memory_split`'s memory
      term, weight reads of the MACs and SynOps plus neuron-state accesses.

    The parts sum to :func:`estimate_energy` of the same counts (up to float rounding).

    Raises:
        ConfigError: as :func:`estimate_energy`.

    Example:
        >>> # 1e5 MACs x 4.6 pJ, 1e6 SynOps x 0.9 pJ, no neuron cost on cmos45-fp32
        >>> {k: round(v, 15) for k, v in energy_breakdown(OpCounts(1e5, 1e6, 10.0), "cmos45-fp32").items()}
        {'input_layer': 4.6e-07, 'spiking_layers': 9e-07, 'neuron_updates': 0.0}
    """
    spec = _resolve(profile)
    estimate_energy(counts, spec)  # the same checks
    parts = {
        "input_layer": counts.macs * spec.e_mac_pj * _JOULES_PER_PICOJOULE,
        "spiking_layers": counts.synops * spec.e_ac_pj * _JOULES_PER_PICOJOULE,
        "neuron_updates": counts.neuron_updates * spec.e_neuron_pj * _JOULES_PER_PICOJOULE,
    }
    if spec.has_memory:
        parts["memory"] = _memory_pj(counts, spec) * _JOULES_PER_PICOJOULE
    return parts


def energy_by_profile(counts: OpCounts, names: Sequence[str] | None = None) -> dict[str, float]:
    """Energy in joules per sample on several profiles.

    Args:
        counts: Operations per sample.
        names: Profile names; every registered profile (in registration order) when ``None``.

    Returns:
        Joules per sample by profile name, in the order asked.

    Example:
        >>> energy_by_profile(OpCounts(synops=1e6), ["cmos45-fp32"])  # 1e6 x 0.9 pJ
        {'cmos45-fp32': 9e-07}
    """
    chosen = ENERGY_PROFILES.names() if names is None else list(names)
    return {name: estimate_energy(counts, ENERGY_PROFILES.get(name)) for name in chosen}


def describe_profiles() -> list[dict[str, object]]:
    """One row per registered profile (for ``snnergy profiles``), in registration order.

    Returns:
        Dicts with keys ``name, spiking, e_mac_pj, e_ac_pj, e_neuron_pj, source, notes, memory,
        e_weight_read_pj, e_state_pj``.

    Example:
        >>> describe_profiles()[0]["name"]
        'cmos45-fp32'
    """
    rows = []
    for name in ENERGY_PROFILES.names():
        profile = ENERGY_PROFILES.get(name)
        rows.append(
            {
                "name": profile.name,
                "spiking": profile.spiking,
                "e_mac_pj": profile.e_mac_pj,
                "e_ac_pj": profile.e_ac_pj,
                "e_neuron_pj": profile.e_neuron_pj,
                "source": profile.source,
                "notes": profile.notes,
                "memory": profile.memory,
                "e_weight_read_pj": profile.e_weight_read_pj,
                "e_state_pj": profile.e_state_pj,
            }
        )
    return rows
