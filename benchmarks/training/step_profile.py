"""Where the fp32 training step's time goes, and what that allows (issue 13's fp32 target).

Profiles RKNet's default training step (RK4 x1, batch 128, channels_last, AdamW, fp32: what a CPU
without AMX runs) with ``torch.profiler`` and splits its CPU time into the convolutions (forward and
backward, each with its achieved FLOP/s), BatchNorm, ReLU, the optimizer and everything else.
In the same process and run it measures the notebook pipeline's and odenet's fp32 throughput
(interleaved, best of 3 rounds) and the fp32 matmul peak, then states the bound Amdahl's law
puts on the fp32 ratio: if everything but the convolutions took no time at all, the step
would be ``total / convolutions`` times faster.

    python benchmarks/training/step_profile.py      # writes benchmarks/training/step_profile.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.run import forever, make_step, matmul_peak, round_robin, timed_steps, torchvision_loader  # noqa: E402
from benchmarks.training import notebook_reference as nb  # noqa: E402
from odenet import RKNet  # noqa: E402
from odenet.data.mnist import iterate_batches, load_mnist  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402

BATCH, PROFILED_STEPS = 128, 10
BATCHNORM = ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::_native_batch_norm_legit",
             "aten::_native_batch_norm_legit_no_training")
RELU = ("aten::threshold_backward", "aten::clamp_min_", "aten::clamp_min", "aten::relu_", "aten::relu")


def conv_layers(model: RKNet, x: torch.Tensor) -> dict[tuple, dict]:
    """Every convolution of one forward (module or functional, e.g. the vector field's prepared
    weights), keyed by (input shape, weight shape): a name, its forward multiply-add FLOPs
    (2 * N * C_out * H_out * W_out * C_in/groups * k * k)."""
    from torch.overrides import TorchFunctionMode

    names = {id(m.weight): name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    layers: dict[tuple, dict] = {}

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (F.conv2d, torch.conv2d):
                inp, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
                key = (tuple(inp.shape), tuple(w.shape))
                name = names.get(id(w), f"functional conv2d {tuple(w.shape)}")
                layers.setdefault(key, {"layer": name, "forward_flops": 2 * out.numel() * w[0].numel()})
            return out

    model.eval()  # the same shapes; eval mode: no running statistics touched
    with torch.no_grad(), Record():
        model(x)
    model.train()
    return layers


def main() -> None:
    torch.manual_seed(0)
    train, _ = load_mnist()
    model = RKNet().to(memory_format=torch.channels_last)  # the default: rk4 x1
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    step = make_step(model, opt)
    batches = iterate_batches(train, BATCH, shuffle=True, drop_last=True)
    x0, _ = next(iter(iterate_batches(train, BATCH)))
    layers = conv_layers(model, x0)

    # throughput, interleaved with the notebook pipeline (as benchmarks/run.py group 1 does)
    note = nb.RKNet(nb.FixedStepSolver, nb.RungeKutta4, 0.0, 1.0, 10, steps=1)
    note_step = make_step(note, torch.optim.Adam(note.parameters(), 1e-3))
    note_batches = forever(torchvision_loader(BATCH))
    ours_batches = forever(iterate_batches(train, BATCH, shuffle=True, drop_last=True))
    best = round_robin({"odenet_fp32": lambda: timed_steps(step, ours_batches),
                        "notebook": lambda: timed_steps(note_step, note_batches)})
    peak = matmul_peak(torch.float32)

    from torch.profiler import ProfilerActivity, profile

    it = iter(batches)
    for _ in range(3):
        step(*next(it))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(PROFILED_STEPS):
            step(*next(it))
    events = prof.key_averages(group_by_input_shape=True)
    total_us = sum(e.self_cpu_time_total for e in events)
    cats: dict[str, float] = defaultdict(float)
    conv_rows: dict[str, dict] = {}
    optimizer_us = 0.0
    for e in events:
        shapes = [tuple(s) for s in (e.input_shapes or [])]
        if e.key == "aten::mkldnn_convolution" or e.key == "aten::convolution_backward":
            fwd = e.key == "aten::mkldnn_convolution"
            key = (shapes[0], shapes[1]) if fwd else (shapes[1], shapes[2])
            info = layers.get(key)
            name = info["layer"] if info else str(key)
            cats["convolutions"] += e.self_cpu_time_total
            row = conv_rows.setdefault(name, {"layer": name, "input": list(key[0]), "weight": list(key[1])})
            kind = "forward" if fwd else "backward"
            ms = e.self_cpu_time_total / 1e3 / PROFILED_STEPS
            row[f"{kind}_ms_per_step"] = row.get(f"{kind}_ms_per_step", 0.0) + ms
            if info:
                # backward: input gradient + weight gradient (2x the forward), only the weight
                # gradient for the first layer, whose input (the image) needs none
                mult = 1 if not fwd and key[0][1] == 1 else (2 if not fwd else 1)
                flops = mult * info["forward_flops"] * e.count
                row[f"{kind}_gflops"] = round(flops / (e.self_cpu_time_total / 1e6) / 1e9, 1)
        elif e.key in BATCHNORM:
            cats["batchnorm"] += e.self_cpu_time_total
        elif e.key in RELU:
            cats["relu"] += e.self_cpu_time_total
        elif e.key.startswith("Optimizer.step"):
            optimizer_us += e.cpu_time_total  # its own ops (add_, mul_, ...) are inside this total
    cats["optimizer"] = optimizer_us
    cats["everything else (elementwise RK work, time map, loss, autograd, allocation)"] = (
        total_us - sum(cats.values()))
    step_ms = total_us / 1e3 / PROFILED_STEPS
    ratio = best["odenet_fp32"] / best["notebook"]
    bound = total_us / cats["convolutions"]
    out = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "throughput_img_s": {k: round(v, 1) for k, v in best.items()},
        "fp32_over_notebook": round(ratio, 3),
        "fp32_matmul_peak_gflops": round(peak / 1e9, 1),
        "profiled_step_ms": round(step_ms, 1),
        "share_of_step": {k: round(v / total_us, 3) for k, v in cats.items()},
        "convolutions": list(conv_rows.values()),
        "speedup_bound_if_only_convolutions_remained": round(bound, 3),
        "fp32_over_notebook_bound": round(ratio * bound, 3),
    }
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"\nfp32 step {step_ms:.1f} ms; convolutions {cats['convolutions'] / total_us:.1%} of it; "
          f"odenet fp32 / notebook {ratio:.2f}x now, at most {ratio * bound:.2f}x if nothing but the "
          f"convolutions took time (matmul peak {peak / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
