"""How close training runs to the hardware: achieved FLOP/s over the measured matmul peak.

    .venv/bin/python benchmarks/flops.py        # writes benchmarks/flops.json

1. FLOPs of one RK4 x1 training step per image (forward + backward, counted by
   ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products; the
   elementwise work of BatchNorm, ReLU, the RK combinations and the optimizer is not counted).
2. The machine's measured matmul peak: best of several 2048^3 products, fp32 and bf16.
3. odenet's training step throughput at batch 128 (the Trainer's own path: channels_last,
   AdamW, the same solver), fp32 and bf16 autocast, eager and ``torch.compile`` (compile time
   reported apart).  Achieved FLOP/s = counted FLOPs x images/s; the ratio to the peak bounds what
   any further speed-up of the same arithmetic in the same precision can give.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.time_to_accuracy import cpu_name  # noqa: E402
from odenet import ModelConfig, RKNet  # noqa: E402

BATCH = 128


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 8) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def make_step(compiled: bool, amp: bool):
    torch.manual_seed(0)
    model = RKNet(ModelConfig(integrator="rk4", steps=1)).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compiled else model
    x = torch.randn(BATCH, 1, 28, 28).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, x, y, step


def flops_per_image() -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model, x, y, _ = make_step(False, False)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / BATCH


def throughput(compiled: bool, amp: bool, steps: int = 40) -> tuple[float, float]:
    """(images per second, seconds of compilation/warm-up)."""
    _, _, _, step = make_step(compiled, amp)
    t = time.perf_counter()
    for _ in range(3):
        step()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - t), warm


def main() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1) if "--threads" not in sys.argv else int(sys.argv[-1]))
    fpi = flops_per_image()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for name, compiled, amp in (("fp32 eager", False, False), ("fp32 compiled", True, False),
                                ("bf16 eager", False, True), ("bf16 compiled", True, True)):
        try:
            ips, warm = throughput(compiled, amp)
        except Exception as exc:  # noqa: BLE001 - no C++ compiler, say so and go on
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        achieved = ips * fpi
        peak = peaks["bf16" if amp else "fp32"]
        rows.append({"variant": name, "images_per_s": round(ips, 1), "warmup_s": round(warm, 1),
                     "achieved_gflops": round(achieved / 1e9, 1), "peak_gflops": round(peak / 1e9, 1),
                     "fraction_of_peak": round(achieved / peak, 3)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "load_avg_1min": os.getloadavg()[0], "mflop_per_image_counted": round(fpi / 1e6, 1),
           "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()}, "rows": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    (ROOT / "benchmarks" / "flops.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
