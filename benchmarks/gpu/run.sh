#!/usr/bin/env bash
# The prepared device check of issue 18 item 3: equivalence + harness on a lent CUDA machine,
# JSON into $OUT (benchmarks/gpu/results without it). See docs/benchmarks.md, GPU section.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" benchmarks/gpu/run.py "$@"
