"""Looking inside a trained RKNet: predictions, per-step probabilities, PCA of hidden-state
trajectories, vector-field norms, and accuracy across a grid of solvers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from .data import MNISTSplit
from .models import RKNet
from .solvers import SolverSpec
from .training import evaluate
from .utils import torch_threads

__all__ = ["Prediction", "predict", "StepView", "step_view", "pca_project", "robustness_grid"]


@dataclass
class Prediction:
    """Class probabilities at t1 plus, per solver step time, the head's probabilities."""

    probs: torch.Tensor  # (N, classes)
    ts: torch.Tensor  # (T,)
    step_probs: torch.Tensor  # (T, N, classes)
    nfe: int
    seconds: float

    @property
    def digit(self) -> int:
        return int(self.probs[0].argmax())

    @property
    def confidence(self) -> float:
        return float(self.probs[0].max())


@torch.no_grad()
def predict(model: RKNet, x: torch.Tensor, solver: SolverSpec | None = None, threads: int | None = 1) -> Prediction:
    """Run the model on (N, 1, 28, 28) inputs once, keeping every solver step's prediction.

    ``threads=1`` (default): a single image is fastest on one core and then does not fight a
    training job or the browser for the other (measured in the app: ~200 ms -> ~15 ms per
    prediction while chromium renders on the same 2-core machine).  None keeps torch's setting.
    """
    start = time.perf_counter()
    with torch_threads(threads) if threads else contextlib.nullcontext():
        traj = model.trajectory(x.to(next(model.parameters()).device), solver)
    step_probs = traj.logits.float().softmax(-1).cpu()  # (T, N, classes)
    return Prediction(step_probs[-1], traj.ts, step_probs, traj.stats.nfe, time.perf_counter() - start)


@dataclass
class StepView:
    """Hidden-state trajectory of a batch with everything the Trajectories page plots."""

    ts: torch.Tensor  # (T,)
    states: torch.Tensor  # (T, N, C, H, W)
    step_probs: torch.Tensor  # (T, N, classes)
    state_norm: torch.Tensor  # (T, N)   ||h(t)|| per image
    field_norm: torch.Tensor  # (T, N)   ||f(t, h(t))|| per image
    preds: torch.Tensor  # (N,)


@torch.no_grad()
def step_view(model: RKNet, x: torch.Tensor, solver: SolverSpec | None = None) -> StepView:
    """Trajectory of ``x`` (N, 1, 28, 28) under ``solver`` plus state and vector-field norms at
    each step time.  ``model`` must be in eval mode (BatchNorm uses running statistics), as
    every model the app loads is.
    """
    traj = model.trajectory(x, solver)
    states = traj.states  # (T, N, C, H, W)
    fn = torch.stack([model.gradient(float(t), h).flatten(1).norm(dim=1) for t, h in zip(traj.ts, states)])
    probs = traj.logits.softmax(-1)
    return StepView(traj.ts, states, probs, states.flatten(2).norm(dim=2), fn, probs[-1].argmax(-1))


def pca_project(states: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA fitted across all steps and images: (T, N, C, H, W) -> coords (T, N, k) and the
    explained-variance ratio of each component (k,)."""
    t_len, n = states.shape[:2]
    flat = states.reshape(t_len * n, -1).double()  # (T*N, D)
    centred = flat - flat.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(k, vh.shape[0])
    coords = centred @ vh[:k].T  # (T*N, k)
    var = s**2
    return coords.reshape(t_len, n, k).float(), (var[:k] / var.sum()).float()


def robustness_grid(model: RKNet, split: MNISTSplit, integrators: list[str], steps: list[int],
                    progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Test accuracy of ``model`` for every (integrator, steps) pair on ``split``, each solved on
    the model's own interval.  Returns columns integrator, steps, nfe (per forward pass),
    accuracy, loss, seconds.  The model is not changed."""
    base = model.config.solver
    rows = []
    total = len(integrators) * len(steps)
    for i, name in enumerate(integrators):
        for j, n in enumerate(steps):
            if progress is not None:
                progress((i * len(steps) + j) / total, f"{name} x{n}")
            spec = base.replace(integrator=name, steps=n, adaptive=False)
            start = time.perf_counter()
            loss, acc = evaluate(model, split, solver=spec)
            rows.append(dict(integrator=name, steps=n, nfe=spec.nfe_estimate, accuracy=acc, loss=loss,
                             seconds=time.perf_counter() - start))
    if progress is not None:
        progress(1.0, "done")
    return pd.DataFrame(rows)
