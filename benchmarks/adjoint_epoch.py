"""One epoch of RKNet with RK4 x4, trained with backprop and with the adjoint method (same seed,
same data order, fp32): final test accuracy and training time of each, side by side.

    .venv/bin/python benchmarks/adjoint_epoch.py        # writes benchmarks/adjoint_epoch.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.time_to_accuracy import cpu_name  # noqa: E402
from odenet import TrainConfig  # noqa: E402
from odenet.data import load_mnist  # noqa: E402
from odenet.training import Trainer  # noqa: E402


def main() -> None:
    train, test = load_mnist()
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__, "runs": {}}
    for gradient in ("backprop", "adjoint"):
        cfg = TrainConfig.from_preset("default", epochs=1, integrator="rk4", steps=4, gradient=gradient, amp=False,
                                      seed=0, device="cpu")
        res = Trainer(cfg, data=(train, test)).run()
        evals = [e for e in res.history if e.kind == "eval"]
        train_s = res.elapsed - (evals[-1].eval_seconds if evals else 0.0)
        out["runs"][gradient] = {"test_acc": res.final_test_acc, "training_seconds": round(train_s, 1),
                                 "status": res.status}
        print(gradient, out["runs"][gradient], flush=True)
    b, a = out["runs"]["backprop"], out["runs"]["adjoint"]
    out["accuracy_difference_points"] = round(100 * (a["test_acc"] - b["test_acc"]), 2)
    out["time_ratio_adjoint_over_backprop"] = round(a["training_seconds"] / b["training_seconds"], 2)
    print(json.dumps(out, indent=2))
    (ROOT / "benchmarks" / "adjoint_epoch.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
