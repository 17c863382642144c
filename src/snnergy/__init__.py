"""snnergy: activity-regularized DNNs, their rate-coded SNNs, exact operation counts and energy.

The system of Narduzzi, Bigdeli, Liu and Dunbar, "Optimizing the Consumption of Spiking Neural
Networks with Activity Regularization" (ICASSP 2022). The registering modules are imported here
explicitly, so every registry is complete once ``snnergy`` is imported.
"""

from snnergy._version import __version__
from snnergy.config import (
    ConvertConfig,
    DataConfig,
    ExperimentConfig,
    FinetuneConfig,
    ModelConfig,
    SimulateConfig,
    TrainConfig,
    apply_overrides,
    load_config,
)
from snnergy.data import DATASETS, load_dataset
from snnergy.energy import ENERGY_PROFILES, EnergyProfile, estimate_energy
from snnergy.errors import SnnergyError
from snnergy.experiments import compare, convert, measure, simulate, train
from snnergy.experiments.sweep import run_sweep as sweep
from snnergy.finetuning import finetune
from snnergy.interop import export_nir, import_nir
from snnergy.models import MODELS, build_model
from snnergy.records import ActivityRecord, DNNRecord, OpCounts, SNNRecord
from snnergy.simulation import SpikingNetwork, load_snn, save_snn
from snnergy.regularizers import REGULARIZERS, PenaltyOptions, activity_penalty, bind_penalty

__all__ = [
    "DATASETS",
    "ENERGY_PROFILES",
    "MODELS",
    "REGULARIZERS",
    "ActivityRecord",
    "ConvertConfig",
    "DNNRecord",
    "DataConfig",
    "EnergyProfile",
    "ExperimentConfig",
    "FinetuneConfig",
    "ModelConfig",
    "OpCounts",
    "PenaltyOptions",
    "SNNRecord",
    "SimulateConfig",
    "SnnergyError",
    "SpikingNetwork",
    "TrainConfig",
    "__version__",
    "activity_penalty",
    "apply_overrides",
    "bind_penalty",
    "build_model",
    "compare",
    "convert",
    "estimate_energy",
    "export_nir",
    "finetune",
    "import_nir",
    "load_config",
    "load_dataset",
    "load_snn",
    "measure",
    "save_snn",
    "simulate",
    "sweep",
    "train",
]
