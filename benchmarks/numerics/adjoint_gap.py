"""Where the adjoint's gradient departs from backprop's on RKNet, in train mode (as in training).

Trains RKNet (default recipe, RK4 x4, backprop, fp32) for ``--batches`` batches, then on one
training batch of 128 compares all parameter gradients (relative error, cosine similarity):

* adjoint x4 vs backprop x4: what an adjoint-trained run follows instead of backprop's gradient;
* backprop x64 vs backprop x4: the gradient of the ODE (a fine solve) vs that of the 4-step map
  the model is trained and evaluated as, i.e. the discretisation gap;
* adjoint x4 and x64 vs backprop x64: the adjoint converges to the ODE's gradient;
* checkpoint x4 vs backprop x4: equal to float rounding (the control);
* discrete_adjoint x4 vs backprop x4, with 0, 1 and 2 reconstruction refinements: backprop's
  gradient at reconstructed states, so only the reconstruction error is left.

It also reports how well the backward solve reconstructs the state: ``h(t1)`` integrated back to
``t0`` with the same 4 RK4 steps (the adjoint's ``h`` part), against the forward ``h(t0)``.

    python benchmarks/numerics/adjoint_gap.py --batches 100      # writes benchmarks/numerics/adjoint_gap.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import odenet.ode.gradients as adjoint  # noqa: E402
from odenet import RKNet, TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist, normalize  # noqa: E402
from odenet.ode.solvers import SolverSpec  # noqa: E402
from odenet.train.trainer import Trainer  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402


def gradients(state: dict, config, gradient: str, steps: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """All parameter gradients (flattened) of one train-mode forward + backward."""
    model = RKNet(replace(config, gradient=gradient, steps=steps))
    model.load_state_dict(state)
    model.train()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def compare(a: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    return {"relative_error": round(float((a - ref).norm() / ref.norm()), 5),
            "cosine": round(float(F.cosine_similarity(a, ref, dim=0)), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100, help="backprop training batches before the comparison")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    train, test = load_mnist()
    cfg = TrainConfig.from_preset("default", epochs=1, integrator="rk4", steps=4, amp=False, seed=0,
                                  train_size=128 * args.batches, eval_size=1000)
    res = Trainer(cfg, data=(train, test)).run()
    model = res.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(train.labels), generator=g)[:128]
    x, y = normalize(train.images[idx]), train.labels[idx]  # (128, 1, 28, 28), (128,)
    grads = {(m, s): gradients(state, model.config, m, s, x, y)
             for m, s in (("backprop", 4), ("backprop", 64), ("adjoint", 4), ("adjoint", 64), ("checkpoint", 4))}
    rows = {
        "adjoint x4 vs backprop x4": compare(grads["adjoint", 4], grads["backprop", 4]),
        "backprop x64 vs backprop x4": compare(grads["backprop", 64], grads["backprop", 4]),
        "adjoint x4 vs backprop x64": compare(grads["adjoint", 4], grads["backprop", 64]),
        "adjoint x64 vs backprop x64": compare(grads["adjoint", 64], grads["backprop", 64]),
        "checkpoint x4 vs backprop x4": compare(grads["checkpoint", 4], grads["backprop", 4]),
    }
    default = adjoint.RECONSTRUCTION_REFINEMENTS
    for k in (0, 1, 2):
        adjoint.RECONSTRUCTION_REFINEMENTS = k
        name = f"discrete_adjoint x4 ({k} refinements{', the default' if k == default else ''}) vs backprop x4"
        rows[name] = compare(gradients(state, model.config, "discrete_adjoint", 4, x, y), grads["backprop", 4])
    adjoint.RECONSTRUCTION_REFINEMENTS = default
    with torch.no_grad():  # the backward solve's h: forward 4 steps, then back with the same 4
        model.train()
        h0 = model.sampling(x)
        h1 = model.solve(h0).y
        back = SolverSpec(integrator="rk4", steps=4, t0=model.config.t1, t1=model.config.t0)
        h0_rec = back.build(model.gradient).solve(h1).y
    out = {"cpu": cpu_name(), "torch": torch.__version__, "trained_batches": args.batches,
           "test_acc_1000": res.final_test_acc, "gradients": rows,
           "state_reconstruction_relative_error": float((h0_rec - h0).norm() / h0.norm()),
           "state_change_relative": float((h1 - h0).norm() / h0.norm())}
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
