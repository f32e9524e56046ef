#!/usr/bin/env bash
# Run once on a machine with a CUDA GPU to fill in the README's GPU figures:
#   1. the benchmark on CUDA (ours vs the report's pipeline in its own process, alternating segments),
#   2. one epoch of the `paper` preset's longest configuration (width 1.0, 40k/10k, fp32),
#   3. how many runs fit on one GPU: the paper epoch with K runs at once (K = 1, 2, 4).
# Results land in ${OUT:-gpu-results}/ (JSON + logs); paste them into README and RESULTS.md.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
hpstudy bench --device cuda --json "$OUT/bench_cuda.json" | tee "$OUT/bench_cuda.log"
RUNS="$(mktemp -d)"
for K in 1 2 4; do
  start=$(date +%s.%N)
  for i in $(seq 1 "$K"); do
    hpstudy train epochs=1 width=1.0 batch_size=128 lr=0.05 schedule=cosine weight_decay=5e-4 \
      normalize=published precision=fp32 seed="$i" --runs "$RUNS/k$K" > "$OUT/paper_epoch_k${K}_$i.log" 2>&1 &
  done
  wait
  end=$(date +%s.%N)
  python - "$K" "$start" "$end" <<'PY' | tee -a "$OUT/runs_per_gpu.txt"
import sys
k, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"K={k}: {k} paper epochs (40k train + 10k val, width 1.0, fp32) in {t1 - t0:.1f} s wall, "
      f"{(t1 - t0) / k:.1f} s per run-epoch")
PY
done
grep -h "epoch 1/1" "$OUT"/paper_epoch_k1_1.log | tee "$OUT/paper_epoch.txt"
