#!/usr/bin/env bash
# The prepared device check of issue 18 item 3, in one call: the CUDA tests (tests/unit/test_gpu.py,
# and the kernel's interpreter tests), then the equivalence check and harness of run.py. Logs and
# JSON into $OUT (benchmarks/gpu/results without it); exits non-zero if either part failed.
# Extra arguments go to run.py. See docs/benchmarks.md, GPU section.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/gpu/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="src:benchmarks/gpu/vendor${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -o addopts= -rs tests/unit/test_gpu.py \
    tests/unit/simulation/test_fused_scan.py 2>&1 | tee "$OUT/pytest.log" | tail -20
tests=$?
"$PY" benchmarks/gpu/run.py --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
harness=$?
echo "tests: exit $tests, harness: exit $harness"
[ "$tests" -eq 0 ] && [ "$harness" -eq 0 ]
