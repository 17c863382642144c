#!/usr/bin/env bash
# Copies what the device machine cannot download into benchmarks/gpu/vendor (gitignored; pass it
# to the device run with carry=["benchmarks/gpu/vendor"]): SpikingJelly 2.0 and loguru (pure
# Python, from the peer venv of benchmarks/peers/setup.sh, or from $WHEELS/*.whl unpacked) and the
# four Fashion-MNIST IDX files ($SNNERGY_DATA/fashion-mnist or /usr/share/datasets/fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p vendor
SITE=${PEER_SITE:-$(ls -d ../peers/.venv/lib/python3*/site-packages 2>/dev/null | head -1 || true)}
if [ -n "${WHEELS:-}" ]; then
  for w in "$WHEELS"/spikingjelly-*.whl "$WHEELS"/loguru-*.whl; do python -m zipfile -e "$w" vendor/; done
elif [ -n "$SITE" ]; then
  cp -r "$SITE/spikingjelly" "$SITE/loguru" vendor/
else
  echo "no peer venv and no \$WHEELS: the harness will time snnergy and the DNN floor only" >&2
fi
DATA=${SNNERGY_DATA:+$SNNERGY_DATA/fashion-mnist}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p vendor/fashion-mnist
cp "$DATA"/*-ubyte.gz vendor/fashion-mnist/
du -sh vendor
