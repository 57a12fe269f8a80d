"""Test ODEs with exact (or reference) solutions, and empirical convergence orders.

Used by the tests and by the Integrators page.  States are float64 tensors of shape (d,).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from odenet.ode.integrators import RungeKuttaMethod, get_method
from odenet.ode.solvers import AdaptiveStepSolver, FixedStepSolver

__all__ = ["ODEProblem", "PROBLEMS", "get_problem", "reference_solution", "convergence", "convergence_steps",
           "ConvergenceResult", "solve_fixed", "FixedRun", "plot_range", "BLOWUP_FACTOR"]

Exact = Callable[[torch.Tensor], torch.Tensor]  # ts (T,) -> ys (T, d)


@dataclass(frozen=True)
class ODEProblem:
    """An initial value problem y' = f(t, y), y(t0) = y0 on [t0, t1]."""

    key: str
    title: str
    f: Callable[[float, torch.Tensor], torch.Tensor]
    y0: tuple[float, ...]
    t0: float
    t1: float
    exact: Exact | None
    labels: tuple[str, ...]
    equation: str
    # fixed steps at which no built-in method blows up (FixedRun.blew_up) and the orders still show
    # (the Integrators page starts each problem here; 10 steps of size 1 blow Van der Pol up)
    default_steps: int = 10

    def y0_tensor(self) -> torch.Tensor:
        return torch.tensor(self.y0, dtype=torch.float64)

    def solution(self, ts: torch.Tensor) -> torch.Tensor:
        """Exact solution at ``ts`` (T,) -> (T, d); a tight dopri5 reference where none is known."""
        if self.exact is not None:
            return self.exact(ts.to(torch.float64))
        return reference_solution(self, ts)


def _decay_exact(ts: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * ts).unsqueeze(1)


def _harmonic_exact(ts: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.cos(ts), -torch.sin(ts)], 1)


_SPIRAL = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)


def _spiral_exact(ts: torch.Tensor) -> torch.Tensor:
    r = torch.exp(-0.1 * ts)
    return torch.stack([r * (2 * torch.cos(ts)), r * (2 * torch.sin(ts))], 1)


def _nonauto_exact(ts: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(ts)).unsqueeze(1)


def _vdp(t: float, y: torch.Tensor, mu: float = 1.0) -> torch.Tensor:
    return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


def _lv(t: float, y: torch.Tensor) -> torch.Tensor:
    a, b, c, d = 1.5, 1.0, 3.0, 1.0
    return torch.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


PROBLEMS: dict[str, ODEProblem] = {p.key: p for p in [
    ODEProblem("decay", "Exponential decay", lambda t, y: -0.5 * y, (1.0,), 0.0, 4.0, _decay_exact, ("y",),
               r"y' = -\tfrac12 y,\quad y(t) = e^{-t/2}"),
    ODEProblem("harmonic", "Harmonic oscillator", lambda t, y: torch.stack([y[1], -y[0]]), (1.0, 0.0), 0.0,
               2 * math.pi, _harmonic_exact, ("position", "velocity"),
               r"x'' = -x,\quad x(t) = \cos t", default_steps=20),
    ODEProblem("spiral", "2-D linear spiral", lambda t, y: _SPIRAL @ y, (2.0, 0.0), 0.0, 10.0, _spiral_exact,
               ("y1", "y2"), r"y' = \begin{pmatrix}-0.1 & -1\\ 1 & -0.1\end{pmatrix} y", default_steps=20),
    ODEProblem("nonautonomous", "Time-dependent growth", lambda t, y: math.cos(t) * y, (1.0,), 0.0, 4.0,
               _nonauto_exact, ("y",), r"y' = \cos(t)\, y,\quad y(t) = e^{\sin t}"),
    ODEProblem("vanderpol", "Van der Pol (mu = 1)", _vdp, (2.0, 0.0), 0.0, 10.0, None, ("x", "x'"),
               r"x'' = \mu (1 - x^2) x' - x", default_steps=50),
    ODEProblem("lotka_volterra", "Lotka-Volterra", _lv, (10.0, 5.0), 0.0, 10.0, None, ("prey", "predator"),
               r"x' = 1.5x - xy,\quad y' = -3y + xy", default_steps=200),
]}

# Dense reference per problem: every accepted dopri5 step at rtol = atol = 1e-12 with f at each
# point, interpolated by cubic Hermite polynomials.  Read-only once built; the lock only guards
# building it (a server has many sessions).
_DENSE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
_DENSE_LOCK = threading.Lock()
REFERENCE_RTOL = 1e-12
REFERENCE_MAX_STEP = 0.01  # relative to t1 - t0; keeps the Hermite interpolation error < ~1e-12


def get_problem(key: str) -> ODEProblem:
    try:
        return PROBLEMS[key]
    except KeyError:
        raise ValueError(f"unknown problem {key!r}; choose one of {', '.join(PROBLEMS)}") from None


def _dense_reference(problem: ODEProblem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ts, ys, fs) of one tight dopri5 solve over the whole interval (cached per problem)."""
    key = (problem.key, problem.y0, problem.t0, problem.t1)
    with _DENSE_LOCK:
        if key not in _DENSE:
            span = problem.t1 - problem.t0
            sol = AdaptiveStepSolver(problem.f, problem.t0, problem.t1, "dopri5", rtol=REFERENCE_RTOL,
                                     atol=REFERENCE_RTOL, max_step=REFERENCE_MAX_STEP * span,
                                     max_steps=200_000).solve(problem.y0_tensor(), trajectory=True)
            ts = torch.tensor(sol.ts, dtype=torch.float64)
            ys = sol.stacked().to(torch.float64)
            fs = torch.stack([problem.f(float(t), y) for t, y in zip(ts, ys)]).to(torch.float64)
            _DENSE[key] = (ts, ys, fs)
        return _DENSE[key]


def reference_solution(problem: ODEProblem, ts: torch.Tensor) -> torch.Tensor:
    """Dopri5 at rtol = atol = 1e-12 (steps at most 1% of the interval), solved once per problem
    and evaluated at ``ts`` (T,) by cubic Hermite interpolation between accepted steps: (T, d)."""
    grid, ys, fs = _dense_reference(problem)
    t = ts.to(torch.float64).clamp(grid[0], grid[-1])
    i = torch.searchsorted(grid, t, right=True).clamp(1, len(grid) - 1) - 1
    h = (grid[i + 1] - grid[i]).unsqueeze(1)
    s = ((t - grid[i]).unsqueeze(1) / h)
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * ys[i] + h10 * h * fs[i] + h01 * ys[i + 1] + h11 * h * fs[i + 1]


def plot_range(problem: ODEProblem, margin: float = 0.5) -> tuple[float, float]:
    """A y-axis range that shows the problem's solution with ``margin`` (a fraction of its span)
    on either side: numerical curves that blow up are clipped to it."""
    ys = _dense_reference(problem)[1] if problem.exact is None else problem.exact(
        torch.linspace(problem.t0, problem.t1, 400, dtype=torch.float64))
    lo, hi = float(ys.min()), float(ys.max())
    pad = margin * max(hi - lo, 1e-9)
    return lo - pad, hi + pad


BLOWUP_FACTOR = 10.0  # a global error above this many times the solution's size counts as a blow-up


@dataclass
class FixedRun:
    ts: torch.Tensor  # (steps + 1,)
    ys: torch.Tensor  # (steps + 1, d)
    nfe: int
    seconds: float
    error: float  # global error: max over step times of the max-norm error (inf after a blow-up)
    blowup_step: int | None = None  # first step (1-based) whose state is NaN or infinite
    scale: float = 1.0  # size of the exact solution on the grid (max |y|), the yardstick for a "huge" error

    @property
    def blew_up(self) -> bool:
        """True when a state went non-finite or the error exceeds ``BLOWUP_FACTOR`` x the solution's size."""
        return self.blowup_step is not None or not self.error <= BLOWUP_FACTOR * self.scale

    def blowup_flag(self) -> str:
        """A short table entry: "no", or why the run counts as blown up."""
        if self.blowup_step is not None:
            k = self.blowup_step
            return f"⚠ NaN/inf at step {k} (t = {float(self.ts[k]):.3g})"
        if self.blew_up:
            return f"⚠ error {self.error:.1e} > {BLOWUP_FACTOR:g}x the solution"
        return "no"

    @property
    def finite(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ts, ys) up to the last finite state: what can be plotted."""
        n = len(self.ts) if self.blowup_step is None else self.blowup_step
        return self.ts[:n], self.ys[:n]

    def blowup_message(self, name: str) -> str | None:
        """A sentence naming the step and time where the solution blew up, or None."""
        if self.blowup_step is None:
            return None
        k = self.blowup_step
        return (f"{name} with {len(self.ts) - 1} steps blew up: the state became NaN or infinite at step {k} "
                f"(t = {float(self.ts[k]):.3g}, step size {float(self.ts[1] - self.ts[0]):.3g}); plotted up to "
                f"step {k - 1}. Use more steps.")


def solve_fixed(problem: ODEProblem, method: RungeKuttaMethod | str, steps: int) -> FixedRun:
    """Solve ``problem`` with ``steps`` fixed steps; trajectory, NFE, wall time and global error.

    A solution that blows up is returned, not raised: ``blowup_step`` names the first step with
    a non-finite (or overflowing, > 1e150) state and ``error`` is infinite; ``blew_up`` also
    flags a finite but huge error.
    """
    solver = FixedStepSolver(problem.f, problem.t0, problem.t1, get_method(method), steps=steps, check_finite=False)
    t = time.perf_counter()
    with torch.no_grad():
        sol = solver.solve(problem.y0_tensor(), trajectory=True)
    seconds = time.perf_counter() - t
    ts = torch.tensor(sol.ts, dtype=torch.float64)
    ys = sol.stacked()
    bad = (~torch.isfinite(ys) | (ys.abs() > 1e150)).any(1).nonzero()
    if len(bad):
        return FixedRun(ts, ys, sol.stats.nfe, seconds, math.inf, int(bad[0]))
    exact = problem.solution(ts)
    return FixedRun(ts, ys, sol.stats.nfe, seconds, float((ys - exact).abs().max()), scale=float(exact.abs().max()))



@dataclass
class ConvergenceResult:
    method: str
    nominal_order: int
    steps: list[int]
    errors: list[float]
    nfe: list[int]
    fitted_order: float  # least-squares slope of -log(error) vs log(steps)


def convergence_steps(order: int) -> tuple[int, ...]:
    """Halving step sizes that sit in the asymptotic range for a method of ``order``
    (coarse enough to stay above round-off in float64)."""
    return {1: (128, 256, 512, 1024), 2: (64, 128, 256, 512)}.get(order, (32, 64, 128, 256))


def convergence(problem: ODEProblem, method: RungeKuttaMethod | str,
                steps: tuple[int, ...] | None = None) -> ConvergenceResult:
    """Global error (max over the grid) for each step count and the fitted log-log slope (empirical order).

    Errors at round-off level (< 1e-13) and blow-ups (infinite) are excluded from the fit.
    """
    m = get_method(method)
    steps = steps or convergence_steps(m.order)
    runs = [solve_fixed(problem, m, n) for n in steps]
    errors = [r.error for r in runs]
    pts = [(math.log(n), math.log(e)) for n, e in zip(steps, errors) if 1e-13 < e < math.inf]
    if len(pts) >= 2:
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        fitted = -slope
    else:
        fitted = float("nan")
    return ConvergenceResult(m.name, m.order, list(steps), errors, [r.nfe for r in runs], fitted)
