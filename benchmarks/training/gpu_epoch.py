"""One full MNIST training epoch of RKNet RK4 x1 on the GPU (target: <= 2 s on an H100-class card).

    python benchmarks/training/gpu_epoch.py                    # fp32, then bf16 autocast, then torch.compile
    python benchmarks/training/gpu_epoch.py --device cpu --train-size 2000    # smoke run without a GPU

Prints the training time of the epoch (evaluation excluded) for each variant and writes
benchmarks/training/gpu_epoch.json.  Run on a machine with CUDA; the dataset stays resident on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet import TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist  # noqa: E402
from odenet.train.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--train-size", type=int, default=60_000)
    ap.add_argument("--batch-sizes", default="128,512")
    ap.add_argument("--variants", default="fp32,bf16,bf16+compile", help="a subset of fp32,bf16,bf16+compile")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    data = load_mnist()
    rows = []
    variants = [("fp32", {"amp": False}), ("bf16", {"amp": True}), ("bf16+compile", {"amp": True, "compile": True})]
    wanted = args.variants.split(",")
    if not set(wanted) <= {name for name, _ in variants}:
        ap.error(f"--variants: unknown variant in {args.variants!r}")
    variants = [v for v in variants if v[0] in wanted]
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        for name, kw in variants:
            cfg = TrainConfig.from_preset("default", epochs=1, batch_size=bs, train_size=args.train_size,
                                          device=args.device, log_every=50, lr=3e-3 * (bs / 128) ** 0.5, **kw)
            warm_s = None
            if "compile" in kw:  # warm-up run: compilation is not part of the epoch time (reported apart)
                t = time.perf_counter()
                Trainer(cfg.replace(train_size=max(bs * 4, 2048)), data=data).run()
                warm_s = round(time.perf_counter() - t, 1)
            res = Trainer(cfg, data=data).run()
            ev = [e for e in res.history if e.kind == "eval"][-1]
            row = {"variant": name, "batch_size": bs, "epoch_train_s": ev.elapsed - ev.eval_seconds,
                   "eval_s": ev.eval_seconds, "compile_warmup_s": warm_s, "test_acc": res.final_test_acc,
                   "fold_first_batchnorm": os.environ.get("ODENET_FOLD_BN", "1") != "0",
                   "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device}
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps(rows, indent=2))  # after every row: a cut-off run keeps its rows


if __name__ == "__main__":
    main()
