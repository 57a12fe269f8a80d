"""The one stepping loop of odenet: every solve, with or without gradients, steps through :func:`integrate`.

It takes a vector field, a method (its tableau, order and embedded pair), ``t0``, ``t1``, ``y0`` and either a
fixed grid of step times or an :class:`AdaptiveControl` (tolerances, the :class:`IController`, the error-norm
groups, step limits).  One step routine (:func:`~odenet.ode.integrators.rk_step`, or a caller's wrapper of it such
as a checkpointed step) advances the state.  The loop owns everything around the step, once:

- **FSAL**: the last stage of an accepted step is the next step's first stage (dopri5, bosh3), on fixed grids
  and adaptively; a rejected step is retried from the same point without evaluating ``f(t, y)`` again.
- **One error norm** (:func:`error_ratio`): the RMS of ``err / (atol + rtol * max(|y_n|, |y_n+1|))``, or for a
  state made of several tensors (:class:`TensorTuple`, e.g. the adjoint's ``[h, dL/dh, dL/dtheta]``) the largest
  RMS over chosen groups of parts, so a seminorm leaves parts out (Kidger et al. 2021).
- **One initial-step rule** (:func:`initial_step`, Hairer, Norsett & Wanner II.4), reusing ``f(t0, y0)``.
- **One finiteness check** and one set of exceptions: :class:`StepSizeTooSmall`, :class:`MaxStepsExceeded` and
  :class:`NonFiniteState` are raised with the same message shapes by every solver and gradient method.
- **Counts**: evaluations (NFE), attempted, accepted and rejected steps in :class:`SolverStats`, and optionally a
  :class:`StepRecord` per attempted step and the accepted states (the trajectory).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import torch

from odenet.errors import OdenetError
from odenet.ode.integrators import RKStep, RungeKuttaMethod, rk_step

__all__ = [
    "SolverError",
    "MaxStepsExceeded",
    "StepSizeTooSmall",
    "NonFiniteState",
    "SolverStats",
    "StepRecord",
    "Solution",
    "IController",
    "AdaptiveControl",
    "TensorTuple",
    "StepFunction",
    "error_ratio",
    "initial_step",
    "integrate",
]

VectorField = Callable[[float, Any], Any]
StepFunction = Callable[[float, float, Any, Any], RKStep]
"""``step(t, dt, y, k1) -> RKStep``: one step from ``(t, y)``; ``k1`` is ``f(t, y)`` when already known, else None."""


class SolverError(OdenetError, ValueError):
    """Invalid solver argument or failed solve; the message names the argument and value."""


class MaxStepsExceeded(SolverError):
    """The adaptive solver needed more than ``max_steps`` steps."""


class StepSizeTooSmall(SolverError):
    """The adaptive controller asked for a step below ``min_step``, or one too small to move ``t`` (underflow)."""


class NonFiniteState(SolverError):
    """The solution became NaN or infinite (steps too large for the problem, or a bad f)."""


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
    ``next_step`` is the step size the controller proposed last (adaptive solves; None on a grid).
    """

    y: Any
    ts: list[float] = field(default_factory=list)
    ys: list[Any] = field(default_factory=list)
    stats: SolverStats = field(default_factory=SolverStats)
    log: list[StepRecord] = field(default_factory=list)
    next_step: float | None = None

    def stacked(self) -> torch.Tensor:
        """States stacked on a new leading time axis: shape ``(len(ts), *y.shape)``."""
        return torch.stack(list(self.ys))


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


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value <= 0:
        raise SolverError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class AdaptiveControl:
    """How the loop chooses step sizes: tolerances, controller and limits, validated on construction.

    ``first_step`` (a magnitude) skips :func:`initial_step`; ``max_steps`` bounds attempted steps so nothing hangs;
    ``groups`` selects the parts of a :class:`TensorTuple` state the error norm measures (None: every part
    on its own), see :func:`error_ratio`.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    controller: IController = field(default_factory=IController)
    first_step: float | None = None
    min_step: float = 0.0
    max_step: float = math.inf
    max_steps: int = 10_000
    groups: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtol", _positive("rtol", self.rtol))
        object.__setattr__(self, "atol", _positive("atol", self.atol))
        if self.first_step is not None:
            object.__setattr__(self, "first_step", _positive("first_step", self.first_step))
        m = self.min_step
        if isinstance(m, bool) or not isinstance(m, Real) or not (0 <= m < math.inf):
            raise SolverError(f"min_step must be a finite number >= 0, got {m!r}")
        m = self.max_step
        if isinstance(m, bool) or not isinstance(m, Real) or not m > 0:
            raise SolverError(f"max_step must be a positive number, got {m!r}")
        if self.max_step < self.min_step:
            raise SolverError(f"max_step={self.max_step!r} must be >= min_step={self.min_step!r}")
        m = self.max_steps
        if isinstance(m, bool) or not isinstance(m, Integral) or m < 1:
            raise SolverError(f"max_steps must be a positive integer, got {m!r}")
        object.__setattr__(self, "min_step", float(self.min_step))
        object.__setattr__(self, "max_step", float(self.max_step))
        object.__setattr__(self, "max_steps", int(self.max_steps))


class TensorTuple:
    """Several tensors stepped as one state: ``+`` and scalar ``*`` act part by part, so
    :func:`~odenet.ode.integrators.rk_step` and :func:`integrate` run on it unchanged (the adjoint's
    ``[h, dL/dh, *dL/dtheta]``)."""

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[torch.Tensor]) -> None:
        self.parts = tuple(parts)

    def __add__(self, other: TensorTuple) -> TensorTuple:
        return TensorTuple([x + y for x, y in zip(self.parts, other.parts)])

    def __mul__(self, c: float) -> TensorTuple:
        return TensorTuple([x * c for x in self.parts])

    __rmul__ = __mul__


def _parts(y: Any) -> tuple[torch.Tensor, ...]:
    return y.parts if isinstance(y, TensorTuple) else (y,)


def _like(y: Any, parts: Sequence[torch.Tensor]) -> Any:
    return TensorTuple(parts) if isinstance(y, TensorTuple) else parts[0]


def _rms(errs: Sequence[torch.Tensor], ys0: Sequence[torch.Tensor], ys1: Sequence[torch.Tensor], rtol: float,
         atol: float) -> torch.Tensor:
    """RMS of ``err / (atol + rtol * max(|y0|, |y1|))`` pooled over the given parts (a 0-dim tensor)."""
    scaled = [e / (atol + rtol * torch.maximum(a.abs(), b.abs())) for e, a, b in zip(errs, ys0, ys1)]
    x = scaled[0] if len(scaled) == 1 else torch.cat([s.reshape(-1) for s in scaled])
    return torch.sqrt(torch.mean(x**2))


@torch.no_grad()
def error_ratio(err: Any, y0: Any, y1: Any, rtol: float, atol: float,
                groups: Sequence[Sequence[int]] | None = None) -> float:
    """The error norm of the loop (<= 1 accepts a step): the RMS of ``err / (atol + rtol * max(|y0|, |y1|))``.

    For a :class:`TensorTuple` state, the largest such RMS over ``groups`` (each a tuple of part indices pooled
    into one RMS; None: each part alone); parts in no group are not measured (a seminorm).  One host sync.
    """
    if not isinstance(err, TensorTuple):
        return float(_rms((err,), (y0,), (y1,), rtol, atol))
    e, a, b = err.parts, y0.parts, y1.parts
    groups = groups if groups is not None else [(i,) for i in range(len(e))]
    norms = [_rms([e[i] for i in g], [a[i] for i in g], [b[i] for i in g], rtol, atol).to(torch.float64)
             for g in groups]
    return float(torch.stack(norms).max())


@torch.no_grad()
def initial_step(f: VectorField, t0: float, y0: Any, f0: Any, t1: float, order: int, rtol: float, atol: float,
                 groups: Sequence[Sequence[int]] | None = None) -> float:
    """Hairer, Norsett & Wanner (II.4) starting step magnitude from ``f0 = f(t0, y0)``; costs one evaluation.

    Norms are :func:`error_ratio`'s with ``y0`` as the scale.  A non-finite estimate (``f`` overflowing near
    ``t0``) falls back to a small step that the controller then grows.
    """
    y0 = _like(y0, [p.detach() for p in _parts(y0)])
    f0 = _like(f0, [p.detach() for p in _parts(f0)])
    span = abs(t1 - t0)
    direction = 1.0 if t1 > t0 else -1.0
    d0 = error_ratio(y0, y0, y0, rtol, atol, groups)
    d1 = error_ratio(f0, y0, y0, rtol, atol, groups)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    f1 = f(t0 + direction * h0, y0 + direction * h0 * f0)
    diff = _like(f0, [p1 - p0 for p1, p0 in zip(_parts(f1), _parts(f0))])
    d2 = error_ratio(diff, y0, y0, rtol, atol, groups) / h0
    if max(d1, d2) <= 1e-15 or not math.isfinite(d2):
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


def _bad_parts(y: Any, names: Sequence[str]) -> str:
    """``" (h, dL/dh)"``: the named parts of ``y`` that are not finite ("" for a plain tensor)."""
    if not isinstance(y, TensorTuple):
        return ""
    bad = [names[min(i, len(names) - 1)] if names else f"part {i}" for i, x in enumerate(y.parts)
           if not bool(torch.isfinite(x).all())]
    return f" ({', '.join(dict.fromkeys(bad))})"


def _check_finite(y: Any, message: Callable[[], str]) -> None:
    """The loop's one finiteness check (one host sync): NonFiniteState with ``message()`` if ``y`` is not finite."""
    parts = _parts(y)
    if len(parts) == 1:
        ok = torch.isfinite(parts[0]).all()
    else:
        ok = torch.stack([torch.isfinite(p).all() for p in parts]).all()
    if not bool(ok):
        raise NonFiniteState(message())


DEFAULT_HINT = "use smaller steps or tighter tolerances (or check f)"


def integrate(f: VectorField, method: RungeKuttaMethod, t0: float, t1: float, y0: Any, *,
              grid: Sequence[float] | None = None, control: AdaptiveControl | None = None,
              step: StepFunction | None = None, trajectory: bool = False, record: bool = True,
              check_finite: bool = True, stats: SolverStats | None = None, what: str = "the solve",
              hint: str = DEFAULT_HINT, names: Sequence[str] = ()) -> Solution:
    """Step ``dy/dt = f(t, y)`` from ``y0`` at ``t0`` to ``t1``, on ``grid`` (step times, ``t0`` first, ``t1``
    last) or adaptively under ``control``; the one loop behind every solver and gradient method.

    ``step(t, dt, y, k1) -> RKStep`` defaults to :func:`~odenet.ode.integrators.rk_step` with ``method``'s tableau
    (checkpointing passes a wrapper).  ``record`` keeps a :class:`StepRecord` per attempted step, ``trajectory``
    every accepted state; ``stats`` (filled in place, also when the loop raises) counts evaluations and steps.
    ``check_finite`` checks the final state once; adaptive solves also check ``f(t0, y0)`` and turn a step size
    too small to move ``t`` into :class:`StepSizeTooSmall`.  ``what``, ``hint`` and ``names`` (of a
    :class:`TensorTuple`'s parts) word the errors.
    """
    if (grid is None) == (control is None):
        raise SolverError("give either a grid or an adaptive control, not both or neither")
    if grid is not None and (len(grid) < 2 or grid[0] != t0 or grid[-1] != t1):
        raise SolverError(f"the grid must run from t0={t0} to t1={t1} in at least one step")
    tab = method.tableau
    stages, fsal = tab.stages, tab.fsal
    step = step or functools.partial(rk_step, tab, f)
    stats = stats if stats is not None else SolverStats()
    log: list[StepRecord] = []
    ts, ys = ([t0], [y0]) if trajectory else ([], [])
    direction = 1.0 if t1 > t0 else -1.0
    t, y, k1 = t0, y0, None
    pending = 0  # evaluations made outside a step (k1, the initial-step rule), charged to the next record
    dt = dt_next = 0.0
    if control is not None:
        k1 = f(t0, y0)  # with autograd when enabled: the first stage of the first step
        pending = 1
        _check_finite(k1, lambda: f"{what}: f(t0, y0) is NaN or infinite at t0={t0:.6g}{_bad_parts(k1, names)} "
                                  f"(the vector field, not the solver)")
        if control.first_step is not None:
            dt = control.first_step
        else:
            dt = initial_step(f, t0, y0, k1, t1, method.order, control.rtol, control.atol, control.groups)
            pending += 1
        dt = min(max(dt, control.min_step), control.max_step)
        error_order = method.error_order or (method.order - 1)
    stats.nfe += pending
    i = 0
    while direction * (t1 - t) > 0:
        if grid is not None:
            t_next = grid[i + 1]
            h = t_next - t
            i += 1
        else:
            if stats.steps >= control.max_steps:
                raise MaxStepsExceeded(
                    f"{what}: max_steps={control.max_steps} exceeded at t={t:.6g} before reaching t1={t1} "
                    f"({method.name}, rtol={control.rtol}, atol={control.atol}); loosen the tolerances or raise "
                    f"max_steps")
            remaining = abs(t1 - t)
            last = dt >= remaining * (1 - 1e-12)
            t_next = t1 if last else t + direction * dt
            h = direction * (remaining if last else dt)
        res = step(t, h, y, k1)
        y_new, err, k_last = res.y, res.error, res.k_last
        cost = stages - (k1 is not None) + pending
        stats.nfe += stages - (k1 is not None)
        stats.steps += 1
        pending = 0
        if grid is None:
            ratio = error_ratio(err, y, y_new, control.rtol, control.atol, control.groups)
            accept, dt_next = control.controller.propose(abs(h), ratio, error_order)
            dt_next = min(dt_next, control.max_step)
        else:
            ratio, accept = None, True
        if record:
            log.append(StepRecord(t, h, accept, ratio, cost))
        if accept:
            stats.accepted += 1
            t, y = t_next, y_new
            if fsal:
                k1 = k_last
            elif grid is None and direction * (t1 - t) > 0:
                k1 = f(t, y)  # shared by the next attempts from this point
                pending = 1
                stats.nfe += 1
            else:
                k1 = None
            if trajectory:
                ts.append(t)
                ys.append(y)
        else:
            stats.rejected += 1  # k1 = f(t, y) still holds: the retry starts from the same point
        if grid is None and direction * (t1 - t) > 0:
            if dt_next < control.min_step:
                raise StepSizeTooSmall(
                    f"{what}: step size {dt_next:.3g} fell below min_step={control.min_step} at t={t:.6g} "
                    f"({method.name}, rtol={control.rtol}, atol={control.atol}); the problem may be stiff or the "
                    f"tolerances too tight")
            if t + direction * dt_next == t:
                raise StepSizeTooSmall(
                    f"{what}: step size underflowed to {dt_next:.3g} at t={t:.6g} (error ratio {ratio:.3g}, "
                    f"{method.name}, rtol={control.rtol}, atol={control.atol}); the problem is stiff or blows up here")
            dt = dt_next
    if check_finite:
        _check_finite(y, lambda: f"{what} became NaN or infinite at t={t:.6g} after {stats.steps} steps of "
                                 f"{method.name}{_bad_parts(y, names)}; {hint}")
    return Solution(y=y, ts=ts, ys=ys, stats=stats, log=log, next_step=None if grid is not None else dt_next)
