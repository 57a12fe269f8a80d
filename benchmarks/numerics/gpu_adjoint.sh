#!/usr/bin/env bash
# One prepared GPU run for the adjoint's one-epoch benchmark (issue #17): every gradient method
# (backprop, adjoint, discrete_adjoint, checkpoint as the rounding control) for each seed in
# $SEEDS, one process per seed side by side on the GPU (so times are not comparable with
# gpu_epoch.py, only accuracies and ratios within a seed), merged into
# $OUT/adjoint_epoch_cuda[_$PRESET].json.  $PRESET picks the recipe (default: "default").
# $DEADLINE (seconds) stops every process in time to merge the seeds that finished.
# Needs: CUDA PyTorch, MNIST's four raw IDX files gzip'd in .gpu/, $OUT (default ./gpu-out).
set -u
OUT=${OUT:-./gpu-out}
SEEDS=${SEEDS:-0 1 2 3 4 5}
PRESET=${PRESET:-default}
DEADLINE=${DEADLINE:-100000}
SCRATCH=$(mktemp -d)  # per-seed files stay here: only a few files come back from $OUT
mkdir -p "$OUT" .data/MNIST/raw
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}
for f in .gpu/*.gz; do gunzip -c "$f" > ".data/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
suffix=$([ "$PRESET" = default ] && echo "" || echo "_$PRESET")
t=$SECONDS
for s in $SEEDS; do
  OMP_NUM_THREADS=2 timeout "$DEADLINE" $PY benchmarks/numerics/adjoint_epoch.py --device cuda --seeds "$s" \
    --preset "$PRESET" --methods backprop,adjoint,discrete_adjoint,checkpoint \
    --out "$SCRATCH/adjoint_epoch_cuda_s$s.json" > "$SCRATCH/adjoint_s$s.log" 2>&1 &
done
wait
echo "[adjoint seeds $((SECONDS - t)) s, preset $PRESET]"
cat "$SCRATCH"/adjoint_s*.log > "$OUT/adjoint_seeds$suffix.log"
grep -h "^[0-9]" "$SCRATCH"/adjoint_s*.log
done_files=$(grep -l '"seed"' "$SCRATCH"/adjoint_epoch_cuda_s*.json 2>/dev/null)
$PY benchmarks/numerics/adjoint_epoch.py --merge $done_files --out "$OUT/adjoint_epoch_cuda$suffix.json"
