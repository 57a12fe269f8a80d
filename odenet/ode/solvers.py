"""Solvers that integrate an initial value problem from ``t0`` to ``t1``.

``FixedStepSolver`` keeps the notebook's interface and semantics (``steps`` or
``step_size``), without float residue steps.  ``AdaptiveStepSolver`` uses an embedded
pair with a separate step-size controller.  Both return a :class:`Solution` with the
trajectory and :class:`SolverStats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import Any

import torch

from odenet.errors import OdenetError
from odenet.ode.integrators import (
    METHODS,
    RungeKuttaMethod,
    get_method,
    method_from_spec,
    method_key,
    method_spec,
    rk_step,
)

__all__ = [
    "SolverError",
    "MaxStepsExceeded",
    "StepSizeTooSmall",
    "NonFiniteState",
    "SolverStats",
    "StepRecord",
    "Solution",
    "SolverSpec",
    "FixedStepSolver",
    "IController",
    "AdaptiveStepSolver",
    "MAX_FIXED_STEPS",
]

VectorField = Callable[[float, Any], Any]


class SolverError(OdenetError, ValueError):
    """Invalid solver argument or failed solve; the message names the argument and value."""


class MaxStepsExceeded(SolverError):
    """The adaptive solver needed more than ``max_steps`` steps."""


class StepSizeTooSmall(SolverError):
    """The adaptive controller asked for a step below ``min_step``."""


class NonFiniteState(SolverError):
    """The solution became NaN or infinite (steps too large for the problem, or a bad f)."""


def _check_finite(y: Any, where: str) -> None:
    if isinstance(y, torch.Tensor) and not bool(torch.isfinite(y).all()):
        raise NonFiniteState(f"the state became NaN or infinite {where}; use smaller steps (or check f)")


@dataclass
class SolverStats:
    """Counts of one solve: vector-field evaluations and steps."""

    nfe: int = 0
    steps: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class StepRecord:
    """One attempted step: where it started, its size, whether it was accepted, the error
    ratio (error norm / tolerance; None for fixed steps) and the evaluations it cost."""

    t: float
    dt: float
    accepted: bool
    error_ratio: float | None
    nfe: int


@dataclass
class Solution:
    """Result of a solve: ``ts`` (step times, t0 first), ``ys`` (states at ``ts``), stats and
    the step log (every attempted step, rejected ones included).

    ``ys`` is empty unless the trajectory was requested; ``y`` is always the final state.
    """

    y: Any
    ts: list[float] = field(default_factory=list)
    ys: list[Any] = field(default_factory=list)
    stats: SolverStats = field(default_factory=SolverStats)
    log: list[StepRecord] = field(default_factory=list)

    def stacked(self) -> torch.Tensor:
        """States stacked on a new leading time axis: shape ``(len(ts), *y.shape)``."""
        return torch.stack(list(self.ys))


def _check_time(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise SolverError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SolverError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SolverError(f"{name} must be finite, got {value}")
    return value


def _check_interval(t0: Any, t1: Any) -> tuple[float, float]:
    t0, t1 = _check_time("t0", t0), _check_time("t1", t1)
    if t0 == t1:
        raise SolverError(f"t0 and t1 must differ (empty interval), got t0 = t1 = {t0}")
    return t0, t1


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value <= 0:
        raise SolverError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


MAX_FIXED_STEPS = 1_000_000  # a grid longer than this is a mistake (and would exhaust memory)


def fixed_grid(t0: float, t1: float, steps: int | None, step_size: float | None) -> list[float]:
    """Step times from ``t0`` to ``t1`` inclusive (``len = number of steps + 1``).

    ``steps`` splits the interval evenly.  ``step_size`` takes whole steps and one shorter
    residual step if needed; a residual below 1e-9 of the step is float noise and dropped,
    so ``step_size=0.1`` on [0, 1] gives exactly 10 steps.  Times are computed as
    ``t0 + i * h`` (no accumulated rounding) and the last one is exactly ``t1``.
    """
    if steps is None and step_size is None:
        raise SolverError("give either steps or step_size (both are None)")
    if steps is not None and step_size is not None:
        raise SolverError(f"give either steps or step_size, not both (steps={steps!r}, step_size={step_size!r})")
    length = t1 - t0
    sign = 1.0 if length > 0 else -1.0
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, Integral):
            raise SolverError(f"steps must be a positive integer, got {steps!r}")
        if steps <= 0:
            raise SolverError(f"steps must be a positive integer, got {steps}")
        if steps > MAX_FIXED_STEPS:
            raise SolverError(f"steps={steps} is more than the limit of {MAX_FIXED_STEPS:,} steps")
        n = int(steps)
        return [t0 + length * i / n for i in range(n)] + [t1]
    h = _check_positive("step_size", step_size)
    if h > abs(length) * (1 + 1e-12):
        raise SolverError(f"step_size={step_size!r} is larger than the interval |t1 - t0| = {abs(length)}")
    ratio = abs(length) / h
    if ratio > MAX_FIXED_STEPS:
        raise SolverError(f"step_size={step_size!r} on an interval of length {abs(length):g} needs {ratio:.3g} steps, "
                          f"more than the limit of {MAX_FIXED_STEPS:,}")
    n_full = math.floor(ratio + 1e-9)
    ts = [t0 + sign * h * i for i in range(n_full)]
    if abs(length) - n_full * h > 1e-9 * h:
        ts.append(t0 + sign * h * n_full)
    return ts + [t1]


class FixedStepSolver:
    """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` with a fixed grid.

    ``FixedStepSolver(f, t0, t1, method, steps=None, step_size=None)`` as in the notebook;
    ``method`` may be a :class:`RungeKuttaMethod` or a registered short name.  ``t1 < t0``
    integrates backwards.
    """

    name = "FixedStepSolver"

    def __init__(self, f: VectorField, t0: float, t1: float, method: RungeKuttaMethod | str,
                 steps: int | None = None, step_size: float | None = None, check_finite: bool = True) -> None:
        self.f = f
        self.check_finite = check_finite  # one host sync per solve; RKNet turns it off (the loss is checked)
        self.t0, self.t1 = _check_interval(t0, t1)
        self.method = get_method(method)
        self.ts = fixed_grid(self.t0, self.t1, steps, step_size)
        self.hs = [b - a for a, b in zip(self.ts[:-1], self.ts[1:])]
        self.stats = SolverStats()

    @property
    def steps(self) -> int:
        return len(self.hs)

    @property
    def nfe(self) -> int:
        """Vector-field evaluations one solve costs: stages x steps, less one per step after the
        first for FSAL tableaux (their last stage is the next step's first)."""
        return self.method.nfe(len(self.hs))

    def solve(self, y: Any, trajectory: bool = False) -> Solution:
        """Integrate from ``y`` at ``t0``; ``trajectory=True`` keeps every step's state."""
        tab = self.method.tableau
        ys = [y] if trajectory else []
        log = []
        k1 = None
        for t, h in zip(self.ts[:-1], self.hs):
            cost = tab.stages - (k1 is not None)
            y, _, k_last = rk_step(tab, self.f, t, h, y, k1)
            k1 = k_last if tab.fsal else None
            log.append(StepRecord(t, h, True, None, cost))
            if trajectory:
                ys.append(y)
        n = len(self.hs)
        self.stats = SolverStats(nfe=self.nfe, steps=n, accepted=n, rejected=0)
        if self.check_finite:
            _check_finite(y, f"at t1={self.t1} after {n} steps of {self.method.name} (step {self.hs[0]:.3g})")
        return Solution(y=y, ts=list(self.ts) if trajectory else [], ys=ys, stats=self.stats, log=log)

    def integrate(self, y: Any) -> Any:
        """Final state at ``t1`` (the notebook's ``solver.integrate(x)``)."""
        return self.solve(y).y


@dataclass(frozen=True)
class IController:
    """Integral step-size controller: ``dt_new = dt * safety * err^(-1/(q+1))`` clipped.

    ``q`` is the lower order of the embedded pair.  Kept apart from the method so a
    different controller (e.g. PI) can be swapped in.
    """

    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.safety <= 1):
            raise SolverError(f"safety must be in (0, 1], got {self.safety!r}")
        if not (0 < self.min_factor < 1):
            raise SolverError(f"min_factor must be in (0, 1), got {self.min_factor!r}")
        if not (self.max_factor > 1):
            raise SolverError(f"max_factor must be > 1, got {self.max_factor!r}")

    def propose(self, dt: float, err_norm: float, error_order: int) -> tuple[bool, float]:
        """Accept the step if ``err_norm <= 1``; return the next step size either way."""
        accept = err_norm <= 1.0
        if err_norm == 0.0:
            factor = self.max_factor
        elif not math.isfinite(err_norm):
            factor = self.min_factor
        else:
            factor = self.safety * err_norm ** (-1.0 / (error_order + 1))
            factor = min(self.max_factor, max(self.min_factor, factor))
        if not accept:
            factor = min(factor, 1.0)
        return accept, dt * factor


@torch.no_grad()
def _error_norm(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float) -> float:
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return float(torch.sqrt(torch.mean((err / scale) ** 2)))


class AdaptiveStepSolver:
    """Integrate with an embedded pair, choosing step sizes to meet ``rtol``/``atol``.

    Error is measured as the RMS of ``err / (atol + rtol * max(|y_n|, |y_n+1|))`` and a step
    is accepted when it is <= 1.  ``max_steps`` bounds attempted steps so nothing hangs.
    """

    name = "AdaptiveStepSolver"

    def __init__(self, f: VectorField, t0: float, t1: float, method: RungeKuttaMethod | str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-6, first_step: float | None = None,
                 min_step: float = 0.0, max_step: float = math.inf, max_steps: int = 10_000,
                 controller: IController | None = None, safety: float | None = None) -> None:
        self.f = f
        self.t0, self.t1 = _check_interval(t0, t1)
        self.method = get_method(method)
        if not self.method.adaptive:
            raise SolverError(
                f"method={self.method.name!r} has no embedded error estimate; the adaptive solver needs "
                f"an embedded pair such as 'bosh3' or 'dopri5'"
            )
        self.rtol = _check_positive("rtol", rtol)
        self.atol = _check_positive("atol", atol)
        self.first_step = None if first_step is None else _check_positive("first_step", first_step)
        if isinstance(min_step, bool) or not isinstance(min_step, Real) or not (0 <= min_step < math.inf):
            raise SolverError(f"min_step must be a finite number >= 0, got {min_step!r}")
        self.min_step = float(min_step)
        if isinstance(max_step, bool) or not isinstance(max_step, Real) or not max_step > 0:
            raise SolverError(f"max_step must be a positive number, got {max_step!r}")
        self.max_step = float(max_step)
        if self.max_step < self.min_step:
            raise SolverError(f"max_step={max_step!r} must be >= min_step={min_step!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, Integral) or max_steps < 1:
            raise SolverError(f"max_steps must be a positive integer, got {max_steps!r}")
        self.max_steps = int(max_steps)
        if controller is not None and safety is not None:
            raise SolverError("give either controller or safety, not both")
        self.controller = controller or IController(safety=0.9 if safety is None else safety)
        self.stats = SolverStats()

    def _initial_step(self, y0: torch.Tensor, f0: torch.Tensor, direction: float, stats: SolverStats) -> float:
        """Hairer, Norsett & Wanner (II.4) starting step estimate; costs one evaluation."""
        y0, f0 = y0.detach(), f0.detach()
        scale = self.atol + self.rtol * y0.abs()
        d0 = float(torch.sqrt(torch.mean((y0 / scale) ** 2)))
        d1 = float(torch.sqrt(torch.mean((f0 / scale) ** 2)))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        span = abs(self.t1 - self.t0)
        h0 = min(h0, span)
        y1 = y0 + direction * h0 * f0
        with torch.no_grad():
            f1 = self.f(self.t0 + direction * h0, y1)
        stats.nfe += 1
        d2 = float(torch.sqrt(torch.mean(((f1 - f0) / scale) ** 2))) / h0
        q = self.method.order
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (q + 1))
        return min(100 * h0, h1, span)

    def solve(self, y: torch.Tensor, trajectory: bool = False) -> Solution:
        """Integrate from ``y`` at ``t0``; ``trajectory=True`` keeps every accepted step.

        ``f(t, y)`` at the current point is evaluated once and reused: by the starting-step
        estimate, after a rejected step, and (FSAL tableaux) from the last stage of an
        accepted step, so dopri5 costs 6 evaluations per step, not 7.
        """
        stats = SolverStats()
        log: list[StepRecord] = []
        t, t1 = self.t0, self.t1
        direction = 1.0 if t1 > t else -1.0
        ts, ys = ([t], [y]) if trajectory else ([], [])
        err_order = self.method.error_order or (self.method.order - 1)
        tab = self.method.tableau
        k1 = self.f(t, y)  # with autograd when enabled: it is the first stage of the first step
        stats.nfe += 1
        _check_finite(k1, f"in f(t0, y0) at t0={t} (the vector field, not the solver)")
        init_cost = 1
        if self.first_step is not None:
            dt = self.first_step
        else:
            dt = self._initial_step(y, k1, direction, stats)
            init_cost += 1
        dt = min(max(dt, self.min_step), self.max_step)
        while direction * (t1 - t) > 0:
            if stats.steps >= self.max_steps:
                self.stats = stats
                raise MaxStepsExceeded(
                    f"max_steps={self.max_steps} exceeded at t={t:.6g} before reaching t1={t1} "
                    f"(rtol={self.rtol}, atol={self.atol}); loosen the tolerances or raise max_steps"
                )
            remaining = abs(t1 - t)
            last = dt >= remaining * (1 - 1e-12)
            h = remaining if last else dt
            y_new, err, k_last = rk_step(tab, self.f, t, direction * h, y, k1)
            cost = tab.stages - 1 + init_cost
            init_cost = 0
            stats.nfe += tab.stages - 1
            stats.steps += 1
            err_norm = _error_norm(err, y, y_new, self.rtol, self.atol)
            accept, dt_next = self.controller.propose(h, err_norm, err_order)
            dt_next = min(dt_next, self.max_step)
            log.append(StepRecord(t, direction * h, accept, err_norm, cost))
            if accept:
                stats.accepted += 1
                t = t1 if last else t + direction * h
                y = y_new
                if tab.fsal:
                    k1 = k_last
                elif direction * (t1 - t) > 0:
                    k1 = self.f(t, y)
                    stats.nfe += 1
                    init_cost = 1
                if trajectory:
                    ts.append(t)
                    ys.append(y)
            else:
                stats.rejected += 1  # k1 = f(t, y) still holds: the retry starts from the same point
            if direction * (t1 - t) > 0 and dt_next < self.min_step:
                self.stats = stats
                raise StepSizeTooSmall(
                    f"step size {dt_next:.3g} fell below min_step={self.min_step} at t={t:.6g}; "
                    f"the problem may be stiff or the tolerances (rtol={self.rtol}, atol={self.atol}) too tight"
                )
            if direction * (t1 - t) > 0 and t + direction * dt_next == t:
                self.stats = stats
                raise StepSizeTooSmall(f"step size underflowed to {dt_next:.3g} at t={t:.6g}")
            dt = dt_next
        self.stats = stats
        return Solution(y=y, ts=ts, ys=ys, stats=stats, log=log)

    def integrate(self, y: torch.Tensor) -> torch.Tensor:
        """Final state at ``t1``."""
        return self.solve(y).y


@dataclass(frozen=True)
class SolverSpec:
    """How to integrate a vector field: a method plus a fixed grid (``steps``) or adaptive
    tolerances, on ``[t0, t1]``.  Immutable and validated on construction; pass it to a call
    (``model(x, solver=spec)``) instead of changing a model.

    ``integrator`` is a built-in short name, or the key of a user method whose tableau travels
    in ``custom_tableau`` (:func:`~odenet.ode.integrators.method_spec`'s dict), so a spec never
    needs a global registry.  Build one from any method with :meth:`for_method`.
    """

    integrator: str = "rk4"
    steps: int = 1
    t0: float = 0.0
    t1: float = 1.0
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-4
    max_steps: int = 1000
    custom_tableau: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.custom_tableau is not None:
            if self.integrator in METHODS:
                raise SolverError(f"integrator {self.integrator!r} is a built-in name; a custom tableau needs its own "
                                  f"key, e.g. {method_key(str(self.custom_tableau.get('name', 'mine')))!r}")
            method = method_from_spec(self.custom_tableau)  # TableauError (a ValueError) if invalid
            object.__setattr__(self, "custom_tableau", method_spec(method))
        else:
            method = get_method(self.integrator)  # ValueError naming the valid choices
            if not isinstance(self.integrator, str) or self.integrator not in METHODS:
                object.__setattr__(self, "integrator", next(k for k, m in METHODS.items() if m is method))
        object.__setattr__(self, "_method", method)
        for name in ("steps", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise SolverError(f"{name} must be a positive integer, got {v!r}")
        if self.steps > MAX_FIXED_STEPS:
            raise SolverError(f"steps={self.steps} is more than the limit of {MAX_FIXED_STEPS:,} steps")
        for name in ("t0", "t1", "rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise SolverError(f"{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.t0 == self.t1:
            raise SolverError(f"t0 and t1 must differ, got t0 = t1 = {self.t0}")
        if self.rtol <= 0 or self.atol <= 0:
            raise SolverError(f"rtol and atol must be > 0, got rtol={self.rtol}, atol={self.atol}")
        if not isinstance(self.adaptive, bool):
            raise SolverError(f"adaptive must be true or false, got {self.adaptive!r}")
        if self.adaptive and not method.adaptive:
            raise SolverError(
                f"adaptive=True needs an embedded pair, but integrator {self.integrator!r} has none; "
                f"choose one of {', '.join(k for k, m in METHODS.items() if m.adaptive)}"
            )

    @classmethod
    def for_method(cls, method: RungeKuttaMethod | str, **kwargs: Any) -> SolverSpec:
        """A spec for a built-in name or any :class:`RungeKuttaMethod` (a custom one carries its tableau)."""
        m = get_method(method)
        builtin = next((k for k, v in METHODS.items() if v is m), None)
        if builtin is not None:
            return cls(integrator=builtin, **kwargs)
        return cls(integrator=method_key(m.name), custom_tableau=method_spec(m), **kwargs)

    @property
    def method(self) -> RungeKuttaMethod:
        """The resolved method (built-in, or rebuilt from ``custom_tableau``)."""
        return self._method  # type: ignore[attr-defined]

    def replace(self, **changes: Any) -> SolverSpec:
        """A copy with ``changes``; choosing another ``integrator`` drops the custom tableau."""
        if "integrator" in changes and "custom_tableau" not in changes and changes["integrator"] != self.integrator:
            changes["custom_tableau"] = None
        return replace(self, **changes)

    def label(self) -> str:
        """Short human label: ``rk4 x1`` or ``dopri5 adaptive (rtol 0.001)``; the one solver label of the app."""
        if self.adaptive:
            return f"{self.integrator} adaptive (rtol {self.rtol:g})"
        return f"{self.integrator} x{self.steps}"

    def build(self, f: VectorField, check_finite: bool = True) -> FixedStepSolver | AdaptiveStepSolver:
        """The solver object that integrates ``f`` as this spec says."""
        if self.adaptive:
            return AdaptiveStepSolver(f, self.t0, self.t1, self.method, rtol=self.rtol, atol=self.atol,
                                      max_steps=self.max_steps)
        return FixedStepSolver(f, self.t0, self.t1, self.method, steps=self.steps, check_finite=check_finite)

    @property
    def nfe_estimate(self) -> int:
        """Evaluations per solve: exact for fixed steps; for adaptive, one step's worth (a lower bound)."""
        return self.method.stages if self.adaptive else self.method.nfe(self.steps)
