"""What the "Density flows" page shows, computed from a trained :class:`~odenet.plane.density.DensityFlow`.

Plain tensors (no plotting; ``odenet.app.plots`` draws them): the density on a grid at chosen
times between ``t0`` (the Gaussian) and ``t1`` (the model), the probability mass of a grid (the
change of variables checked: it should be 1), and samples carried from ``t0`` to ``t1`` at every
solver step.  A solve that gives NaN or infinite values raises
:class:`~odenet.ode.solvers.SolverError` naming the time; nothing returns a NaN picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.density import DensityFlow, one_thread, until
from odenet.plane.views import Bounds, Flow, _mesh

__all__ = ["DensityFrames", "density_frames", "density_at", "probability_mass", "sample_flow", "frame_times"]


@dataclass(frozen=True)
class DensityFrames:
    """``log_p[k]`` is the log-density (data coordinates) on the grid ``xs`` x ``ys`` at ``times[k]``."""

    xs: torch.Tensor  # (res,)
    ys: torch.Tensor  # (res,)
    times: list[float]
    log_p: torch.Tensor  # (T, res, res), rows follow ys
    nfe: list[int]  # evaluations of each frame's solve

    @property
    def cell(self) -> float:
        """Area of one grid cell."""
        return float((self.xs[1] - self.xs[0]) * (self.ys[1] - self.ys[0]))

    def mass(self, k: int = -1) -> float:
        """Probability of the grid's square at ``times[k]`` (midpoint rule)."""
        return float(self.log_p[k].double().exp().sum()) * self.cell


def frame_times(solver: SolverSpec, frames: int) -> list[float]:
    """``frames`` evenly spaced times from ``solver.t0`` to ``solver.t1`` (both included)."""
    return [solver.t0 + (solver.t1 - solver.t0) * k / (frames - 1) for k in range(frames)]


def density_at(model: DensityFlow, points: torch.Tensor, solver: SolverSpec, t: float) -> tuple[torch.Tensor, int]:
    """``log p_t`` at ``points`` (n, 2) and the solve's evaluations; SolverError if not finite."""
    with torch.no_grad():
        ll = model.log_prob(points, solver, t=t)
    if not bool(torch.isfinite(ll.log_p).all()):
        raise SolverError(f"the density at t={t:.3g} is NaN or infinite under {solver.label()}; use more steps or "
                          "an adaptive solver")
    return ll.log_p, ll.nfe


@one_thread
def density_frames(model: DensityFlow, solver: SolverSpec, bounds: Bounds, frames: int = 11,
                   res: int = 60, times: list[float] | None = None) -> DensityFrames:
    """The density on a ``res`` x ``res`` grid over ``bounds`` at ``frames`` times from t0 to t1
    (or at the given ``times``): one solve per time, from it back to t0."""
    xs, ys, pts = _mesh(bounds, res)
    ts = times if times is not None else frame_times(solver, frames)
    logs, nfes = [], []
    for t in ts:
        lp, nfe = density_at(model, pts, solver, t)
        logs.append(lp.reshape(res, res))
        nfes.append(nfe)
    return DensityFrames(xs, ys, list(ts), torch.stack(logs), nfes)


@one_thread
def probability_mass(model: DensityFlow, solver: SolverSpec, bounds: Bounds, res: int = 150) -> float:
    """The model's density integrated over the square ``bounds`` (midpoint rule on ``res`` x ``res``
    cells): the change of variables says it is 1 less the mass outside the square."""
    xs = torch.linspace(bounds[0], bounds[1], res + 1)
    ys = torch.linspace(bounds[2], bounds[3], res + 1)
    cx, cy = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2  # cell centres
    gy, gx = torch.meshgrid(cy, cx, indexing="ij")
    lp, _ = density_at(model, torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), solver, solver.t1)
    area = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    return float(lp.double().exp().sum()) * area


@one_thread
def sample_flow(model: DensityFlow, solver: SolverSpec, n: int, seed: int = 0, t: float | None = None) -> Flow:
    """``n`` Gaussian draws carried from t0 to ``t`` (default t1), in data coordinates at every solver
    step: ``states`` (steps + 1, n, 2); the last row are samples from the flow's density at ``t``."""
    z0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    if t is not None and t == solver.t0:
        return Flow([solver.t0], model.to_data(z0)[None], 0)
    sol = model.push(z0, solver if t is None else until(solver, t), trajectory=True)
    states = model.to_data(sol.stacked())  # (T, n, 2)
    if not bool(torch.isfinite(states).all()):
        bad = next(k for k in range(len(sol.ts)) if not bool(torch.isfinite(states[k]).all()))
        raise SolverError(f"samples became NaN or infinite at t={sol.ts[bad]:.3g} under {solver.label()}; use more "
                          "steps or an adaptive solver")
    return Flow(list(sol.ts), states, sol.stats.nfe)
