"""The one stepping loop (odenet.ode.stepping): every solver and gradient method steps through it, so they cost
the same evaluations, take the same steps, reuse the FSAL stage and raise the same errors.  The analysis views
use the same stage routine (rk_step) and one PCA."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn

from odenet.ode.gradients import GRADIENT_METHODS, BackwardStats, solve_with_gradient
from odenet.ode.integrators import METHODS, rk_step
from odenet.ode.solvers import AdaptiveStepSolver, FixedStepSolver
from odenet.ode.stepping import (
    AdaptiveControl,
    MaxStepsExceeded,
    NonFiniteState,
    StepSizeTooSmall,
    TensorTuple,
    error_ratio,
    integrate,
)


class Decay(nn.Module):
    """dy/dt = -rate * y (rate = 1): the review's problem, with a parameter for the adjoints."""

    def __init__(self) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        self.calls = 0

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -self.rate * y


class Spike(Decay):
    """A burst of decay 41 times faster around t = 1: the controller overshoots and rejects steps."""

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -self.rate * (1 + 40 * math.exp(-((t - 1) / 0.05) ** 2)) * y


class TinyMLP(nn.Module):
    """A small time-dependent nonlinear field: (N, 2) -> (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.l1 = nn.Linear(3, 16, dtype=torch.float64)
        self.l2 = nn.Linear(16, 2, dtype=torch.float64)
        self.calls = 0

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.l2(torch.tanh(self.l1(torch.cat([y, y.new_full((y.shape[0], 1), t)], 1))))


def y0_for(f: nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    return 2 * torch.randn(5, 2, dtype=torch.float64)  # (N, 2)


FIELDS = {"decay": Decay, "spike": Spike, "mlp": TinyMLP}
TOL = dict(rtol=1e-5, atol=1e-6)


def plain_solve(field: str, method: str, adaptive: bool):
    f = FIELDS[field]()
    solver = (AdaptiveStepSolver(f, 0.0, 2.0, method, **TOL) if adaptive
              else FixedStepSolver(f, 0.0, 2.0, method, steps=4))
    sol = solver.solve(y0_for(f))
    return sol, f.calls


def gradient_solve(field: str, method: str, adaptive: bool, gradient: str):
    f = FIELDS[field]()
    y0 = y0_for(f).requires_grad_(True)
    stats = BackwardStats()
    kw = dict(adaptive=True, **TOL) if adaptive else dict(steps=4)
    y1 = solve_with_gradient(f, y0, 0.0, 2.0, method, gradient=gradient, stats=stats, **kw)
    forward_calls = f.calls
    (y1**2).sum().backward()
    assert y0.grad is not None and torch.isfinite(y0.grad).all()
    return y1.detach(), stats, forward_calls, f.calls - forward_calls


@pytest.mark.parametrize("gradient", GRADIENT_METHODS)
@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed", "adaptive"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_solving_with_gradients_costs_the_plain_solvers_evaluations(field, method, adaptive, gradient):
    """Every gradient method's forward solve is the plain solver's: the same evaluations (FSAL and the reused
    f(t0, y0) included; before, 28 against 25 for dopri5 x4 and 37 against 32 adaptively on dy/dt = -y), the
    same attempted, accepted and rejected steps, and the same final state to the last bit."""
    sol, plain_calls = plain_solve(field, method, adaptive)
    y1, stats, forward_calls, _ = gradient_solve(field, method, adaptive, gradient)
    assert plain_calls == sol.stats.nfe
    assert forward_calls == stats.nfe_forward == sol.stats.nfe, (stats, sol.stats)
    assert stats.steps_forward == sol.stats.steps and stats.rejected_forward == sol.stats.rejected
    torch.testing.assert_close(y1, sol.y, rtol=0, atol=0)


def test_the_spike_makes_the_controller_reject():
    """The cases above cover rejected steps: the spike field rejects with both pairs."""
    for method in ("dopri5", "bosh3"):
        sol, _ = plain_solve("spike", method, adaptive=True)
        assert sol.stats.rejected >= 1 and sol.stats.steps == sol.stats.accepted + sol.stats.rejected


@pytest.mark.parametrize("steps", [1, 4])
def test_dopri5_fixed_grid_reuses_the_last_stage_on_every_path(steps):
    """FSAL: N fixed dopri5 steps cost 7 + 6 (N - 1) = 6N + 1 evaluations: the plain solver, every gradient
    method's forward, the adjoint's backward solve and checkpoint's recomputation (counted at f itself)."""
    expected = 6 * steps + 1
    f = Decay()
    y0 = torch.ones(3, dtype=torch.float64)
    assert FixedStepSolver(f, 0.0, 1.0, "dopri5", steps=steps).solve(y0).stats.nfe == f.calls == expected
    for gradient in GRADIENT_METHODS:
        f = Decay()
        stats = BackwardStats()
        y1 = solve_with_gradient(f, y0.clone().requires_grad_(True), 0.0, 1.0, "dopri5", gradient=gradient,
                                 steps=steps, stats=stats)
        assert f.calls == stats.nfe_forward == expected, gradient
        y1.sum().backward()
        if gradient in ("adjoint", "checkpoint"):  # a backward solve / a recomputation of the same steps
            assert f.calls - expected == stats.nfe_backward == expected, (gradient, stats)


def test_adjoint_backward_solve_is_the_same_loop():
    """Adaptive adjoint: the backward solve evaluates the augmented field once at t1, then 6 times per
    attempted dopri5 step, as AdaptiveStepSolver does when given a first step."""
    f = Spike()
    stats = BackwardStats()
    y1 = solve_with_gradient(f, torch.ones(3, dtype=torch.float64, requires_grad=True), 0.0, 2.0, "dopri5",
                             gradient="adjoint", adaptive=True, stats=stats, **TOL)
    y1.sum().backward()
    assert stats.steps_backward == stats.accepted_backward + stats.rejected_backward >= 3
    assert stats.nfe_backward == 1 + 6 * stats.steps_backward


# -- one set of errors -------------------------------------------------------------------------------------
def blow_up(t: float, y: torch.Tensor) -> torch.Tensor:
    return y * y  # y(t) = 1 / (1 - t) from y0 = 1: infinite at t = 1


class BlowUp(nn.Module):
    """blow_up with a parameter (the adjoints need one)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.p * blow_up(t, y)


def errors_on_both_paths(solve_plain, solve_grad) -> tuple[Exception, Exception]:
    errs = []
    for solve in (solve_plain, solve_grad):
        with pytest.raises(Exception) as info:
            solve()
        errs.append(info.value)
    return errs[0], errs[1]


def without_subject(msg: str) -> str:
    """The message with the solve's name ("the solve" / "the forward solve") removed."""
    return re.sub(r"^the (forward )?solve", "", msg)


def test_an_underflowing_step_raises_step_size_too_small_on_every_path():
    """Approaching the blow-up at t = 1 the step size underflows: StepSizeTooSmall with one message shape from
    the plain solver and from every gradient method (before: NonFiniteState from solve_with_gradient)."""
    y0 = torch.ones(2, dtype=torch.float64)
    shape = (r"^: step size underflowed to \S+ at t=0\.9999\d* \(error ratio \S+, DormandPrince54, rtol=0\.001, "
             r"atol=0\.0001\); the problem is stiff or blows up here$")
    for gradient in GRADIENT_METHODS:
        plain, grad = errors_on_both_paths(
            lambda: AdaptiveStepSolver(BlowUp(), 0.0, 2.0, "dopri5", rtol=1e-3, atol=1e-4).solve(y0),
            lambda gradient=gradient: solve_with_gradient(BlowUp(), y0.clone().requires_grad_(True), 0.0, 2.0,
                                                          "dopri5", gradient=gradient, adaptive=True, rtol=1e-3,
                                                          atol=1e-4, max_steps=10_000))
        assert type(plain) is type(grad) is StepSizeTooSmall, (gradient, plain, grad)
        assert re.match(shape, without_subject(str(plain))) and re.match(shape, without_subject(str(grad))), (
            str(plain), str(grad))


def test_max_steps_and_non_finite_states_read_the_same_on_both_paths():
    y0 = torch.ones(2, dtype=torch.float64)
    plain, grad = errors_on_both_paths(
        lambda: AdaptiveStepSolver(blow_up, 0.0, 2.0, "dopri5", atol=1e-4, max_steps=20).solve(y0),
        lambda: solve_with_gradient(blow_up, y0.clone().requires_grad_(True), 0.0, 2.0, "dopri5",
                                    gradient="backprop", adaptive=True, max_steps=20))
    assert type(plain) is type(grad) is MaxStepsExceeded
    shape = r"^: max_steps=20 exceeded at t=\S+ before reaching t1=2\.0 \(DormandPrince54, rtol=0\.001, atol=0\.0001\)"
    assert re.match(shape, without_subject(str(plain))) and re.match(shape, without_subject(str(grad)))
    # a fixed grid that overflows (float32, the fourth Euler step): checked once, at the end, on both paths
    y0 = torch.tensor([10.0])
    plain, grad = errors_on_both_paths(
        lambda: FixedStepSolver(lambda t, y: y**3, 0.0, 10.0, "euler", steps=5).solve(y0),
        lambda: solve_with_gradient(lambda t, y: y**3, y0.clone().requires_grad_(True), 0.0, 10.0, "euler",
                                    gradient="backprop", steps=5))
    assert type(plain) is type(grad) is NonFiniteState
    shape = r"^ became NaN or infinite at t=10 after 5 steps of Euler; use smaller steps"
    assert re.match(shape, without_subject(str(plain))) and re.match(shape, without_subject(str(grad)))


def test_a_non_finite_field_at_t0_is_named_before_any_step():
    with pytest.raises(NonFiniteState, match=r"f\(t0, y0\) is NaN or infinite at t0=0 \(the vector field"):
        AdaptiveStepSolver(lambda t, y: y * math.nan, 0.0, 1.0, "dopri5").solve(torch.ones(2))


# -- the loop's pieces -------------------------------------------------------------------------------------
def test_error_ratio_groups_make_a_seminorm():
    """A TensorTuple's error ratio is the largest RMS over its groups; parts in no group are not measured."""
    y = TensorTuple([torch.ones(4), torch.ones(4), torch.ones(2)])
    err = TensorTuple([torch.full((4,), 1e-3), torch.zeros(4), torch.full((2,), 1.0)])
    # scale = atol + rtol * 1 = 2e-3: parts' RMS are 0.5, 0 and 500
    assert error_ratio(err, y, y, rtol=1e-3, atol=1e-3, groups=((0,), (1,))) == pytest.approx(0.5)
    assert error_ratio(err, y, y, rtol=1e-3, atol=1e-3) == pytest.approx(500)
    # pooling parts 0 and 2 into one RMS: sqrt((4 * 0.25 + 2 * 250000) / 6)
    pooled = error_ratio(err, y, y, rtol=1e-3, atol=1e-3, groups=((0, 2),))
    assert pooled == pytest.approx(math.sqrt((4 * 0.25 + 2 * 250_000) / 6))
    plain = error_ratio(torch.full((4,), 1e-3), torch.ones(4), torch.ones(4), rtol=1e-3, atol=1e-3)
    assert plain == pytest.approx(0.5)


def test_integrate_runs_a_tensor_tuple_like_its_parts():
    """Two decays stepped as one TensorTuple on a grid give each part's own solve, bit for bit."""
    a, b = torch.ones(3, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64)
    rk4 = METHODS["rk4"]
    grid = [0.0, 0.25, 0.5, 1.0]
    both = integrate(lambda t, s: TensorTuple([-p for p in s.parts]), rk4, 0.0, 1.0, TensorTuple([a, b]), grid=grid)
    for i, part in enumerate((a, b)):
        alone = integrate(lambda t, y: -y, rk4, 0.0, 1.0, part, grid=grid)
        assert torch.equal(both.y.parts[i], alone.y)
    assert both.stats.nfe == 12 and [r.dt for r in both.log] == [0.25, 0.25, 0.5]


def test_integrate_takes_a_grid_or_a_control():
    rk4, dopri5 = METHODS["rk4"], METHODS["dopri5"]
    y0 = torch.ones(1)
    with pytest.raises(ValueError, match="either a grid or an adaptive control"):
        integrate(lambda t, y: -y, rk4, 0.0, 1.0, y0)
    with pytest.raises(ValueError, match="either a grid or an adaptive control"):
        integrate(lambda t, y: -y, dopri5, 0.0, 1.0, y0, grid=[0.0, 1.0], control=AdaptiveControl())
    with pytest.raises(ValueError, match="grid must run from t0=0.0 to t1=1.0"):
        integrate(lambda t, y: -y, rk4, 0.0, 1.0, y0, grid=[0.0, 0.5])
    with pytest.raises(ValueError, match="max_steps must be a positive integer, got 0"):
        AdaptiveControl(max_steps=0)


# -- one stage routine and one PCA for the analysis views --------------------------------------------------
def test_rk_step_keeps_its_stages_on_request_without_changing_the_step():
    f = lambda t, y: torch.stack([y[1], -y[0] * (1 + t)])  # noqa: E731
    y = torch.tensor([1.0, 0.5], dtype=torch.float64)
    for name, m in METHODS.items():
        tab = m.tableau
        plain = rk_step(tab, f, 0.2, 0.3, y)
        full = rk_step(tab, f, 0.2, 0.3, y, keep_stages=True)
        assert plain.ks is None and plain.inputs is None
        assert torch.equal(full.y, plain.y) and len(full.ks) == len(full.inputs) == m.stages, name
        for i, (yi, ki) in enumerate(zip(full.inputs, full.ks)):
            assert torch.equal(ki, f(0.2 + tab.c[i] * 0.3, yi)), (name, i)
            expect = y + 0.3 * sum((a * k for a, k in zip(tab.a[i][:i], full.ks)), torch.zeros(2, dtype=torch.float64))
            torch.testing.assert_close(yi, expect, rtol=1e-14, atol=1e-15)


def test_analysis_stage_views_are_the_solvers_step():
    from odenet.inspect.analysis import rk_stages

    f = lambda t, y: torch.stack([y[1], -y[0]])  # noqa: E731
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for name in ("euler", "rk4", "dopri5"):
        m = METHODS[name]
        st = rk_stages(m, f, 0.1, 0.5, y)
        assert torch.equal(st.y_next, m.step(f, 0.1, 0.5, y)), name  # the same routine, so the same bits
        assert st.ys.shape == st.ks.shape == (m.stages, 2)
        assert torch.equal(st.ts, torch.tensor([0.1 + c * 0.5 for c in m.tableau.c], dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 4, 2, 2, 2), (40, 30, 1, 2, 2)], ids=["wide", "tall"])
def test_one_pca_serves_both_names(shape):
    """pca_project is pca_fit's coordinates and explained variance, and both match an SVD whether there are
    fewer samples than dimensions (Gram route) or more (covariance route)."""
    from odenet.inspect.analysis import pca_fit, pca_project

    torch.manual_seed(0)
    x = torch.randn(*shape)
    coords, explained = pca_project(x, k=2)
    fit = pca_fit(x, k=2)
    assert torch.equal(coords, fit.coords) and torch.equal(explained, fit.explained)
    flat = x.reshape(shape[0] * shape[1], -1).double()
    centred = flat - flat.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    torch.testing.assert_close(fit.coords.abs(), (centred @ vh[:2].T).reshape(*shape[:2], 2).float().abs(),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fit.explained, (s[:2] ** 2 / (s**2).sum()).float())
    torch.testing.assert_close(fit.project(x), fit.coords, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("converges", [True, False], ids=["iterated", "fallback"])
def test_large_pca_takes_the_leading_components_exactly(converges, monkeypatch):
    """Above EXACT_PCA_SIZE rows and columns the leading components come from subspace iteration
    (no full eigendecomposition: the Trajectories page's 200 images x 11 times took 3.5 s); they match
    an SVD, and when the iteration does not converge the full decomposition gives the same."""
    import odenet.inspect.analysis as analysis

    gen = torch.Generator().manual_seed(1)
    m, d = 700, 600
    x = (torch.randn(m, d, generator=gen) * 0.8 ** torch.arange(d, dtype=torch.float32)).reshape(70, 10, d // 4, 2, 2)
    flat = x.reshape(m, d).double()
    centred = flat - flat.mean(0)
    assert analysis._top_eigenpairs(centred, 3, max_iter=1) is None  # one round is not enough: it says so
    if not converges:
        monkeypatch.setattr(analysis, "_top_eigenpairs", lambda *a, **k: None)
    calls: list[int] = []
    full = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda a: calls.append(a.shape[0]) or full(a))
    fit = analysis.pca_fit(x, k=3)
    assert (max(calls) == d) != converges  # the full D x D decomposition only as the fallback
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    torch.testing.assert_close(fit.components.abs(), vh[:3].abs(), rtol=0, atol=1e-6)
    torch.testing.assert_close(fit.explained, (s[:3] ** 2 / (s**2).sum()).float())
    torch.testing.assert_close(fit.coords.abs(), (centred @ vh[:3].T).reshape(70, 10, 3).float().abs(),
                               rtol=1e-5, atol=1e-4)
