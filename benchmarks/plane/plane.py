"""Flows in the plane: accuracy and seconds of the default training (what `python -m odenet plane`
and the page run), per dataset and seed, and the augmentation lesson measured.

    python benchmarks/plane/plane.py            # -> benchmarks/plane/plane.json

For each seed: moons with the defaults (target: >= 97% test within 10 s), concentric circles with
``--augment 1`` (target: >= 98% within 20 s) and with ``--augment 0`` on the same points and the
same budget, each also scored with the reference solver (dopri5, rtol 1e-5) and with the NFE
that solve needed. Training runs on one thread (as the library does); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.data.toy2d import make_dataset, split  # noqa: E402
from odenet.plane.classifier import PlaneConfig, accuracy, train_plane  # noqa: E402
from odenet.plane.views import REFERENCE, flow, min_pairwise_distance  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402

CASES = [("moons", 0, 0.97, 10.0), ("circles", 1, 0.98, 20.0), ("circles", 0, None, 20.0)]


def first_reaching(history: list, target: float) -> float | None:
    """Seconds of training until the test accuracy first reached ``target`` (None: never)."""
    return next((p.seconds for p in history if p.test_accuracy is not None and p.test_accuracy >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, augment, target, _budget in CASES:
        for seed in range(args.seeds):
            train, test = split(make_dataset(name, n=1000, noise=0.1, seed=seed), seed=seed)
            run = train_plane(PlaneConfig(augment=augment, seed=seed), train, test)
            ref_acc, ref_nfe = accuracy(run.model, test, REFERENCE)
            sep = min_pairwise_distance(flow(run.model, test.x[:150], REFERENCE).states)
            row = {"dataset": name, "augment": augment, "seed": seed, "seconds": round(run.seconds, 2),
                   "test_accuracy": run.test_accuracy, "train_accuracy": run.train_accuracy,
                   "reference_accuracy": ref_acc, "reference_nfe": ref_nfe, "nfe": run.nfe,
                   "seconds_to_target": None if target is None else first_reaching(run.history, target),
                   "min_distance_under_reference": sep}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    for name, augment, target, budget in CASES:
        rs = [r for r in rows if r["dataset"] == name and r["augment"] == augment]
        acc = [r["test_accuracy"] for r in rs]
        summary.append({"dataset": name, "augment": augment, "target": target, "budget_s": budget,
                        "median_test_accuracy": statistics.median(acc), "min_test_accuracy": min(acc),
                        "median_reference_accuracy": statistics.median(r["reference_accuracy"] for r in rs),
                        "median_reference_nfe": statistics.median(r["reference_nfe"] for r in rs),
                        "max_seconds": max(r["seconds"] for r in rs),
                        "met": None if target is None else all(a >= target for a in acc)
                        and max(r["seconds"] for r in rs) <= budget})
        print(json.dumps(summary[-1]))
    out = {"machine": cpu_name(), "threads": 1, "config": PlaneConfig().to_dict(), "summary": summary, "runs": rows}
    if not args.no_write:
        (Path(__file__).with_suffix(".json")).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
