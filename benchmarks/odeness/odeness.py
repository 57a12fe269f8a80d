"""ODE-ness of the shipped models: accuracy with the training solver vs an accurate reference solve.

Writes ``odenet/model/pretrained/odeness.json`` (read by the Home page and model labels; quoted in docs/benchmarks.md):
for each shipped model, on the full MNIST test set, the training solver's accuracy, the reference
(adaptive dopri5, rtol 1e-5, atol 1e-6) accuracy and evaluations per batch, and the gap.

    .venv/bin/python benchmarks/odeness/odeness.py
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.data.mnist import load_mnist  # noqa: E402
from odenet.inspect.analysis import odeness_gap  # noqa: E402
from odenet.train.checkpoints import PRETRAINED_DIR, file_sha256, load_model, pretrained_models  # noqa: E402
from odenet.utils import atomic_write_text  # noqa: E402


def main() -> None:
    _, test = load_mnist()
    out: dict[str, dict] = {}
    for name, path in pretrained_models().items():
        start = time.perf_counter()
        g = odeness_gap(load_model(path), test)
        out[name] = {"sha256": file_sha256(path), "train_solver": g.train_solver,
                     "train_acc": g.train_acc, "reference_solver": g.reference_solver,
                     "reference_acc": g.reference_acc, "reference_nfe_per_batch": g.reference_nfe,
                     "gap": g.gap, "solver_bound": g.solver_bound, "test_images": len(test),
                     "seconds": round(time.perf_counter() - start, 1)}
        print(name, json.dumps(out[name]), flush=True)
    meta = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    atomic_write_text(PRETRAINED_DIR / "odeness.json", json.dumps({"meta": meta, "models": out}, indent=2))


if __name__ == "__main__":
    main()
