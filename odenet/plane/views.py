"""What the "Flows in the plane" page shows, computed from a trained model and a solver.

Every view is plain tensors or a DataFrame (no plotting here; ``odenet.app.plots`` draws them):
the decision regions in the input plane, the points and a grid of the plane carried along the
flow at every solver step, the vector field as arrows at one time, and the accuracy and cost
under other solvers ("is it still an ODE?").
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from odenet.data.toy2d import PointSet
from odenet.inspect.analysis import REFERENCE_SOLVER
from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.classifier import PlaneClassifier, accuracy

__all__ = ["Regions", "decision_regions", "Flow", "flow", "grid_lines", "grid_flow", "Arrows", "field_arrows",
           "solver_sweep", "SWEEP_SOLVERS", "REFERENCE", "min_pairwise_distance", "round_trip_error"]

Bounds = tuple[float, float, float, float]  # xmin, xmax, ymin, ymax

REFERENCE = REFERENCE_SOLVER  # the app's one reference solve: "the" ODE's answer
SWEEP_SOLVERS: tuple[SolverSpec, ...] = (
    SolverSpec(integrator="euler", steps=1), SolverSpec(integrator="euler", steps=4),
    SolverSpec(integrator="rk4", steps=1), SolverSpec(integrator="rk4", steps=4),
    SolverSpec(integrator="rk4", steps=16), REFERENCE)


@dataclass(frozen=True)
class Regions:
    """Class probabilities on a ``res`` x ``res`` grid over ``bounds``."""

    xs: torch.Tensor  # (res,)
    ys: torch.Tensor  # (res,)
    label: torch.Tensor  # (res, res) predicted class, rows follow ys
    confidence: torch.Tensor  # (res, res) probability of the predicted class


def _mesh(bounds: Bounds, res: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs = torch.linspace(bounds[0], bounds[1], res)
    ys = torch.linspace(bounds[2], bounds[3], res)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (res, res) each
    return xs, ys, torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (res*res, 2)


def decision_regions(model: PlaneClassifier, solver: SolverSpec, bounds: Bounds, res: int = 80) -> Regions:
    """Which class the model gives every point of the input plane (one solve of ``res**2`` points)."""
    xs, ys, pts = _mesh(bounds, res)
    with torch.no_grad():
        p = torch.softmax(model(pts, solver), 1)  # (res*res, classes)
    conf, label = p.max(1)
    return Regions(xs, ys, label.reshape(res, res), conf.reshape(res, res))


@dataclass(frozen=True)
class Flow:
    """States of points at every solver step: ``states[k]`` is at time ``ts[k]``."""

    ts: list[float]
    states: torch.Tensor  # (steps + 1, n, dim)
    nfe: int
    lines: int = 0  # for a carried grid: how many polylines the points form (see grid_flow)


def flow(model: PlaneClassifier, x: torch.Tensor, solver: SolverSpec) -> Flow:
    """Carry the points ``x`` (n, 2) from t0 to t1 and keep every accepted step point."""
    with torch.no_grad():
        sol = model.flow(x, solver, trajectory=True)
    return Flow(list(sol.ts), sol.stacked(), sol.stats.nfe)


def grid_lines(bounds: Bounds, lines: int = 11, points: int = 40) -> torch.Tensor:
    """Horizontal and vertical lines of the plane as polylines: ``(2 * lines, points, 2)``."""
    xs = torch.linspace(bounds[0], bounds[1], lines)
    ys = torch.linspace(bounds[2], bounds[3], lines)
    s = torch.linspace(0.0, 1.0, points)
    horiz = torch.stack([bounds[0] + s[None, :].expand(lines, -1) * (bounds[1] - bounds[0]),
                         ys[:, None].expand(-1, points)], 2)  # (lines, points, 2)
    vert = torch.stack([xs[:, None].expand(-1, points),
                        bounds[2] + s[None, :].expand(lines, -1) * (bounds[3] - bounds[2])], 2)
    return torch.cat([horiz, vert], 0)


def grid_flow(model: PlaneClassifier, solver: SolverSpec, bounds: Bounds, lines: int = 11,
              points: int = 40) -> Flow:
    """A grid of the plane carried by the flow: :func:`grid_lines` flattened to ``2 * lines * points``
    points, so ``states`` is (steps + 1, 2 * lines * points, dim) and ``lines`` is ``2 * lines``."""
    g = grid_lines(bounds, lines, points)  # (2 * lines, points, 2)
    f = flow(model, g.reshape(-1, 2), solver)
    return Flow(f.ts, f.states, f.nfe, lines=g.shape[0])


@dataclass(frozen=True)
class Arrows:
    """The vector field's first two components at ``t`` on a grid (augmented coordinates at 0)."""

    t: float
    at: torch.Tensor  # (m, 2) arrow tails
    v: torch.Tensor  # (m, 2) field values


def field_arrows(model: PlaneClassifier, t: float, bounds: Bounds, res: int = 15) -> Arrows:
    """``f(t, [x, y, 0...])`` on a ``res`` x ``res`` grid."""
    _, _, pts = _mesh(bounds, res)
    with torch.no_grad():
        v = model.field(float(t), model.lift(pts))[:, :2]  # (res*res, 2)
    return Arrows(float(t), pts, v)


def solver_sweep(model: PlaneClassifier, points: PointSet, solvers: tuple[SolverSpec, ...] = SWEEP_SOLVERS,
                 trained_with: SolverSpec | None = None) -> pd.DataFrame:
    """Accuracy and evaluations of the same model under each solver (and the one it trained with).

    A model that still solves an ODE keeps its accuracy under the fine solvers; one that learned
    the coarse solver's map (a ResNet in disguise) loses it.  A solve that fails is a row with
    its error, not an exception."""
    specs = list(solvers)
    if trained_with is not None and trained_with not in specs:
        specs.insert(0, trained_with)
    rows = []
    for s in specs:
        try:
            acc, nfe = accuracy(model, points, s)
            rows.append({"solver": s.label(), "accuracy": acc, "nfe": nfe, "error": ""})
        except SolverError as exc:
            rows.append({"solver": s.label(), "accuracy": float("nan"), "nfe": 0, "error": str(exc)})
    df = pd.DataFrame(rows)
    df["trained with"] = [trained_with is not None and s == trained_with for s in specs]
    return df


def min_pairwise_distance(states: torch.Tensor) -> float:
    """The smallest distance between two distinct points at any time: ``states`` (T, n, dim).

    Trajectories of an ODE never meet, so for distinct starting points this stays above zero."""
    d = torch.cdist(states, states)  # (T, n, n)
    eye = torch.eye(states.shape[1], dtype=torch.bool)
    return float(d.masked_fill(eye, float("inf")).min())


def round_trip_error(model: PlaneClassifier, x: torch.Tensor, solver: SolverSpec) -> float:
    """Largest distance between ``x`` and the points carried to t1 and back to t0 (the flow's inverse)."""
    with torch.no_grad():
        h1 = model.flow(x, solver).y
        back = solver.replace(t0=solver.t1, t1=solver.t0)
        h0 = back.build(model.field).solve(h1).y
    return float((h0 - model.lift(x)).norm(dim=1).max())
