"""Density flows: the test NLL of the default CNF training (what `python -m odenet density` and the page
run) against a fitted Gaussian, a Gaussian KDE and torchdiffeq's examples/cnf.py recipe, on the same
ring-plus-blobs points and the same 2-minute budget.

    python benchmarks/plane/density.py            # -> benchmarks/plane/density.json

For each seed (the data's and the model's): ringblobs, 1,000 points (700 train, 300 test), noise 0.05.

- ``gaussian``: the Gaussian fitted to the training points (mean, covariance).
- ``kde``: a Gaussian kernel density estimate on the training points, bandwidth chosen by the
  likelihood of 20% held-out training points (odenet.plane.density.kde_nll).
- ``odenet``: :class:`DensityConfig`'s defaults (rk4 x4, kinetic 0.05, Jacobian 0.1, 800 full-batch
  iterations); its test NLL under the training solver and under the reference solver (adaptive
  dopri5, rtol 1e-5), with the evaluations that solve needs.
- ``odenet_unregularised``: the same without the regularisers (the page's lesson: NFE and NLL).
- ``torchdiffeq_recipe``: a faithful re-implementation of torchdiffeq's ``examples/cnf.py`` (v0.2.5):
  the hypernetwork CNF (width 64, hidden 32), base N(0, 0.1 I) at t0 = 0, data at t1 = 10, Adam lr 1e-3,
  512 points a batch (drawn from the training points: the recipe draws fresh ones from its
  generator), ``odeint`` dopri5 at rtol = atol = 1e-5, backprop through the solver, 1,000 iterations
  or the budget, whichever ends first, on the raw coordinates (it does not standardise).  Test NLL
  with the same solve.
- seed 0 also: the odenet defaults with minibatches of 512 points (1,600 iterations, about the
  same arithmetic) against full batch: the measured reason the library trains full batch.

Everything trains on one torch thread (the library's setting; the recipe gets the same).  The
machine's load (``/proc/loadavg``) is recorded before and after: the 2-core machines are often shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.data.toy2d import make_dataset, split  # noqa: E402
from odenet.plane.density import DensityConfig, gaussian_nll, kde_nll, train_density  # noqa: E402
from odenet.utils import torch_threads  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402

BUDGET_S = 120.0
DATA = dict(name="ringblobs", n=1000, noise=0.05)


# -- torchdiffeq's examples/cnf.py, re-implemented (same architecture, loss, solver and settings) ------
class HyperNetwork(nn.Module):
    """The recipe's hypernetwork: time -> the weights W (width, 2, 1), bias B (width, 1, 1) and gated U."""

    def __init__(self, in_out_dim: int = 2, hidden_dim: int = 32, width: int = 64) -> None:
        super().__init__()
        self.blocksize, self.width, self.dim = width * in_out_dim, width, in_out_dim
        self.fc1 = nn.Linear(1, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 3 * self.blocksize + width)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(t.reshape(1, 1)))))).reshape(-1)
        b = self.blocksize
        w = p[:b].reshape(self.width, self.dim, 1)
        u = p[b:2 * b].reshape(self.width, 1, self.dim) * torch.sigmoid(p[2 * b:3 * b].reshape(self.width, 1, self.dim))
        bias = p[3 * b:].reshape(self.width, 1, 1)
        return w, bias, u


class RecipeCNF(nn.Module):
    """The recipe's CNF: dz/dt = mean over ``width`` units of U tanh(W z + B); dlogp/dt = -trace(df/dz),
    the trace by one autograd call per dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.hyper_net = HyperNetwork()

    def forward(self, t: torch.Tensor, states: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = states[0]
        with torch.set_grad_enabled(True):
            z.requires_grad_(True)
            w, b, u = self.hyper_net(t)
            zz = z.unsqueeze(0).repeat(self.hyper_net.width, 1, 1)  # (width, n, 2)
            dz = torch.matmul(torch.tanh(torch.matmul(zz, w) + b), u).mean(0)  # (n, 2)
            trace = sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(2))
        return dz, -trace.view(-1, 1)


def _recipe_log_prob(func: RecipeCNF, x: torch.Tensor, odeint, base) -> torch.Tensor:
    zeros = torch.zeros(len(x), 1)
    z_t, logp_t = odeint(func, (x, zeros), torch.tensor([10.0, 0.0]), atol=1e-5, rtol=1e-5, method="dopri5")
    return base.log_prob(z_t[-1]) - logp_t[-1].view(-1)


def torchdiffeq_recipe(train: torch.Tensor, test: torch.Tensor, seed: int, budget: float) -> dict:
    from torchdiffeq import odeint

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    func = RecipeCNF()
    opt = torch.optim.Adam(func.parameters(), lr=1e-3)
    base = torch.distributions.MultivariateNormal(torch.zeros(2), 0.1 * torch.eye(2))
    started = time.perf_counter()
    it = 0
    while it < 1000 and time.perf_counter() - started < budget:
        it += 1
        opt.zero_grad()
        x = train[torch.randperm(len(train), generator=g)[:512]]
        loss = -_recipe_log_prob(func, x, odeint, base).mean()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        test_nll = float(-_recipe_log_prob(func, test, odeint, base).mean())
    return {"iterations": it, "seconds": round(seconds, 1), "test_nll": test_nll}


# -- the measurement ----------------------------------------------------------------------------------
def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (``uptime``'s numbers)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def odenet_row(cfg: DensityConfig, train, test) -> dict:
    run = train_density(cfg, train, test)
    return {"seconds": round(run.seconds, 1), "iterations": run.history[-1].iteration, "test_nll": run.test_nll,
            "train_nll": run.train_nll, "reference_test_nll": run.reference_nll, "reference_nfe": run.reference_nfe,
            "nfe": run.nfe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds of training for the recipe")
    ap.add_argument("--no-recipe", action="store_true", help="skip torchdiffeq's recipe")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load_before = loadavg()
    rows = []
    with torch_threads(1):
        for seed in range(args.seeds):
            train, test = split(make_dataset(DATA["name"], n=DATA["n"], noise=DATA["noise"], seed=seed), seed=seed)
            kde, bandwidth = kde_nll(train.x, test.x, seed=seed)
            row = {"seed": seed, "gaussian_test_nll": gaussian_nll(train.x, test.x), "kde_test_nll": kde,
                   "kde_bandwidth": bandwidth,
                   "odenet": odenet_row(DensityConfig(seed=seed), train, test),
                   "odenet_unregularised": odenet_row(DensityConfig(seed=seed, kinetic=0.0, jacobian=0.0), train,
                                                      test)}
            if seed == 0:
                row["odenet_minibatch_512"] = odenet_row(DensityConfig(seed=seed, batch_size=512, iterations=1600),
                                                         train, test)
            if not args.no_recipe:
                row["torchdiffeq_recipe"] = torchdiffeq_recipe(train.x, test.x, seed, args.budget)
            rows.append(row)
            print(json.dumps(row), flush=True)
    med = lambda key, field: statistics.median(r[key][field] for r in rows)  # noqa: E731
    gauss = statistics.median(r["gaussian_test_nll"] for r in rows)
    kde = statistics.median(r["kde_test_nll"] for r in rows)
    worst_gap = max(r["odenet"]["reference_test_nll"] - r["kde_test_nll"] for r in rows)
    worst_gain = min(r["gaussian_test_nll"] - r["odenet"]["reference_test_nll"] for r in rows)
    summary = {
        "budget_s": args.budget, "median_gaussian_test_nll": gauss, "median_kde_test_nll": kde,
        "median_odenet_test_nll": med("odenet", "test_nll"),
        "median_odenet_reference_test_nll": med("odenet", "reference_test_nll"),
        "median_odenet_seconds": med("odenet", "seconds"), "max_odenet_seconds": max(r["odenet"]["seconds"]
                                                                                    for r in rows),
        "median_odenet_reference_nfe": med("odenet", "reference_nfe"),
        "median_unregularised_reference_test_nll": med("odenet_unregularised", "reference_test_nll"),
        "median_unregularised_reference_nfe": med("odenet_unregularised", "reference_nfe"),
        "worst_gain_over_gaussian": worst_gain, "worst_gap_to_kde": worst_gap,
        "met": worst_gain >= 0.5 and worst_gap <= 0.3 and all(r["odenet"]["seconds"] <= args.budget for r in rows),
    }
    if not args.no_recipe:
        summary["median_recipe_test_nll"] = med("torchdiffeq_recipe", "test_nll")
        summary["median_recipe_seconds"] = med("torchdiffeq_recipe", "seconds")
        summary["median_recipe_iterations"] = med("torchdiffeq_recipe", "iterations")
    print(json.dumps(summary))
    out = {"machine": cpu_name(), "threads": 1, "torch": torch.__version__, "load_before": load_before,
           "load_after": loadavg(), "data": {**DATA, "train": 700, "test": 300},
           "config": DensityConfig().to_dict(), "summary": summary, "runs": rows}
    if not args.no_write:
        Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
