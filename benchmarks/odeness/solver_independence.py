"""Is a model solver-independent?  Accuracy under every solver of issue #16's bar.

    .venv/bin/python benchmarks/odeness/solver_independence.py rk4_1step euler_1step path/to/model.pt
    python benchmarks/odeness/solver_independence.py a.pt b.pt --split holdout --holdout-from 55000   # model selection

The bar: >= 99.0% under Euler x2, Euler x8, Modified Euler x4, RK4 x1, RK4 x8 and adaptive
dopri5 (rtol 1e-5, atol 1e-6), with fewer adaptive evaluations per batch (of 1,000 images) than
the shipped ``rk4_1step`` needs.  ``--split test`` (default) is the full 10,000-image test set;
``--split holdout`` is the training images from ``--holdout-from`` on, for choosing between
candidates trained on the images before it without looking at the test set.
Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.data.mnist import MNISTSplit, load_mnist  # noqa: E402
from odenet.inspect.analysis import SOLVER_INDEPENDENCE_BAR, solver_table  # noqa: E402
from odenet.train.checkpoints import load_model  # noqa: E402

BAR_ACCURACY = 0.99
BASELINE = "rk4_1step"  # the adaptive-cost baseline of the bar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="shipped model names or checkpoint paths")
    ap.add_argument("--split", choices=("test", "holdout"), default="test")
    ap.add_argument("--holdout-from", type=int, default=55_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    train, test = load_mnist()
    split = test if args.split == "test" else MNISTSplit(train.images[args.holdout_from:],
                                                         train.labels[args.holdout_from:])
    split = split.to(args.device)
    names = list(dict.fromkeys([BASELINE, *args.models]))
    results: dict[str, dict] = {}
    for name in names:
        start = time.perf_counter()
        model = load_model(name, device=args.device)
        df = solver_table(model, split)
        results[name] = {"rows": df.to_dict(orient="records"), "min_accuracy": float(df.accuracy.min()),
                         "adaptive_nfe_per_batch": float(df.nfe_per_batch.iloc[-1]),
                         "seconds": round(time.perf_counter() - start, 1)}
        print(name, f"{time.perf_counter() - start:.0f} s", flush=True)
    base_nfe = results[BASELINE]["adaptive_nfe_per_batch"]
    for r in results.values():
        r["meets_bar"] = r["min_accuracy"] >= BAR_ACCURACY and r["adaptive_nfe_per_batch"] < base_nfe
    labels = [row["solver"] for row in results[names[0]]["rows"]]
    print(f"\n{len(split)} images ({args.split}); accuracy % per solver; last column: adaptive NFE per batch\n")
    print("| model | " + " | ".join(labels) + " | NFE | bar |")
    print("|---" * (len(labels) + 3) + "|")
    for name, r in results.items():
        cells = " | ".join(f"{100 * row['accuracy']:.2f}" for row in r["rows"])
        print(f"| {name} | {cells} | {r['adaptive_nfe_per_batch']:.0f} | {'yes' if r['meets_bar'] else 'no'} |")
    out = {"split": args.split, "images": len(split), "device": args.device,
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
           "solvers": [s.label() for s in SOLVER_INDEPENDENCE_BAR], "bar_accuracy": BAR_ACCURACY, "models": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
