"""Gradients through an ODE solve: backprop, the adjoint method (continuous and discrete), and
per-step checkpointing.

Four ways to get ``dL/dy0`` and ``dL/dtheta`` for ``y(t1) = solve(f_theta, y0, t0, t1)``:

- ``"backprop"``: autograd through every solver stage.  Exact gradient of the discrete
  solve; memory grows linearly with the number of steps.
- ``"adjoint"`` (Chen et al. 2018): solve forward without a graph, keep only ``y(t1)``; in
  backward integrate the augmented system ``[h, a = dL/dh, g = dL/dtheta]`` from ``t1``
  back to ``t0`` with ``h' = f``, ``a' = -a^T df/dh``, ``g' = -a^T df/dtheta`` (one
  vector-Jacobian product per evaluation).  Memory is constant in the step count; the
  gradient is the continuous adjoint discretised, so it differs from backprop's by the
  discretisation error (it converges at the method's order).
- ``"discrete_adjoint"``: also constant memory, but backward walks the forward's own steps
  in reverse: it reconstructs each step's start state from its end (a backward step of the
  same tableau, then fixed-point refinements ``h_n <- h_n - (Phi(h_n) - h_{n+1})``), recomputes
  that one step with autograd and takes its vector-Jacobian product.  That is backprop's
  gradient (the discrete adjoint of the RK map) evaluated at reconstructed states, so it
  differs from backprop's by the reconstruction error only, not by a discretisation error;
  backward costs ``(3 + refinements) x stages`` evaluations of ``f`` per step plus the step's
  vector-Jacobian product.  Adaptive solves
  replay the accepted step sizes (a list of floats).
- ``"checkpoint"``: autograd, but each solver step is recomputed in backward
  (``torch.utils.checkpoint``), so only one state per step is kept.  Gradients equal
  backprop's to float rounding; memory grows with steps x state instead of steps x stages x
  activations.

BatchNorm inside ``f``: the forward solve updates running statistics exactly as a plain
solve does (once per stage evaluation).  Every re-evaluation of ``f`` during backward (the
adjoint's backward solve, checkpoint recomputation) runs with ``f``'s buffers saved before
and restored after, so running statistics are updated exactly once.  In train mode the
re-evaluations still normalise with batch statistics, so the backward vector field is the
forward one (checkpoint: exactly; adjoint: evaluated at the backward-reconstructed states, part
of its discretisation error).  In eval mode BatchNorm is a fixed affine map and nothing changes.

Autocast (bf16 training): both adjoints' backward passes evaluate ``f`` under the autocast
setting the forward ran under, as checkpoint's recomputation does.

Memory is measured deterministically by :func:`saved_tensor_bytes`: bytes of the distinct
storages autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from odenet.ode.integrators import RungeKuttaMethod, get_method
from odenet.ode.solvers import IController, MaxStepsExceeded, NonFiniteState, SolverError, fixed_grid

if TYPE_CHECKING:  # pandas is an optional (app) dependency, imported where used
    import pandas as pd

__all__ = [
    "GRADIENT_METHODS",
    "BackwardStats",
    "solve_with_gradient",
    "saved_tensor_bytes",
    "gradient_comparison",
]

GRADIENT_METHODS = ("backprop", "adjoint", "discrete_adjoint", "checkpoint")
RECONSTRUCTION_REFINEMENTS = 1  # fixed-point passes after the backward step (discrete adjoint)
VectorField = Callable[[float, Any], Any]
_CONTROLLER = IController()


@dataclass
class BackwardStats:
    """Counts of one gradient solve.  The ``*_backward`` fields are filled when backward runs.

    ``steps_*`` count attempted steps (accepted + rejected).  ``nfe_backward`` counts
    evaluations of ``f`` made by the backward pass: augmented-field evaluations (one ``f``
    call plus one vector-Jacobian product each) for ``"adjoint"``, recomputed ``f`` calls for
    ``"checkpoint"``, ``f`` calls (reconstruction, refinements and the recomputed step, whose
    vector-Jacobian product follows) for ``"discrete_adjoint"``, and 0 for ``"backprop"``
    (autograd replays the recorded graph).  ``reconstruction_residual`` (discrete adjoint): the
    largest ``|Phi(h_n) - h_{n+1}| / |h_{n+1}|`` over the steps, how far the reconstructed start
    state is from one whose step lands on the known end state.
    """

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_backward: int = 0
    accepted_backward: int = 0
    rejected_backward: int = 0
    steps_forward: int = 0
    rejected_forward: int = 0
    reconstruction_residual: float = 0.0


# -- the augmented state -----------------------------------------------------------------
class _Aug:
    """A tuple of tensors with ``+`` and scalar ``*``, so ``method.step`` runs on it unchanged.

    Parts: ``(h, a, *g)`` for the adjoint system (state, dL/dh, one dL/dtheta per parameter).
    """

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[torch.Tensor]) -> None:
        self.parts = tuple(parts)

    def __add__(self, other: _Aug) -> _Aug:
        return _Aug([x + y for x, y in zip(self.parts, other.parts)])

    def __mul__(self, c: float) -> _Aug:
        return _Aug([x * c for x in self.parts])

    __rmul__ = __mul__


# -- norms, checks, buffers --------------------------------------------------------------
def _rms_scaled(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    """RMS of ``err / (atol + rtol * max(|y0|, |y1|))`` (a 0-dim tensor)."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return torch.sqrt(torch.mean((err / scale) ** 2))


def _max_rms(parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rtol: float, atol: float) -> float:
    """Mixed norm: the largest per-part scaled RMS (one host sync)."""
    norms = [_rms_scaled(e, a.to(e.dtype), b.to(e.dtype), rtol, atol).to(torch.float64) for e, a, b in parts]
    return float(torch.stack(norms).max())


def _all_finite(parts: Sequence[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(x).all() for x in parts]).all())


@contextlib.contextmanager
def _preserved_buffers(f: Any) -> Iterator[None]:
    """Restore every buffer of ``f`` (BatchNorm running stats) on exit: re-evaluations of ``f``
    during backward must not update running statistics a second time."""
    if not isinstance(f, nn.Module):
        yield
        return
    buffers = [b for b in f.buffers() if b is not None]
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)


def _trainable(f: Any) -> list[torch.nn.Parameter]:
    return [p for p in f.parameters() if p.requires_grad] if isinstance(f, nn.Module) else []


@dataclass(frozen=True)
class _Options:
    """Validated solver options passed through the autograd.Function."""

    steps: int | None
    adaptive: bool
    rtol: float
    atol: float
    max_steps: int
    seminorm: bool


# -- generic loops -----------------------------------------------------------------------
@dataclass
class _LoopCounts:
    steps: int = 0
    accepted: int = 0
    rejected: int = 0


def _adaptive_loop(step_with_error: Callable[[float, float, Any], tuple[Any, Any]], t0: float, t1: float, y: Any,
                   dt: float, error_order: int, norm: Callable[[Any, Any, Any], float], max_steps: int,
                   counts: _LoopCounts, what: str, check: Callable[[Any, float], None] | None = None,
                   accepted: list[tuple[float, float]] | None = None) -> tuple[Any, float]:
    """Step from ``t0`` to ``t1`` with error control; returns ``(y(t1), last proposed |dt|)``.

    ``step_with_error(t, signed_dt, y) -> (y_new, err)``; ``norm(err, y, y_new) <= 1`` accepts.
    ``check(y, t)`` runs after each accepted step (raises on a bad state); ``accepted`` (if
    given) receives ``(t, signed dt)`` of every accepted step.
    """
    direction = 1.0 if t1 > t0 else -1.0
    t = t0
    dt = min(abs(dt), abs(t1 - t0))
    last_norm = 0.0
    while direction * (t1 - t) > 0:
        if counts.steps >= max_steps:
            hint = " (the last error norm was not finite: the state overflowed)" if not math.isfinite(last_norm) else ""
            raise MaxStepsExceeded(
                f"{what}: max_steps={max_steps} exceeded at t={t:.6g} before reaching t={t1:.6g}{hint}; "
                f"loosen rtol/atol or raise max_steps"
            )
        remaining = abs(t1 - t)
        last = dt >= remaining * (1 - 1e-12)
        h = remaining if last else dt
        y_new, err = step_with_error(t, direction * h, y)
        counts.steps += 1
        last_norm = norm(err, y, y_new)
        accept, dt_next = _CONTROLLER.propose(h, last_norm, error_order)
        if accept:
            counts.accepted += 1
            if accepted is not None:
                accepted.append((t, direction * h))
            t = t1 if last else t + direction * h
            y = y_new
            if check is not None:
                check(y, t)
        else:
            counts.rejected += 1
        if direction * (t1 - t) > 0 and t + direction * dt_next == t:
            raise NonFiniteState(f"{what}: the step size underflowed to {dt_next:.3g} at t={t:.6g} "
                                 f"(error norm {last_norm:.3g}); the problem is too stiff or blows up")
        dt = dt_next
    return y, dt


def _initial_step(f: VectorField, t0: float, y0: torch.Tensor, span: float, order: int,
                  rtol: float, atol: float) -> float:
    """Hairer, Norsett & Wanner (II.4) starting step estimate; costs two evaluations."""
    scale = atol + rtol * y0.abs()
    f0 = f(t0, y0)
    d0 = float(torch.sqrt(torch.mean((y0 / scale) ** 2)))
    d1 = float(torch.sqrt(torch.mean((f0 / scale) ** 2)))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    direction = 1.0 if span > 0 else -1.0
    f1 = f(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = float(torch.sqrt(torch.mean(((f1 - f0) / scale) ** 2))) / h0
    if not math.isfinite(d2):
        raise NonFiniteState(f"f returned non-finite values near t0={t0} (the vector field, not the solver)")
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, abs(span))


class _Counted:
    """Wraps a vector field and counts calls into ``counter[phase]`` (forward or backward)."""

    def __init__(self, f: VectorField) -> None:
        self.f = f
        self.counter = {"forward": 0, "backward": 0}
        self.phase = "forward"

    def __call__(self, t: float, y: Any) -> Any:
        self.counter[self.phase] += 1
        return self.f(t, y)


def _plain_step(method: RungeKuttaMethod) -> Callable[..., Any]:
    def step(f: VectorField, t: float, dt: float, y: Any, with_error: bool = False) -> Any:
        return method.step_with_error(f, t, dt, y) if with_error else method.step(f, t, dt, y)

    return step


def _forward_solve(counted: _Counted, y0: torch.Tensor, t0: float, t1: float, method: RungeKuttaMethod,
                   cfg: _Options, stats: BackwardStats, step: Callable[..., Any] | None = None,
                   accepted: list[tuple[float, float]] | None = None) -> tuple[torch.Tensor, float]:
    """The forward solve shared by all methods.  ``step(f, t, dt, y, with_error=False)``
    defaults to ``method.step`` (checkpoint passes a checkpointed step).  Returns
    ``(y(t1), last |dt|)``; ``stats`` gets the forward counts and ``accepted`` (if given) the
    ``(t, dt)`` of every step taken."""
    step = step or _plain_step(method)
    if not cfg.adaptive:
        ts = fixed_grid(t0, t1, cfg.steps, None)
        y = y0
        for ta, tb in zip(ts[:-1], ts[1:]):
            y = step(counted, ta, tb - ta, y)
        if accepted is not None:
            accepted.extend((ta, tb - ta) for ta, tb in zip(ts[:-1], ts[1:]))
        n = len(ts) - 1
        stats.steps_forward = n
        stats.nfe_forward = counted.counter["forward"]
        if not bool(torch.isfinite(y.detach()).all()):
            raise NonFiniteState(f"the forward solve became NaN or infinite ({method.name} x{n} on [{t0}, {t1}]); "
                                 f"use more steps (or check f)")
        return y, abs(t1 - t0) / n
    with torch.no_grad():
        dt0 = _initial_step(counted, t0, y0.detach(), t1 - t0, method.order, cfg.rtol, cfg.atol)

    def norm(err: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor) -> float:
        with torch.no_grad():
            return _max_rms([(err.detach(), ya.detach(), yb.detach())], cfg.rtol, cfg.atol)

    counts = _LoopCounts()
    y, dt = _adaptive_loop(lambda t, dt, y: step(counted, t, dt, y, with_error=True), t0, t1, y0, dt0,
                           method.error_order or method.order - 1, norm, cfg.max_steps, counts,
                           f"forward solve ({method.name}, rtol={cfg.rtol}, atol={cfg.atol})",
                           accepted=accepted)
    stats.steps_forward = counts.steps
    stats.rejected_forward = counts.rejected
    stats.nfe_forward = counted.counter["forward"]
    if not bool(torch.isfinite(y.detach()).all()):
        raise NonFiniteState(f"the forward solve became NaN or infinite ({method.name}, adaptive)")
    return y, dt


# -- adjoint -----------------------------------------------------------------------------
def _autocast_state(x: torch.Tensor) -> tuple[str, bool, torch.dtype]:
    """The autocast setting the forward ran under (device type, enabled, dtype)."""
    dev = x.device.type
    return dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)


def _autocast_like(state: tuple[str, bool, torch.dtype]) -> contextlib.AbstractContextManager:
    """Re-enter the forward's autocast setting: autograd runs backward outside the forward's
    ``torch.autocast`` block, but the backward solves must evaluate ``f`` as the forward did (a
    bf16 state against fp32 weights fails otherwise)."""
    dev, enabled, dtype = state
    return torch.autocast(dev, dtype=dtype, enabled=enabled)


def _check_incoming(grad_y1: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(grad_y1).all()):
        raise NonFiniteState(f"the incoming gradient dL/dy(t1) of {what} is NaN or infinite (the loss, not the solver)")


class _AdjointSolve(torch.autograd.Function):
    """``y(t1)`` from ``y0``; backward solves the augmented adjoint system from t1 to t0."""

    @staticmethod
    def forward(ctx: Any, f: nn.Module, method: RungeKuttaMethod, t0: float, t1: float, cfg: _Options,
                stats: BackwardStats, params: tuple[nn.Parameter, ...], y0: torch.Tensor,
                *param_inputs: torch.Tensor) -> torch.Tensor:
        steps: list[tuple[float, float]] = []  # (t, dt) of each accepted step: floats, not tensors
        with torch.no_grad():
            y1, last_dt = _forward_solve(_Counted(f), y0, t0, t1, method, cfg, stats, accepted=steps)
        ctx.f, ctx.method, ctx.t0, ctx.t1, ctx.cfg, ctx.stats, ctx.params = f, method, t0, t1, cfg, stats, params
        ctx.last_dt, ctx.steps, ctx.autocast = last_dt, steps, _autocast_state(y0)
        ctx.save_for_backward(y1)  # the only tensor kept: y(t1), (N, ...) like y0
        return y1

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y1: torch.Tensor) -> tuple[Any, ...]:
        (y1,) = ctx.saved_tensors
        f, method, cfg, stats, params = ctx.f, ctx.method, ctx.cfg, ctx.stats, ctx.params
        t0, t1 = ctx.t0, ctx.t1
        _check_incoming(grad_y1, "the adjoint solve")
        calls = [0]

        def aug_field(t: float, s: _Aug) -> _Aug:
            """[h, a, g]' = [f, -a^T df/dh, -a^T df/dtheta] at time t."""
            h, a = s.parts[0], s.parts[1]
            calls[0] += 1
            with torch.enable_grad():
                h_leaf = h.detach().requires_grad_(True)
                fh = f(t, h_leaf)
                vjps = torch.autograd.grad(fh, (h_leaf, *params), a, allow_unused=True)
            out = [fh.detach(), -vjps[0] if vjps[0] is not None else torch.zeros_like(h)]
            out += [-v if v is not None else torch.zeros_like(p) for v, p in zip(vjps[1:], params)]
            return _Aug(out)

        def check(s: _Aug, t: float) -> None:
            if not _all_finite(s.parts):
                names = ["h", "dL/dh"] + ["dL/dtheta"] * (len(s.parts) - 2)
                bad = sorted({n for n, x in zip(names, s.parts) if not bool(torch.isfinite(x).all())})
                raise NonFiniteState(
                    f"the adjoint backward solve became NaN or infinite at t={t:.6g} ({', '.join(bad)}) with "
                    f"{method.name}; integrating h backwards in time can be unstable - use more steps, tighter "
                    f"tolerances, or gradient='checkpoint'"
                )

        s = _Aug([y1, grad_y1.to(y1.dtype)] + [torch.zeros_like(p) for p in params])
        counts = _LoopCounts()
        with _preserved_buffers(f), _autocast_like(ctx.autocast):
            if not cfg.adaptive:
                ts = fixed_grid(t0, t1, cfg.steps, None)
                for i in reversed(range(len(ts) - 1)):
                    s = method.step(aug_field, ts[i + 1], ts[i] - ts[i + 1], s)
                    counts.steps += 1
                    counts.accepted += 1
                    check(s, ts[i])
            else:
                def norm(err: _Aug, sa: _Aug, sb: _Aug) -> float:
                    """Max of the RMS norms of h, dL/dh and (without seminorm) all of dL/dtheta."""
                    parts = list(zip(err.parts[:2], sa.parts[:2], sb.parts[:2]))
                    if not cfg.seminorm and len(err.parts) > 2:
                        parts.append(tuple(torch.cat([x.reshape(-1) for x in z.parts[2:]]) for z in (err, sa, sb)))
                    return _max_rms(parts, cfg.rtol, cfg.atol)

                s, _ = _adaptive_loop(
                    lambda t, dt, y: method.step_with_error(aug_field, t, dt, y), t1, t0, s, ctx.last_dt,
                    method.error_order or method.order - 1, norm, cfg.max_steps, counts,
                    f"adjoint backward solve ({method.name}, rtol={cfg.rtol}, atol={cfg.atol}, "
                    f"seminorm={cfg.seminorm})", check)
        stats.nfe_backward += calls[0]
        stats.steps_backward += counts.steps
        stats.accepted_backward += counts.accepted
        stats.rejected_backward += counts.rejected
        grad_y0 = s.parts[1] if ctx.needs_input_grad[7] else None
        return (None,) * 7 + (grad_y0, *s.parts[2:])


# -- discrete adjoint --------------------------------------------------------------------
def _rel_norm(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(x.norm() / ref.norm().clamp_min(1e-30))


def _reconstruct(f: VectorField, method: RungeKuttaMethod, t: float, dt: float, h_end: torch.Tensor,
                 refinements: int) -> tuple[torch.Tensor, float]:
    """The start state ``h`` of the step ``(t, dt)`` that ends at ``h_end``: a backward step of
    the same tableau, then up to ``refinements`` passes of ``h <- h - (Phi(h) - h_end)``, each
    kept only if it shrinks the residual (the iteration converges when ``|dt| * Lip(f) < 1``).
    Returns ``(h, |Phi(h) - h_end| / |h_end|)``."""
    with torch.no_grad():
        h = method.step(f, t + dt, -dt, h_end)
        r = method.step(f, t, dt, h) - h_end
        res = _rel_norm(r, h_end)
        for _ in range(refinements):
            cand = h - r
            r_cand = method.step(f, t, dt, cand) - h_end
            res_cand = _rel_norm(r_cand, h_end)
            if not res_cand < res:
                break
            h, r, res = cand, r_cand, res_cand
    return h, res


class _DiscreteAdjointSolve(_AdjointSolve):
    """``y(t1)`` from ``y0`` (the adjoint's forward, which records the accepted steps); backward
    walks those steps in reverse, reconstructing each start state and taking the
    vector-Jacobian product of that one recomputed step."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y1: torch.Tensor) -> tuple[Any, ...]:
        (y1,) = ctx.saved_tensors
        f, method, stats, params = ctx.f, ctx.method, ctx.stats, ctx.params
        _check_incoming(grad_y1, "the discrete adjoint")
        counted = _Counted(f)
        h, a = y1, grad_y1.to(y1.dtype)
        g = [torch.zeros_like(p) for p in params]
        worst = 0.0
        with _preserved_buffers(f), _autocast_like(ctx.autocast):
            for t, dt in reversed(ctx.steps):
                h, res = _reconstruct(counted, method, t, dt, h, RECONSTRUCTION_REFINEMENTS)
                worst = max(worst, res)
                with torch.enable_grad():
                    leaf = h.detach().requires_grad_(True)
                    out = method.step(counted, t, dt, leaf)
                    vjps = torch.autograd.grad(out, (leaf, *params), a, allow_unused=True)
                a = vjps[0] if vjps[0] is not None else torch.zeros_like(a)
                g = [gi + v if v is not None else gi for gi, v in zip(g, vjps[1:])]
                if not (math.isfinite(res) and _all_finite([a, *g])):
                    raise NonFiniteState(
                        f"the discrete adjoint became NaN or infinite at t={t:.6g} with {method.name} "
                        f"(state reconstruction residual {res:.3g}); reconstructing h backwards can be unstable - "
                        f"use more steps or gradient='checkpoint'")
        stats.nfe_backward += counted.counter["forward"]  # _Counted's phase stays "forward": all are backward calls
        stats.steps_backward += len(ctx.steps)
        stats.accepted_backward += len(ctx.steps)
        stats.reconstruction_residual = max(stats.reconstruction_residual, worst)
        grad_y0 = a if ctx.needs_input_grad[7] else None
        return (None,) * 7 + (grad_y0, *g)


# -- checkpoint --------------------------------------------------------------------------
def _checkpoint_step(f: VectorField, counted: _Counted, stats: BackwardStats, method: RungeKuttaMethod
                     ) -> Callable[..., Any]:
    """A solver step whose activations are recomputed in backward, with ``f``'s buffers
    preserved around the recomputation (BatchNorm running stats updated once)."""

    @contextlib.contextmanager
    def recompute_ctx() -> Iterator[None]:
        before = counted.counter["backward"]
        counted.phase = "backward"
        try:
            with _preserved_buffers(f):
                yield
        finally:
            counted.phase = "forward"
            stats.nfe_backward += counted.counter["backward"] - before
            stats.steps_backward += 1
            stats.accepted_backward += 1

    def context_fn() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), recompute_ctx()

    plain = _plain_step(method)

    def step(fc: VectorField, t: float, dt: float, y: torch.Tensor, with_error: bool = False) -> Any:
        return checkpoint(lambda y_: plain(fc, t, dt, y_, with_error), y, use_reentrant=False, context_fn=context_fn)

    return step


# -- public API --------------------------------------------------------------------------
def _check_options(gradient: str, t0: Any, t1: Any, method: Any, steps: Any, adaptive: bool, rtol: Any,
                   atol: Any, max_steps: Any) -> tuple[float, float, RungeKuttaMethod]:
    if gradient not in GRADIENT_METHODS:
        raise SolverError(f"gradient must be one of {', '.join(GRADIENT_METHODS)}; got {gradient!r}")
    for name, v in (("t0", t0), ("t1", t1)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
            raise SolverError(f"{name} must be a finite real number, got {v!r}")
    if float(t0) == float(t1):
        raise SolverError(f"t0 and t1 must differ (empty interval), got t0 = t1 = {t0}")
    m = get_method(method)
    if adaptive:
        if not m.adaptive:
            raise SolverError(f"adaptive=True needs a method with an embedded pair (e.g. 'bosh3', 'dopri5'); "
                              f"{m.name!r} has none")
        for name, v in (("rtol", rtol), ("atol", atol)):
            if isinstance(v, bool) or not isinstance(v, Real) or not (0 < float(v) < math.inf):
                raise SolverError(f"{name} must be a positive finite number, got {v!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, Integral) or max_steps < 1:
            raise SolverError(f"max_steps must be a positive integer, got {max_steps!r}")
    elif steps is None:
        raise SolverError("steps is required for a fixed-step solve (or pass adaptive=True)")
    return float(t0), float(t1), m


def solve_with_gradient(f: VectorField, y0: torch.Tensor, t0: float, t1: float, method: RungeKuttaMethod | str,
                        *, gradient: str, steps: int | None = None, adaptive: bool = False, rtol: float = 1e-3,
                        atol: float = 1e-4, max_steps: int = 1000, seminorm: bool = True,
                        stats: BackwardStats | None = None) -> torch.Tensor:
    """Solve ``y' = f(t, y)`` from ``y0`` at ``t0`` to ``t1``; return ``y(t1)`` whose gradient
    (to ``y0`` and ``f``'s parameters) is computed the ``gradient`` way (see module docstring).

    Fixed grid with ``steps`` (``method.stages * steps`` evaluations), or ``adaptive=True``
    with ``rtol``/``atol``/``max_steps`` (``steps`` is then ignored; backprop and checkpoint
    differentiate the accepted steps, treating the chosen step sizes as constants).  For
    ``"adjoint"`` the backward solve uses the same tableau: on the reversed grid, or
    adaptively with its own error control (``seminorm=True`` leaves dL/dtheta out of the error norm, Kidger et al.
    2021).  ``"discrete_adjoint"`` replays the forward's accepted steps in reverse.  ``stats``
    is filled in place (its backward fields when backward runs).  Neither adjoint's backward is
    differentiable again (no double backward).  Under
    ``torch.no_grad()`` every method is the same plain solve.
    """
    t0, t1, m = _check_options(gradient, t0, t1, method, steps, adaptive, rtol, atol, max_steps)
    cfg = _Options(steps=None if adaptive else steps, adaptive=adaptive, rtol=float(rtol), atol=float(atol),
                   max_steps=int(max_steps), seminorm=bool(seminorm))
    stats = stats if stats is not None else BackwardStats()
    if not isinstance(y0, torch.Tensor):
        raise SolverError(f"y0 must be a tensor, got {type(y0).__name__}")
    if not torch.is_grad_enabled() or gradient == "backprop":
        return _forward_solve(_Counted(f), y0, t0, t1, m, cfg, stats)[0]
    if gradient in ("adjoint", "discrete_adjoint"):
        params = tuple(_trainable(f))
        if not params:
            raise SolverError(
                f"gradient={gradient!r} needs f to be an nn.Module with at least one parameter that requires grad "
                f"(got {type(f).__name__} with none); use gradient='backprop' for a parameter-free vector field"
            )
        fn = _AdjointSolve if gradient == "adjoint" else _DiscreteAdjointSolve
        return fn.apply(f, m, t0, t1, cfg, stats, params, y0, *params)
    counted = _Counted(f)
    return _forward_solve(counted, y0, t0, t1, m, cfg, stats, step=_checkpoint_step(f, counted, stats, m))[0]


class _SavedBytes:
    """Context that records the distinct storages autograd saves for backward."""

    def __init__(self) -> None:
        self.storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda x: x)

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        try:
            st = x.untyped_storage()
            key = (str(x.device), st.data_ptr())
            self.storages[key] = max(st.nbytes(), self.storages.get(key, 0))
        except (RuntimeError, NotImplementedError):  # sparse / wrapper tensors without a storage
            self.storages[("id", id(x))] = x.numel() * x.element_size()
        return x

    @property
    def total(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> _SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


def saved_tensor_bytes(fn: Callable[[], torch.Tensor], backward: bool = True) -> int:
    """Bytes of the distinct storages saved for backward while ``fn()`` builds its loss.

    A deterministic memory measure (unlike process RSS): what autograd keeps alive between
    forward and backward.  Storages are deduplicated by data pointer, so a tensor saved by
    several ops (or a parameter) counts once.  Calls ``loss.backward()`` unless
    ``backward=False``.
    """
    with _SavedBytes() as rec:
        loss = fn()
    if backward:
        loss.backward()
    return rec.total


def _measure(fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]
             ) -> tuple[int, float, list[torch.Tensor], float, int | None]:
    """(saved bytes, wall seconds forward+backward, gradients, loss, peak CUDA bytes) without
    touching ``.grad``.  The peak is the most GPU memory allocated above what was allocated
    before the call (None on a CPU); CUDA work is synchronised before each clock reading."""
    device = params[0].device if params else torch.device("cpu")
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    with _SavedBytes() as rec:
        loss = fn()
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    peak = None
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    seconds = time.perf_counter() - start
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    return rec.total, seconds, grads, float(loss.detach()), peak


def gradient_comparison(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        integrator: RungeKuttaMethod | str = "rk4", steps_list: Sequence[int] = (1, 2, 4, 8),
                        methods: Sequence[str] = GRADIENT_METHODS, *,
                        progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Compare the gradient methods on ``model`` (an RKNet) for one batch: a table for the
    "Gradients & memory" page.

    One row per (method, steps): ``saved_bytes`` / ``saved_mib`` (see
    :func:`saved_tensor_bytes`), ``time_s`` (forward + backward), ``nfe_forward``,
    ``nfe_backward``, ``loss``, and the relative error and cosine similarity of all parameter
    gradients against backprop's at the same steps.  Runs in eval mode (BatchNorm running
    statistics neither used from the batch nor updated), restoring the mode afterwards.
    ``progress(fraction, message)`` is called after each row.
    """
    import pandas as pd

    bad = [mth for mth in methods if mth not in GRADIENT_METHODS]
    if bad:
        raise SolverError(f"unknown gradient methods {bad}; choose from {', '.join(GRADIENT_METHODS)}")
    for s in steps_list:
        if isinstance(s, bool) or not isinstance(s, Integral) or s < 1:
            raise SolverError(f"steps_list must hold positive integers, got {s!r}")
    m = get_method(integrator)
    cfg = getattr(model, "config", None)
    t0, t1 = (float(cfg.t0), float(cfg.t1)) if cfg is not None else (0.0, 1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    rows: list[dict[str, Any]] = []
    total = len(steps_list) * len(methods)
    model.eval()
    try:
        for steps in steps_list:
            ref: list[torch.Tensor] | None = None
            for mth in ["backprop"] + [k for k in methods if k != "backprop"]:
                stats = BackwardStats()

                def loss_fn(mth: str = mth, steps: int = steps, stats: BackwardStats = stats) -> torch.Tensor:
                    h0 = model.features(x)  # (N, C, H, W)
                    h1 = solve_with_gradient(model.gradient, h0, t0, t1, m, gradient=mth, steps=steps, stats=stats)
                    return F.cross_entropy(model.output(h1), y)

                nbytes, seconds, grads, loss, peak = _measure(loss_fn, params)
                flat = torch.cat([g.reshape(-1).double() for g in grads])  # (P,)
                if ref is None:
                    ref_flat = flat
                    ref = grads
                rel = float((flat - ref_flat).norm() / ref_flat.norm().clamp_min(1e-300))
                cos = float(F.cosine_similarity(flat, ref_flat, dim=0, eps=1e-300))
                if mth in methods:
                    rows.append({"method": mth, "steps": int(steps), "saved_bytes": nbytes,
                                 "saved_mib": nbytes / 2**20, "time_s": seconds, "nfe_forward": stats.nfe_forward,
                                 "nfe_backward": stats.nfe_backward, "grad_rel_error": rel, "grad_cosine": cos,
                                 "loss": loss, "peak_cuda_mib": None if peak is None else peak / 2**20})
                    if progress is not None:
                        progress(len(rows) / total, f"{mth} {m.name} x{steps}")
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=["method", "steps", "saved_bytes", "saved_mib", "time_s", "nfe_forward",
                                       "nfe_backward", "grad_rel_error", "grad_cosine", "loss",
                                       "peak_cuda_mib"])
