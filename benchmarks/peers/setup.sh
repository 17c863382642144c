#!/usr/bin/env bash
# Sets up benchmarks/peers/.venv: its own environment for the peer benchmark (issue 8).
#
# SpikingJelly, sinabs and NeuroBench are never dependencies of snnergy. They are installed here
# with --no-deps, so that their pins cannot replace the CPU build of torch, plus only the light
# packages they import (found by importing each module the harness uses):
#   spikingjelly 2.0  -> loguru
#   sinabs 3.1        -> pbr (its version), nir and nirtorch (its NIR export, imported at start),
#                        h5py (imported by nir)
#   neurobench 2.3    -> snntorch (imported by neurobench.benchmarks and its static metrics)
#   norse 1.1         -> nir, nirtorch (its NIR reader; nirtorch 2.0.2 fails inside norse and sinabs)
# Everything else they import (numpy, tqdm, scipy) comes with snnergy's own dependencies.
#
# Usage (from anywhere):  bash benchmarks/peers/setup.sh
# Then:                   benchmarks/peers/.venv/bin/python benchmarks/peers/run.py --smoke
# Environment: PYTHON (default python3) makes the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

# Versions the harness was written and checked against.
torch_version="2.13.0"
peers=(spikingjelly==2.0.0 sinabs==3.1.3 neurobench==2.3.0 norse==1.1.0)
light=(loguru pbr nir==1.0.8 nirtorch==2.0.5 h5py snntorch)

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"   # without --system-site-packages: nothing leaks in
fi
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" -c "$root/constraints.txt" "torch==$torch_version"
"${pip[@]}" -c "$root/constraints.txt" -e "$root[dev]"
"${pip[@]}" --no-deps "${peers[@]}" "${light[@]}"

# The harness's imports must work, and torch must still be the CPU build pinned above.
"$venv/bin/python" - "$torch_version" <<'EOF'
import sys
import torch
import neurobench.benchmarks, neurobench.metrics.workload  # noqa: F401
import sinabs.layers, sinabs.hooks  # noqa: F401
import spikingjelly.activation_based.neuron  # noqa: F401
import snnergy

expected = sys.argv[1]
if not torch.__version__.startswith(expected):
    sys.exit(f"torch {torch.__version__} was installed instead of {expected}: a peer pulled it in")
print(f"peer venv ready: torch {torch.__version__}, snnergy {snnergy.__version__}")
EOF
