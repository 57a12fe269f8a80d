"""Solvers that integrate an initial value problem from ``t0`` to ``t1``.

``FixedStepSolver`` keeps the notebook's interface and semantics (``steps`` or
``step_size``), without float residue steps.  ``AdaptiveStepSolver`` uses an embedded
pair with a separate step-size controller.  Both step through the one loop,
:func:`odenet.ode.stepping.integrate` (FSAL, error norm, initial step, exceptions), and
return a :class:`Solution` with the trajectory and :class:`SolverStats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import Any

import torch

from odenet.ode.integrators import (
    METHODS,
    RungeKuttaMethod,
    get_method,
    method_from_spec,
    method_key,
    method_spec,
)
from odenet.ode.stepping import (
    AdaptiveControl,
    IController,
    MaxStepsExceeded,
    NonFiniteState,
    Solution,
    SolverError,
    SolverStats,
    StepRecord,
    StepSizeTooSmall,
    _positive,
    integrate,
)

__all__ = ["SolverSpec", "FixedStepSolver", "AdaptiveStepSolver", "MAX_FIXED_STEPS", "fixed_grid",
           # defined in odenet.ode.stepping (the loop raises and returns them), importable from here as before
           "SolverError", "MaxStepsExceeded", "StepSizeTooSmall", "NonFiniteState", "SolverStats", "StepRecord",
           "Solution", "IController"]

VectorField = Callable[[float, Any], Any]


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
    h = _positive("step_size", step_size)
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
        self.stats = SolverStats()
        return integrate(self.f, self.method, self.t0, self.t1, y, grid=self.ts, trajectory=trajectory,
                         check_finite=self.check_finite, stats=self.stats)

    def integrate(self, y: Any) -> Any:
        """Final state at ``t1`` (the notebook's ``solver.integrate(x)``)."""
        return self.solve(y).y


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
        if controller is not None and safety is not None:
            raise SolverError("give either controller or safety, not both")
        controller = controller or IController(safety=0.9 if safety is None else safety)
        self.control = AdaptiveControl(rtol=rtol, atol=atol, controller=controller, first_step=first_step,
                                       min_step=min_step, max_step=max_step, max_steps=max_steps)
        c = self.control
        self.rtol, self.atol, self.first_step, self.controller = c.rtol, c.atol, c.first_step, c.controller
        self.min_step, self.max_step, self.max_steps = c.min_step, c.max_step, c.max_steps
        self.stats = SolverStats()

    def solve(self, y: torch.Tensor, trajectory: bool = False) -> Solution:
        """Integrate from ``y`` at ``t0``; ``trajectory=True`` keeps every accepted step.

        ``f(t, y)`` at the current point is evaluated once and reused: by the starting-step
        estimate, after a rejected step, and (FSAL tableaux) from the last stage of an
        accepted step, so dopri5 costs 6 evaluations per step, not 7.
        """
        self.stats = SolverStats()
        return integrate(self.f, self.method, self.t0, self.t1, y, control=self.control, trajectory=trajectory,
                         stats=self.stats)

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
