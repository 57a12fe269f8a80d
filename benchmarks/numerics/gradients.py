"""Gradients through RKNet's solve: backprop vs adjoint vs checkpoint, memory and time.

    python benchmarks/numerics/gradients.py                      # rk4, batch 64, steps 1, 2, 4, ..., 64
    python benchmarks/numerics/gradients.py --steps 1,4,16 --repeats 1     # a reduced grid
    python benchmarks/numerics/gradients.py --device cuda \\
        --out benchmarks/numerics/gradients_cuda.json           # adds peak CUDA memory

For each gradient method and step count: bytes autograd saves for backward (deterministic,
``odenet.ode.gradients.saved_tensor_bytes``), wall time of forward + backward (best of
``--repeats``), NFE forward/backward, and the parameter gradient's relative error and cosine
against backprop at the same steps.  Model: the shipped ``rk4_1step`` weights (random
weights if they cannot be loaded), eval mode; data: the first MNIST test images (random
images if MNIST is unavailable).  Writes benchmarks/numerics/gradients.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.model.rknet import RKNet  # noqa: E402
from odenet.ode.gradients import GRADIENT_METHODS, gradient_comparison  # noqa: E402


def load_inputs(batch: int, model_name: str, seed: int) -> tuple[RKNet, torch.Tensor, torch.Tensor, dict]:
    """The model and one batch: x (B, 1, 28, 28) normalised, y (B,)."""
    source = {}
    try:
        from odenet.train.checkpoints import load_model

        model = load_model(model_name)
        source["model"] = model_name
    except Exception as exc:  # noqa: BLE001 - any failure falls back to random weights, and says so
        torch.manual_seed(seed)
        model = RKNet()
        source["model"] = f"random weights (could not load {model_name!r}: {exc})"
    try:
        from odenet.data.mnist import load_mnist, normalize

        _, test = load_mnist()
        x, y = normalize(test.images[:batch]), test.labels[:batch]
        source["data"] = f"MNIST test[:{batch}]"
    except Exception as exc:  # noqa: BLE001
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
        source["data"] = f"random normal images (MNIST unavailable: {exc})"
    return model, x, y, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--integrator", default="rk4")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", default="1,2,4,8,16,32,64", help="comma-separated step counts")
    ap.add_argument("--methods", default=",".join(GRADIENT_METHODS))
    ap.add_argument("--repeats", type=int, default=3, help="timing: best of this many runs (memory is exact)")
    ap.add_argument("--model", default="rk4_1step", help="shipped model name or checkpoint path")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda adds the peak GPU memory of each row)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    steps_list = [int(s) for s in args.steps.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    model, x, y, source = load_inputs(args.batch, args.model, args.seed)
    device = torch.device(args.device)
    model, x, y = model.to(device), x.to(device), y.to(device)
    if device.type == "cuda":
        source["gpu"] = torch.cuda.get_device_name(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    gradient_comparison(model, x, y, args.integrator, [1, 2], methods)  # warm-up (allocator, kernels)
    started = time.perf_counter()
    runs = [gradient_comparison(model, x, y, args.integrator, steps_list, methods,
                                progress=lambda frac, msg, r=r: print(f"  [{r + 1}/{args.repeats}] {frac:4.0%} {msg}",
                                                                       file=sys.stderr))
            for r in range(args.repeats)]
    total = time.perf_counter() - started
    df = runs[0].copy()
    df["time_s"] = [min(r["time_s"].iloc[i] for r in runs) for i in range(len(df))]

    def cell(method: str, steps: int, col: str) -> float | None:
        sel = df[(df.method == method) & (df.steps == steps)]
        return None if sel.empty else float(sel[col].iloc[0])

    big = max(steps_list)
    small = min((s for s in steps_list if 4 <= s < big), default=min(steps_list))
    ratios = {}
    cuda_peaks = df["peak_cuda_mib"].notna().any()
    for mth in ("adjoint", "checkpoint"):
        if cuda_peaks and cell(mth, big, "peak_cuda_mib") is not None and cell("backprop", big, "peak_cuda_mib"):
            ratios[f"{mth}_peak_cuda_{big}_over_backprop_{big}"] = (cell(mth, big, "peak_cuda_mib")
                                                                    / cell("backprop", big, "peak_cuda_mib"))
            if cell(mth, small, "peak_cuda_mib"):
                ratios[f"{mth}_peak_cuda_{big}_over_{small}"] = (cell(mth, big, "peak_cuda_mib")
                                                                 / cell(mth, small, "peak_cuda_mib"))
        mem = cell(mth, big, "saved_bytes")
        bp_mem, bp_time = cell("backprop", big, "saved_bytes"), cell("backprop", big, "time_s")
        if mem is not None and bp_mem:
            ratios[f"{mth}_memory_{big}_over_backprop_{big}"] = mem / bp_mem
        if mem is not None and cell(mth, small, "saved_bytes"):
            ratios[f"{mth}_memory_{big}_over_{small}"] = mem / cell(mth, small, "saved_bytes")
        if cell(mth, big, "time_s") is not None and bp_time:
            ratios[f"{mth}_time_{big}_over_backprop_{big}"] = cell(mth, big, "time_s") / bp_time
    if cell("backprop", big, "saved_bytes") and cell("backprop", small, "saved_bytes"):
        ratios[f"backprop_memory_{big}_over_{small}"] = (cell("backprop", big, "saved_bytes")
                                                         / cell("backprop", small, "saved_bytes"))

    print(f"\n{args.integrator}, batch {args.batch}, {source['model']}, {source['data']}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load avg {load}\n")
    print("| method | steps | saved MiB | peak CUDA MiB | time s | NFE fwd | NFE bwd | grad rel err | cosine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in df.sort_values(["method", "steps"]).itertuples():
        peak = "-" if r.peak_cuda_mib is None or r.peak_cuda_mib != r.peak_cuda_mib else f"{r.peak_cuda_mib:.1f}"
        print(f"| {r.method} | {r.steps} | {r.saved_mib:.1f} | {peak} | {r.time_s:.3f} | {r.nfe_forward} "
              f"| {r.nfe_backward} | {r.grad_rel_error:.2e} | {r.grad_cosine:.6f} |")
    print()
    targets = {f"adjoint_memory_{big}_over_backprop_{big}": "target <= 0.125",
               f"adjoint_memory_{big}_over_{small}": "target <= 1.5"}
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}  {targets.get(k, '')}")

    out = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "load_avg_1min": load},
        "config": {"integrator": args.integrator, "batch": args.batch, "steps": steps_list, "methods": methods,
                   "repeats": args.repeats, **source, "mode": "eval", "device": str(device)},
        "rows": df.to_dict(orient="records"),
        "ratios": ratios,
        "seconds": total,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
