#!/usr/bin/env bash
# The first-BatchNorm fold (odenet.model.rknet.conv_bn_from_patch_moments) on the GPU: one RK4 x1 epoch
# with it (ODENET_FOLD_BN=1) and without (=0), alternating twice, fp32 and bf16 at batch 128 and
# 512, then bf16+compile at batch 512 each way.  Needs what gpu_session.sh needs; writes
# $OUT/gpu_fold.json (one row per epoch, with "fold_first_batchnorm").
set -u
OUT=${OUT:-./gpu-out}
SCRATCH=$(mktemp -d)
mkdir -p "$OUT" .data/MNIST/raw
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}
for f in .gpu/*.gz; do gunzip -c "$f" > ".data/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name --format=csv,noheader
t=$SECONDS
for round in 1 2; do
  for fold in 1 0; do
    ODENET_FOLD_BN=$fold $PY benchmarks/training/gpu_epoch.py --variants fp32,bf16 --out "$SCRATCH/r${round}_f$fold.json" \
      2>&1 | grep -v "^W[0-9]"
  done
done
for fold in 1 0; do
  ODENET_FOLD_BN=$fold $PY benchmarks/training/gpu_epoch.py --variants bf16+compile --batch-sizes 512 \
    --out "$SCRATCH/compile_f$fold.json" 2>&1 | grep -v "^W[0-9]"
done
echo "[fold epochs $((SECONDS - t)) s]"
$PY - "$SCRATCH" "$OUT/gpu_fold.json" <<'PY'
import json, sys, pathlib
rows = [r for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")) for r in json.loads(f.read_text())]
pathlib.Path(sys.argv[2]).write_text(json.dumps(rows, indent=2))
best = {}
for r in rows:
    k = (r["variant"], r["batch_size"], r["fold_first_batchnorm"])
    best[k] = min(best.get(k, 1e9), r["epoch_train_s"])
for (v, b, f), s in sorted(best.items()):
    print(f"{v:14s} batch {b:4d} fold={f!s:5s} best epoch {s:.2f} s")
PY
