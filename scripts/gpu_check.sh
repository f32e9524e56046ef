#!/usr/bin/env bash
# The GPU check, for a bare GPU machine: no network, nothing installed, no venv made. It needs
# python3 with torch (2.11 or newer), torchvision, numpy, pandas, scipy and pyyaml, and this
# working tree; the package runs from lib/ (PYTHONPATH), papermill and nbconvert are never
# imported. In at most 8 minutes it measures, on synthetic images of CIFAR's shape:
#   1. one epoch of `paper`'s longest configuration (width 1.0, 40k + 10k images, batch 128),
#      fp32 and bf16, compile on and off;
#   2. that epoch with K = 1, 2, 4, 8 runs at once (processes, as --runs-per-gpu packs them)
#      and the best K;
#   3. the benchmark on CUDA (ours vs the report's pipeline);
#   4. with gpu-check-data/cifar100-subset.npz (`python scripts/make_subset.py`, run where
#      CIFAR-100 is) a short accuracy check on real images;
#   5. the projected wall time of the whole `paper` preset on one such GPU at the best K.
# Results: OUT/gpu_check.json, OUT/gpu_check.log and OUT/stderr.log (default gpu-results/).
#
#   bash scripts/gpu_check.sh                          # on the GPU machine
#   bash scripts/gpu_check.sh --out DIR --subset FILE.npz
#   bash scripts/gpu_check.sh --device cpu --sizes tiny --out /tmp/x   # the CPU rehearsal
#
# PYTHON=/path/to/python overrides python3; GPU_CHECK_LIMIT (default 480 s) is the hard stop
# (the check keeps to its own --budget, 450 s by default, and writes its JSON after every
# segment, so even a hard stop leaves what was measured).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if command -v timeout >/dev/null 2>&1; then
  exec timeout --kill-after=15 "${GPU_CHECK_LIMIT:-480}" "$PY" -m hpstudy.bench.gpu_check "$@"
fi
exec "$PY" -m hpstudy.bench.gpu_check "$@"
