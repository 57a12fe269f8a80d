"""A Neural ODE that classifies points in the plane, optionally augmented (ANODE).

The model lifts each point ``x`` (2,) to ``h0 = [x, 0, ..., 0]`` with ``augment`` extra zero
dimensions, carries it with a learned time-dependent vector field ``f(t, h)`` (a small tanh MLP
with time as an input, as the MNIST model concatenates time as a channel) from ``t0`` to ``t1``
with any of odenet's solvers, and classifies the final state with one linear layer.  Because
the classifier is linear, the flow itself must pull the classes apart: in the plane it cannot
pull the inner disc of concentric circles out of its ring (a flow is a homeomorphism), with one
extra dimension it can lift it past (Dupont et al., "Augmented Neural ODEs", NeurIPS 2019).

Training is full-batch Adam on all training points in one tensor: tiny models on 2 cores are
dominated by Python overhead per step, so one batch per iteration is the fastest way to a good
fit (a default run takes a few seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from odenet.data.toy2d import PointSet
from odenet.errors import ConfigError
from odenet.ode.gradients import solve_spec
from odenet.ode.solvers import Solution, SolverError, SolverSpec
from odenet.plane.settings import SEED_RANGE, PlaneSettings
from odenet.utils import torch_threads

__all__ = ["PlaneConfig", "PlaneField", "PlaneClassifier", "PlaneProgress", "PlaneRun", "train_plane", "MAX_AUGMENT",
           "MAX_WIDTH"]

MAX_AUGMENT = 4
MAX_WIDTH = 256
MAX_ITERATIONS = 5000


@dataclass(frozen=True)
class PlaneConfig(PlaneSettings):
    """Everything a plane training needs besides the points; validated on construction.

    The defaults train moons to >= 97% test accuracy in a few seconds on 2 CPU cores
    (``benchmarks/plane/plane.py``)."""

    augment: int = 0
    width: int = 32
    solver: SolverSpec = field(default_factory=lambda: SolverSpec(integrator="rk4", steps=4))
    gradient: str = "backprop"
    iterations: int = 300
    lr: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0

    _WHOLE = {"augment": (0, MAX_AUGMENT), "width": (2, MAX_WIDTH), "iterations": (1, MAX_ITERATIONS),
              "seed": SEED_RANGE}
    _NON_NEGATIVE = ("lr", "weight_decay")


class PlaneField(nn.Module):
    """``f(t, h)``: a two-hidden-layer tanh MLP on ``[h, t]`` -> ``dh/dt`` (dim,)."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                                 nn.Linear(width, dim))

    def forward(self, t: float, h: torch.Tensor) -> torch.Tensor:
        tt = torch.full_like(h[:, :1], float(t))  # (n, 1): time as an input
        return self.net(torch.cat([h, tt], 1))  # (n, dim)


class PlaneClassifier(nn.Module):
    """Lift (2 -> 2 + augment), flow with ``f`` under a solver, classify linearly."""

    def __init__(self, classes: int, augment: int = 0, width: int = 32, gradient: str = "backprop") -> None:
        super().__init__()
        self.classes, self.augment, self.dim, self.gradient = int(classes), int(augment), 2 + int(augment), gradient
        self.field = PlaneField(self.dim, width)
        self.head = nn.Linear(self.dim, self.classes)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (n, 2) -> ``h0`` (n, 2 + augment) with zeros in the augmented dimensions."""
        return torch.cat([x, x.new_zeros(x.shape[0], self.augment)], 1) if self.augment else x

    def flow(self, x: torch.Tensor, solver: SolverSpec, trajectory: bool = False) -> Solution:
        """Carry the points from ``solver.t0`` to ``solver.t1``; the trajectory holds every step point."""
        return solve_spec(self.field, self.lift(x), solver, self.gradient, trajectory)

    def forward(self, x: torch.Tensor, solver: SolverSpec) -> torch.Tensor:
        """Logits (n, classes) of the points ``x`` (n, 2)."""
        return self.head(self.flow(x, solver).y)


@dataclass(frozen=True)
class PlaneProgress:
    """One point of the training curve."""

    iteration: int
    iterations: int
    loss: float
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    nfe: int  # evaluations of f in this iteration's forward solve


@dataclass
class PlaneRun:
    """A finished (or stopped) plane training: the model, its curve and its final numbers."""

    model: PlaneClassifier
    config: PlaneConfig
    history: list[PlaneProgress]
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    nfe: int  # evaluations per forward solve at the end of training
    stopped: bool = False

    def summary(self) -> dict[str, Any]:
        """What the CLI's ``--json`` prints (plain numbers and names)."""
        s = self.config.solver
        return {"train_accuracy": self.train_accuracy, "test_accuracy": self.test_accuracy,
                "seconds": round(self.seconds, 3), "nfe": self.nfe, "augment": self.config.augment,
                "integrator": s.integrator, "steps": None if s.adaptive else s.steps, "adaptive": s.adaptive,
                "gradient": self.config.gradient, "width": self.config.width, "iterations": len(self.history) and
                self.history[-1].iteration, "stopped": self.stopped}


def accuracy(model: PlaneClassifier, points: PointSet, solver: SolverSpec) -> tuple[float, int]:
    """Fraction of ``points`` classified right under ``solver``, and the evaluations it took."""
    with torch.no_grad():
        sol = model.flow(points.x, solver)
        pred = model.head(sol.y).argmax(1)
    return float((pred == points.y).float().mean()), sol.stats.nfe


def train_plane(config: PlaneConfig, train: PointSet, test: PointSet | None = None,
                on_progress: Callable[[PlaneProgress], None] | None = None, report_every: int = 10,
                stop: threading.Event | None = None) -> PlaneRun:
    """Fit a :class:`PlaneClassifier` to ``train`` (full batch, Adam with a cosine schedule).

    ``on_progress`` receives a :class:`PlaneProgress` every ``report_every`` iterations and at
    the end; setting ``stop`` ends training after the current iteration (the run is marked
    ``stopped``).  A solve that blows up raises :class:`~odenet.ode.solvers.SolverError`
    naming the iteration, never a NaN curve."""
    if test is not None and test.classes > train.classes:
        raise ConfigError(f"the test points have {test.classes} classes, the training points {train.classes}")
    with torch_threads(1):  # a tiny model: more threads only spin (20-80x slower on a busy 2-core machine)
        return _train(config, train, test, on_progress, report_every, stop)


def _train(config: PlaneConfig, train: PointSet, test: PointSet | None,
           on_progress: Callable[[PlaneProgress], None] | None, report_every: int,
           stop: threading.Event | None) -> PlaneRun:
    torch.manual_seed(config.seed)
    model = PlaneClassifier(train.classes, config.augment, config.width, config.gradient)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.iterations, eta_min=config.lr * 0.02)
    history: list[PlaneProgress] = []
    started = time.perf_counter()
    stopped = False
    for it in range(1, config.iterations + 1):
        sol = model.flow(train.x, config.solver)
        logits = model.head(sol.y)  # (n, classes)
        loss = nn.functional.cross_entropy(logits, train.y)
        if not torch.isfinite(loss):
            raise SolverError(f"the loss became NaN or infinite at iteration {it}; use more steps, an adaptive "
                              "solver or a smaller learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        stopped = stop is not None and stop.is_set()
        if it % report_every == 0 or it == config.iterations or stopped:
            train_acc = float((logits.argmax(1) == train.y).float().mean())
            test_acc = accuracy(model, test, config.solver)[0] if test is not None else None
            point = PlaneProgress(it, config.iterations, loss.item(), train_acc, test_acc,
                                  time.perf_counter() - started, sol.stats.nfe)
            history.append(point)
            if on_progress is not None:
                on_progress(point)
        if stopped:
            break
    seconds = time.perf_counter() - started
    model.eval()
    train_acc, nfe = accuracy(model, train, config.solver)
    test_acc = accuracy(model, test, config.solver)[0] if test is not None else None
    return PlaneRun(model, config, history, train_acc, test_acc, seconds, nfe, stopped)
