#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks.md in one prepared run (the device machine is lent by the
# minute).  Needs: CUDA PyTorch, MNIST's four raw IDX files gzip'd in .gpu/ (they are unpacked
# into .data/MNIST/raw), and $OUT (a folder for the results; default ./gpu-out).
#   1. benchmarks/training/gpu_epoch.py      one RK4 x1 epoch: fp32, bf16, bf16+compile at batch 128 and 512
#   2. benchmarks/numerics/gradients.py      backprop/adjoint/checkpoint with peak CUDA memory, steps 1..64
#   3. six candidate solver-independent models (issue #16), trained side by side on the first
#      55,000 training images, with benchmarks/numerics/adjoint_epoch.py (3 seeds) beside them; their
#      times are not reported (they share the GPU), only accuracies
#   4. benchmarks/odeness/solver_independence.py on the 5,000 held-out training images (model choice
#      without the test set)
# Steps are independent: one that fails does not stop the others.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT" .data/MNIST/raw
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}
for f in .gpu/*.gz; do gunzip -c "$f" > ".data/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
t=$SECONDS
$PY benchmarks/training/gpu_epoch.py --out "$OUT/gpu_epoch.json" 2>&1 | grep -v "^W[0-9]" ; echo "[gpu_epoch $((SECONDS - t)) s]"
t=$SECONDS
$PY benchmarks/numerics/gradients.py --device cuda --repeats 3 --out "$OUT/gradients_cuda.json" 2>/dev/null
echo "[gradients $((SECONDS - t)) s]"
t=$SECONDS
mkdir -p cands
common="--preset fast --epochs 8 --train-size 55000 --seed 0 --device cuda --quiet --runs-dir cands/runs"
declare -A recipes=(
  [k1e-4]="--integrator rk4 --steps 1 --kinetic 1e-4"
  [k1e-3]="--integrator rk4 --steps 1 --kinetic 1e-3"
  [k1e-4_steer]="--integrator rk4 --steps 1 --kinetic 1e-4 --steer 0.5"
  [k3e-4_rk4x2]="--integrator rk4 --steps 2 --kinetic 3e-4"
  [k1e-4_j1e-3]="--integrator rk4 --steps 1 --kinetic 1e-4 --jacobian 1e-3"
  [j1e-2]="--integrator rk4 --steps 1 --jacobian 1e-2"
)
for name in "${!recipes[@]}"; do
  echo "python -m odenet train $common ${recipes[$name]} --name $name --out cands/$name.pt" >> cands/commands.txt
  # shellcheck disable=SC2086
  $PY -m odenet train $common ${recipes[$name]} --name "$name" --out "cands/$name.pt" > "cands/$name.log" 2>&1 &
done
$PY benchmarks/numerics/adjoint_epoch.py --device cuda --seeds 0,1,2 --out "$OUT/adjoint_epoch_cuda.json" > cands/adjoint.log 2>&1
wait
echo "[candidates + adjoint seeds $((SECONDS - t)) s]"
tail -n 2 cands/*.log
tar czf "$OUT/cands.tgz" cands
t=$SECONDS
$PY benchmarks/odeness/solver_independence.py cands/*.pt --split holdout --device cuda --out "$OUT/solver_independence_holdout.json" 2>&1 | tail -n 12
echo "[holdout evaluation $((SECONDS - t)) s]"
tar czf "$OUT/cands.tgz" cands
