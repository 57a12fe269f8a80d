#!/usr/bin/env bash
# One prepared GPU run for the adjoint's one-epoch benchmark (issue #17): every gradient method
# (backprop, adjoint, discrete_adjoint, checkpoint as the rounding control) for seeds 0..5,
# one process per seed side by side on the GPU (so times are not comparable with gpu_epoch.py,
# only accuracies and ratios within a seed), merged into $OUT/adjoint_epoch_cuda.json.
# Needs: CUDA PyTorch, MNIST's four raw IDX files gzip'd in .gpu/, $OUT (default ./gpu-out).
set -u
OUT=${OUT:-./gpu-out}
SEEDS=${SEEDS:-0 1 2 3 4 5}
mkdir -p "$OUT" .data/MNIST/raw
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}
for f in .gpu/*.gz; do gunzip -c "$f" > ".data/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t=$SECONDS
for s in $SEEDS; do
  OMP_NUM_THREADS=2 $PY benchmarks/adjoint_epoch.py --device cuda --seeds "$s" \
    --methods backprop,adjoint,discrete_adjoint,checkpoint --out "$OUT/adjoint_epoch_cuda_s$s.json" \
    > "$OUT/adjoint_s$s.log" 2>&1 &
done
wait
echo "[adjoint seeds $((SECONDS - t)) s]"
grep -h "^[0-9]" "$OUT"/adjoint_s*.log
$PY benchmarks/adjoint_epoch.py --merge "$OUT"/adjoint_epoch_cuda_s*.json --out "$OUT/adjoint_epoch_cuda.json"
