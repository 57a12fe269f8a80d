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
  vector-Jacobian product.  Adaptive solves replay the accepted step sizes (a list of floats).
- ``"checkpoint"``: autograd, but each solver step is recomputed in backward
  (``torch.utils.checkpoint``), so only one state per step is kept (two for FSAL tableaux: the
  reused first stage enters the step as an input).  Gradients equal backprop's to float rounding;
  memory grows with steps x state instead of steps x stages x activations.

Every forward solve, and the adjoint's backward solve, is the plain solvers' loop
(:func:`odenet.ode.stepping.integrate`): the same evaluations (FSAL reuse, the reused ``f(t0, y0)``),
steps, error norm, initial step and exceptions as :class:`~odenet.ode.solvers.FixedStepSolver` and
:class:`~odenet.ode.solvers.AdaptiveStepSolver`.

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
from dataclasses import dataclass, replace
from numbers import Integral
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from odenet.ode.integrators import RKStep, RungeKuttaMethod, get_method, rk_step
from odenet.ode.solvers import SolverSpec, _check_interval, fixed_grid
from odenet.ode.stepping import (
    AdaptiveControl,
    NonFiniteState,
    Solution,
    SolverError,
    SolverStats,
    StepFunction,
    TensorTuple,
    integrate,
)

if TYPE_CHECKING:  # pandas is an optional (app) dependency, imported where used
    import pandas as pd

__all__ = [
    "GRADIENT_METHODS",
    "BackwardStats",
    "solve_with_gradient",
    "solve_spec",
    "saved_tensor_bytes",
    "gradient_comparison",
]

GRADIENT_METHODS = ("backprop", "adjoint", "discrete_adjoint", "checkpoint")
RECONSTRUCTION_REFINEMENTS = 1  # fixed-point passes after the backward step (discrete adjoint)
VectorField = Callable[[float, Any], Any]


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


# -- buffers, counting, options ----------------------------------------------------------
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


class _CallCounter:
    """Wraps a vector field and counts its calls while ``active`` (the backward's re-evaluations; the loop
    counts the solves' own evaluations)."""

    def __init__(self, f: VectorField, active: bool = False) -> None:
        self.f = f
        self.active = active
        self.calls = 0

    def __call__(self, t: float, y: Any) -> Any:
        if self.active:
            self.calls += 1
        return self.f(t, y)


@dataclass(frozen=True)
class _Options:
    """Validated solver options passed through the autograd.Function: the fixed grid's ``steps``, or the
    adaptive ``control`` (tolerances, ``max_steps``); ``seminorm`` for the adjoint's backward error norm."""

    steps: int | None
    control: AdaptiveControl | None
    seminorm: bool


def _forward_solve(f: VectorField, y0: torch.Tensor, t0: float, t1: float, method: RungeKuttaMethod,
                   cfg: _Options, stats: BackwardStats, step: StepFunction | None = None,
                   record: bool = False) -> Solution:
    """The forward solve of every gradient method: the one loop on the grid or adaptively, as a plain solver
    would run it (same evaluations, FSAL, steps); ``step`` is checkpoint's wrapper of the tableau step.
    ``stats`` gets the forward counts; ``record`` keeps the step log (the discrete adjoint replays it)."""
    grid = None if cfg.control is not None else fixed_grid(t0, t1, cfg.steps, None)
    sol = integrate(f, method, t0, t1, y0, grid=grid, control=cfg.control, step=step, record=record,
                    what="the forward solve")
    stats.nfe_forward, stats.steps_forward = sol.stats.nfe, sol.stats.steps
    stats.rejected_forward = sol.stats.rejected
    return sol


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


ADJOINT_PARTS = ("h", "dL/dh", "dL/dtheta")  # names of the augmented state's parts (the rest are dL/dtheta too)


class _AdjointSolve(torch.autograd.Function):
    """``y(t1)`` from ``y0``; backward solves the augmented adjoint system from t1 to t0."""

    @staticmethod
    def forward(ctx: Any, f: nn.Module, method: RungeKuttaMethod, t0: float, t1: float, cfg: _Options,
                stats: BackwardStats, params: tuple[nn.Parameter, ...], y0: torch.Tensor,
                *param_inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sol = _forward_solve(f, y0, t0, t1, method, cfg, stats, record=True)
        ctx.f, ctx.method, ctx.t0, ctx.t1, ctx.cfg, ctx.stats, ctx.params = f, method, t0, t1, cfg, stats, params
        ctx.steps = [(r.t, r.dt) for r in sol.log if r.accepted]  # floats, not tensors
        ctx.next_step, ctx.autocast = sol.next_step, _autocast_state(y0)
        ctx.save_for_backward(sol.y)  # the only tensor kept: y(t1), (N, ...) like y0
        return sol.y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y1: torch.Tensor) -> tuple[Any, ...]:
        (y1,) = ctx.saved_tensors
        f, method, cfg, stats, params = ctx.f, ctx.method, ctx.cfg, ctx.stats, ctx.params
        t0, t1 = ctx.t0, ctx.t1
        _check_incoming(grad_y1, "the adjoint solve")

        def aug_field(t: float, s: TensorTuple) -> TensorTuple:
            """[h, a, g]' = [f, -a^T df/dh, -a^T df/dtheta] at time t."""
            h, a = s.parts[0], s.parts[1]
            with torch.enable_grad():
                h_leaf = h.detach().requires_grad_(True)
                fh = f(t, h_leaf)
                vjps = torch.autograd.grad(fh, (h_leaf, *params), a, allow_unused=True)
            out = [fh.detach(), -vjps[0] if vjps[0] is not None else torch.zeros_like(h)]
            out += [-v if v is not None else torch.zeros_like(p) for v, p in zip(vjps[1:], params)]
            return TensorTuple(out)

        s = TensorTuple([y1, grad_y1.to(y1.dtype)] + [torch.zeros_like(p) for p in params])
        if cfg.control is None:
            grid, control = fixed_grid(t0, t1, cfg.steps, None)[::-1], None
        else:  # the seminorm measures h and dL/dh only; the full norm adds all of dL/dtheta as one group
            groups = ((0,), (1,)) if cfg.seminorm else ((0,), (1,), tuple(range(2, len(s.parts))))
            grid, control = None, replace(cfg.control, first_step=ctx.next_step, groups=groups)
        with _preserved_buffers(f), _autocast_like(ctx.autocast):
            sol = integrate(aug_field, method, t1, t0, s, grid=grid, control=control, record=False,
                            what="the adjoint backward solve", names=ADJOINT_PARTS,
                            hint="integrating h backwards in time can be unstable - use more steps, tighter "
                                 "tolerances, or gradient='checkpoint'")
        stats.nfe_backward += sol.stats.nfe
        stats.steps_backward += sol.stats.steps
        stats.accepted_backward += sol.stats.accepted
        stats.rejected_backward += sol.stats.rejected
        parts = sol.y.parts
        grad_y0 = parts[1] if ctx.needs_input_grad[7] else None
        return (None,) * 7 + (grad_y0, *parts[2:])


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
        counted = _CallCounter(f, active=True)
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
        stats.nfe_backward += counted.calls
        stats.steps_backward += len(ctx.steps)
        stats.accepted_backward += len(ctx.steps)
        stats.reconstruction_residual = max(stats.reconstruction_residual, worst)
        grad_y0 = a if ctx.needs_input_grad[7] else None
        return (None,) * 7 + (grad_y0, *g)


def _all_finite(parts: Sequence[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(x).all() for x in parts]).all())


# -- checkpoint --------------------------------------------------------------------------
def _checkpoint_step(f: VectorField, stats: BackwardStats, method: RungeKuttaMethod) -> StepFunction:
    """The tableau step, its activations recomputed in backward (``torch.utils.checkpoint``), with ``f``'s
    buffers preserved around the recomputation (BatchNorm running stats updated once).  A known first stage
    (FSAL) enters the checkpoint as an input, so the recomputed step reuses it as the forward did."""
    counter = _CallCounter(f)
    tab = method.tableau

    @contextlib.contextmanager
    def recompute_ctx() -> Iterator[None]:
        before = counter.calls
        counter.active = True
        try:
            with _preserved_buffers(f):
                yield
        finally:
            counter.active = False
            stats.nfe_backward += counter.calls - before
            stats.steps_backward += 1
            stats.accepted_backward += 1

    def context_fn() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), recompute_ctx()

    def step(t: float, dt: float, y: torch.Tensor, k1: torch.Tensor | None) -> RKStep:
        def run(*y_k1: torch.Tensor) -> RKStep:
            return rk_step(tab, counter, t, dt, *y_k1)

        inputs = (y,) if k1 is None else (y, k1)
        return checkpoint(run, *inputs, use_reentrant=False, context_fn=context_fn)

    return step


# -- public API --------------------------------------------------------------------------
def _check_options(gradient: str, t0: Any, t1: Any, method: Any, steps: Any, adaptive: bool, rtol: Any,
                   atol: Any, max_steps: Any) -> tuple[float, float, RungeKuttaMethod, AdaptiveControl | None]:
    if gradient not in GRADIENT_METHODS:
        raise SolverError(f"gradient must be one of {', '.join(GRADIENT_METHODS)}; got {gradient!r}")
    t0, t1 = _check_interval(t0, t1)
    m = get_method(method)
    if not adaptive:
        if steps is None:
            raise SolverError("steps is required for a fixed-step solve (or pass adaptive=True)")
        return t0, t1, m, None
    if not m.adaptive:
        raise SolverError(f"adaptive=True needs a method with an embedded pair (e.g. 'bosh3', 'dopri5'); "
                          f"{m.name!r} has none")
    return t0, t1, m, AdaptiveControl(rtol=rtol, atol=atol, max_steps=max_steps)


def solve_with_gradient(f: VectorField, y0: torch.Tensor, t0: float, t1: float, method: RungeKuttaMethod | str,
                        *, gradient: str, steps: int | None = None, adaptive: bool = False, rtol: float = 1e-3,
                        atol: float = 1e-4, max_steps: int = 1000, seminorm: bool = True,
                        stats: BackwardStats | None = None) -> torch.Tensor:
    """Solve ``y' = f(t, y)`` from ``y0`` at ``t0`` to ``t1``; return ``y(t1)`` whose gradient
    (to ``y0`` and ``f``'s parameters) is computed the ``gradient`` way (see module docstring).

    Fixed grid with ``steps``, or ``adaptive=True`` with ``rtol``/``atol``/``max_steps`` (``steps`` is then
    ignored; backprop and checkpoint differentiate the accepted steps, treating the chosen step sizes as
    constants).  The forward solve is the plain solvers' loop (:func:`odenet.ode.stepping.integrate`): the same
    evaluations, steps and errors as :class:`~odenet.ode.solvers.FixedStepSolver` /
    :class:`~odenet.ode.solvers.AdaptiveStepSolver`.  For ``"adjoint"`` the backward solve runs the same loop and
    tableau: on the reversed grid, or adaptively with its own error control (``seminorm=True`` leaves dL/dtheta
    out of the error norm, Kidger et al. 2021).  ``"discrete_adjoint"`` replays the forward's accepted steps in
    reverse.  ``stats`` is filled in place (its backward fields when backward runs).  Neither adjoint's backward
    is differentiable again (no double backward).  Under ``torch.no_grad()`` every method is the same plain solve.
    """
    t0, t1, m, control = _check_options(gradient, t0, t1, method, steps, adaptive, rtol, atol, max_steps)
    cfg = _Options(steps=None if adaptive else steps, control=control, seminorm=bool(seminorm))
    stats = stats if stats is not None else BackwardStats()
    if not isinstance(y0, torch.Tensor):
        raise SolverError(f"y0 must be a tensor, got {type(y0).__name__}")
    if not torch.is_grad_enabled() or gradient == "backprop":
        return _forward_solve(f, y0, t0, t1, m, cfg, stats).y
    if gradient in ("adjoint", "discrete_adjoint"):
        params = tuple(_trainable(f))
        if not params:
            raise SolverError(
                f"gradient={gradient!r} needs f to be an nn.Module with at least one parameter that requires grad "
                f"(got {type(f).__name__} with none); use gradient='backprop' for a parameter-free vector field"
            )
        fn = _AdjointSolve if gradient == "adjoint" else _DiscreteAdjointSolve
        return fn.apply(f, m, t0, t1, cfg, stats, params, y0, *params)
    return _forward_solve(f, y0, t0, t1, m, cfg, stats, step=_checkpoint_step(f, stats, m)).y


def solve_spec(f: VectorField, y0: torch.Tensor, spec: SolverSpec, gradient: str = "backprop",
               trajectory: bool = False, prepare: Callable[[torch.Tensor], VectorField] | None = None) -> Solution:
    """Integrate ``f`` from ``y0`` as ``spec`` says, differentiated the ``gradient`` way.

    The one rule every model uses: with autograd on and a gradient method other than backprop,
    :func:`solve_with_gradient` gives the final state (no trajectory on that path); otherwise the
    spec's plain solver runs (on ``prepare(y0)`` if given: an equivalent, faster form of ``f``
    with per-solve work hoisted out)."""
    if gradient != "backprop" and torch.is_grad_enabled() and not trajectory:
        bs = BackwardStats()
        y = solve_with_gradient(f, y0, spec.t0, spec.t1, spec.method, gradient=gradient, steps=spec.steps,
                                adaptive=spec.adaptive, rtol=spec.rtol, atol=spec.atol, max_steps=spec.max_steps,
                                stats=bs)
        return Solution(y=y, stats=SolverStats(nfe=bs.nfe_forward, steps=bs.steps_forward,
                                               accepted=bs.steps_forward - bs.rejected_forward,
                                               rejected=bs.rejected_forward))
    return spec.build(prepare(y0) if prepare is not None else f, check_finite=False).solve(y0, trajectory=trajectory)


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
