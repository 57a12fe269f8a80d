"""One epoch of RKNet with RK4 x4, trained with backprop and with the adjoint method (same seed,
same data order, fp32): final test accuracy and training time of each, side by side.

    .venv/bin/python benchmarks/numerics/adjoint_epoch.py        # writes benchmarks/numerics/adjoint_epoch.json
    python benchmarks/numerics/adjoint_epoch.py --device cuda --seeds 0,1,2 \\
        --out benchmarks/numerics/adjoint_epoch_cuda.json

With several seeds it also reports the spread of each method's accuracy over seeds, which says
whether a difference between the two methods is larger than the run-to-run noise.  With
``--methods backprop,adjoint,discrete_adjoint,checkpoint`` it adds the discrete adjoint and a
control: checkpointing computes backprop's gradients to float rounding, so its difference from
backprop (same seed) is how far one epoch moves from rounding alone.  ``--merge`` combines the
results of several runs (one process per seed on a GPU: ``benchmarks/numerics/gpu_adjoint.sh``).

    python benchmarks/numerics/adjoint_epoch.py --methods backprop,adjoint,discrete_adjoint,checkpoint --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet import TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist  # noqa: E402
from odenet.train.trainer import Trainer  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402


def summarize(out: dict) -> dict:
    """Add the headline fields to a result: the first seed's runs, each method's difference from
    backprop (points) and time ratio, and with several seeds each method's mean and spread."""
    by_seed = out["by_seed"]
    methods = [g for g in by_seed[0] if g != "seed"]
    first = by_seed[0]
    out["runs"] = {g: first[g] for g in methods}  # seed 0 (or the first): the headline row
    b = first["backprop"]
    for g in methods[1:]:
        r = first[g]
        key = "accuracy_difference_points" if g == "adjoint" else f"{g}_difference_points"
        out[key] = round(100 * (r["test_acc"] - b["test_acc"]), 2)
        out[f"time_ratio_{g}_over_backprop"] = round(r["training_seconds"] / b["training_seconds"], 2)
    if len(by_seed) > 1:
        for g in methods:
            accs = [100 * r[g]["test_acc"] for r in by_seed]
            out[f"{g}_mean_points"] = round(statistics.mean(accs), 2)
            out[f"{g}_stdev_points"] = round(statistics.stdev(accs), 2)
            if g != "backprop":
                diffs = [100 * (r[g]["test_acc"] - r["backprop"]["test_acc"]) for r in by_seed]
                key = "mean_difference_points" if g == "adjoint" else f"{g}_mean_difference_points"
                out[key] = round(statistics.mean(diffs), 2)
    return out


def merge(paths: list[str]) -> dict:
    """One result from several runs of this script (e.g. one process per seed on a GPU)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = {k: v for k, v in parts[0].items() if k in ("cpu", "threads", "torch", "device", "preset")}
    out["by_seed"] = sorted((row for part in parts for row in part["by_seed"]), key=lambda r: r["seed"])
    out["seeds"] = [r["seed"] for r in out["by_seed"]]
    return summarize(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each runs every method")
    ap.add_argument("--methods", default="backprop,adjoint", help="gradient methods, backprop first")
    ap.add_argument("--preset", default="default",
                    help="training recipe (TrainConfig.from_preset) over one epoch; 'fast' adds an average of "
                         "the weights, which damps how far rounding moves one epoch's final accuracy")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only merge these results into --out")
    args = ap.parse_args()
    if args.merge:
        out = merge(args.merge)
        print(json.dumps({k: v for k, v in out.items() if k not in ("by_seed", "runs")}, indent=2))
        Path(args.out).write_text(json.dumps(out, indent=2))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    if methods[0] != "backprop" or len(methods) < 2:
        ap.error("--methods must start with backprop and name at least one other method")
    train, test = load_mnist()
    device = torch.device(args.device)
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "preset": args.preset, "seeds": seeds, "runs": {}, "by_seed": []}
    for seed in seeds:
        row = {"seed": seed}
        for gradient in methods:
            cfg = TrainConfig.from_preset(args.preset, epochs=1, integrator="rk4", steps=4, gradient=gradient,
                                          amp=False, seed=seed, device=args.device)
            res = Trainer(cfg, data=(train, test)).run()
            evals = [e for e in res.history if e.kind == "eval"]
            train_s = res.elapsed - (evals[-1].eval_seconds if evals else 0.0)
            row[gradient] = {"test_acc": res.final_test_acc, "training_seconds": round(train_s, 1),
                             "status": res.status}
            print(seed, gradient, row[gradient], flush=True)
        out["by_seed"].append(row)
        Path(args.out).write_text(json.dumps(out, indent=2))  # each finished seed survives a cut-off run
    summarize(out)
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
