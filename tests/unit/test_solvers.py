import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from odenet import AdaptiveStepSolver, FixedStepSolver, MaxStepsExceeded, SolverError
from odenet.ode.integrators import METHODS, Euler, RungeKutta4, custom_method
from odenet.ode.problems import PROBLEMS
from odenet.ode.solvers import IController, SolverSpec, StepSizeTooSmall

f_decay = PROBLEMS["decay"].f


def test_step_size_has_no_float_residue():
    s = FixedStepSolver(f_decay, 0.0, 1.0, RungeKutta4, step_size=0.1)
    assert len(s.hs) == 10
    assert s.ts[-1] == 1.0 and s.ts[3] == pytest.approx(0.3, abs=1e-15)
    assert s.nfe == 40


def test_step_size_with_true_residual_adds_one_short_step():
    s = FixedStepSolver(f_decay, 0.0, 1.0, Euler, step_size=0.3)
    assert s.hs == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert s.ts[-1] == 1.0


def test_steps_split_evenly_and_backward_integration():
    s = FixedStepSolver(f_decay, 0.0, 2.0, "rk4", steps=4)
    assert s.hs == pytest.approx([0.5] * 4)
    y1 = s.integrate(torch.tensor([1.0], dtype=torch.float64))
    back = FixedStepSolver(f_decay, 2.0, 0.0, "rk4", steps=64)
    assert back.hs == pytest.approx([-2 / 64] * 64)
    y0 = back.integrate(torch.tensor([math.exp(-1.0)], dtype=torch.float64))
    assert y1.item() == pytest.approx(math.exp(-1.0), rel=1e-4)
    assert y0.item() == pytest.approx(1.0, rel=1e-8)
    bs = FixedStepSolver(f_decay, 1.0, 0.0, "euler", step_size=0.25)
    assert bs.ts == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize("key", list(METHODS))
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_nfe_is_counted_exactly(key, steps):
    calls = 0

    def f(t, y):
        nonlocal calls
        calls += 1
        return -y

    s = FixedStepSolver(f, 0.0, 1.0, key, steps=steps)
    sol = s.solve(torch.ones(3), trajectory=True)
    m = METHODS[key]
    expected = m.stages * steps - (steps - 1 if key in ("bosh3", "dopri5") else 0)  # FSAL: last stage reused
    assert calls == sol.stats.nfe == s.nfe == expected
    assert sum(r.nfe for r in sol.log) == calls and len(sol.log) == steps
    assert sol.stats.steps == sol.stats.accepted == steps and sol.stats.rejected == 0
    assert len(sol.ts) == len(sol.ys) == steps + 1
    assert sol.stacked().shape == (steps + 1, 3)
    assert torch.equal(sol.ys[-1], sol.y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), r"give either steps or step_size \(both are None\)"),
        (dict(steps=2, step_size=0.5), r"not both \(steps=2, step_size=0.5\)"),
        (dict(steps=0), r"steps must be a positive integer, got 0"),
        (dict(steps=-3), r"steps must be a positive integer, got -3"),
        (dict(steps=2.5), r"steps must be a positive integer, got 2.5"),
        (dict(steps=True), r"steps must be a positive integer, got True"),
        (dict(step_size=0.0), r"step_size must be a positive finite number, got 0.0"),
        (dict(step_size=-0.1), r"step_size must be a positive finite number, got -0.1"),
        (dict(step_size=float("nan")), r"step_size must be a positive finite number, got nan"),
        (dict(step_size=1.5), r"step_size=1.5 is larger than the interval \|t1 - t0\| = 1.0"),
        (dict(step_size=1e-300), r"step_size=1e-300 on an interval of length 1 needs 1e\+300 steps, more than"),
        (dict(steps=10**9), r"steps=1000000000 is more than the limit of 1,000,000 steps"),
    ],
)
def test_fixed_step_bad_arguments(kwargs, message):
    with pytest.raises(SolverError, match=message):
        FixedStepSolver(f_decay, 0.0, 1.0, Euler, **kwargs)


@pytest.mark.parametrize(
    "t0, t1, message",
    [
        (0.0, 0.0, r"t0 and t1 must differ .* t0 = t1 = 0.0"),
        (float("nan"), 1.0, r"t0 must be finite, got nan"),
        (0.0, float("inf"), r"t1 must be finite, got inf"),
        ("0", 1.0, r"t0 must be a real number, got '0'"),
    ],
)
def test_bad_times(t0, t1, message):
    with pytest.raises(SolverError, match=message):
        FixedStepSolver(f_decay, t0, t1, Euler, steps=1)
    with pytest.raises(SolverError, match=message):
        AdaptiveStepSolver(f_decay, t0, t1, "dopri5")


def test_solver_error_is_value_error():
    assert issubclass(SolverError, ValueError) and issubclass(MaxStepsExceeded, SolverError)


def test_adaptive_needs_embedded_pair():
    with pytest.raises(SolverError, match=r"method='RungeKutta4' has no embedded error estimate"):
        AdaptiveStepSolver(f_decay, 0.0, 1.0, "rk4")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rtol=0), r"rtol must be a positive finite number, got 0"),
        (dict(atol=-1e-6), r"atol must be a positive finite number, got -1e-06"),
        (dict(max_steps=0), r"max_steps must be a positive integer, got 0"),
        (dict(min_step=-1.0), r"min_step must be a finite number >= 0, got -1.0"),
        (dict(max_step=0.0), r"max_step must be a positive number, got 0.0"),
        (dict(safety=1.5), r"safety must be in \(0, 1\], got 1.5"),
    ],
)
def test_adaptive_bad_arguments(kwargs, message):
    with pytest.raises(SolverError, match=message):
        AdaptiveStepSolver(f_decay, 0.0, 1.0, "dopri5", **kwargs)


def test_max_steps_exceeded_is_reported():
    s = AdaptiveStepSolver(PROBLEMS["vanderpol"].f, 0.0, 10.0, "bosh3", rtol=1e-10, atol=1e-10, max_steps=20)
    with pytest.raises(MaxStepsExceeded, match=r"max_steps=20 exceeded at t=.* before reaching t1=10.0"):
        s.solve(torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_min_step_violation_is_reported():
    s = AdaptiveStepSolver(PROBLEMS["vanderpol"].f, 0.0, 10.0, "dopri5", rtol=1e-12, atol=1e-12, min_step=0.05)
    with pytest.raises(StepSizeTooSmall, match=r"fell below min_step=0.05"):
        s.solve(torch.tensor([2.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("key", ["bosh3", "dopri5"])
@pytest.mark.parametrize("problem", ["decay", "harmonic", "spiral", "nonautonomous"])
def test_adaptive_meets_tolerance_and_looser_takes_fewer_steps(key, problem):
    p = PROBLEMS[problem]
    exact = p.solution(torch.tensor([p.t1], dtype=torch.float64))[0]
    steps = []
    for tol in (1e-4, 1e-7):
        s = AdaptiveStepSolver(p.f, p.t0, p.t1, key, rtol=tol, atol=tol)
        sol = s.solve(p.y0_tensor(), trajectory=True)
        err = (sol.y - exact).abs().max().item()
        # global error tracks the local tolerance within a modest factor
        assert err < 50 * tol * max(1.0, exact.abs().max().item()), (tol, err)
        st = sol.stats
        assert st.steps == st.accepted + st.rejected and st.accepted == len(sol.ts) - 1
        assert sol.ts[-1] == p.t1 and len(sol.ys) == len(sol.ts)
        steps.append(st.accepted)
    assert steps[0] < steps[1]


@pytest.mark.parametrize("problem", ["vanderpol", "lotka_volterra", "spiral"])
def test_adaptive_agrees_with_scipy(problem):
    p = PROBLEMS[problem]
    ours = AdaptiveStepSolver(p.f, p.t0, p.t1, "dopri5", rtol=1e-10, atol=1e-10).integrate(p.y0_tensor())
    ref = solve_ivp(lambda t, y: p.f(t, torch.from_numpy(y)).numpy(), (p.t0, p.t1), np.array(p.y0),
                    method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    assert np.allclose(ours.numpy(), ref, rtol=1e-7, atol=1e-7), (ours, ref)


def test_adaptive_nfe_counted_exactly():
    calls = 0

    def f(t, y):
        nonlocal calls
        calls += 1
        return math.cos(t) * y

    sol = AdaptiveStepSolver(f, 0.0, 4.0, "dopri5", rtol=1e-6, atol=1e-6).solve(torch.ones(1, dtype=torch.float64))
    # f(t0, y0) and the starting-step estimate, then 6 per step: dopri5 is FSAL and a rejected step reuses k1
    assert sol.stats.nfe == calls == 2 + 6 * sol.stats.steps


def test_adaptive_backward():
    p = PROBLEMS["decay"]
    y = AdaptiveStepSolver(p.f, 4.0, 0.0, "dopri5", rtol=1e-9, atol=1e-12).integrate(
        torch.tensor([math.exp(-2.0)], dtype=torch.float64))
    assert y.item() == pytest.approx(1.0, rel=1e-7)


def test_controller_is_separate_and_swappable():
    c = IController(safety=0.8, min_factor=0.5, max_factor=2.0)
    assert c.propose(0.1, 0.0, 4) == (True, pytest.approx(0.2))
    accept, dt = c.propose(0.1, 1e6, 4)
    assert not accept and dt == pytest.approx(0.05)
    s = AdaptiveStepSolver(f_decay, 0.0, 4.0, "dopri5", controller=c)
    assert s.controller is c


def test_solver_spec_builds_the_right_solver_and_validates():
    assert isinstance(SolverSpec("rk4", steps=2).build(f_decay), FixedStepSolver)
    assert isinstance(SolverSpec("dopri5", adaptive=True).build(f_decay), AdaptiveStepSolver)
    with pytest.raises(SolverError, match="adaptive=True needs an embedded pair.*'rk4'"):
        SolverSpec("rk4", adaptive=True)
    with pytest.raises(SolverError, match="steps must be a positive integer, got 0"):
        SolverSpec(steps=0)
    assert SolverSpec("dopri5", adaptive=True, rtol=1e-5).label() == "dopri5 adaptive (rtol 1e-05)"
    assert SolverSpec("rk4", steps=3).label() == "rk4 x3"


def test_fsal_is_read_off_the_tableau():
    assert [k for k, m in METHODS.items() if m.tableau.fsal] == ["bosh3", "dopri5"]
    heun = custom_method("h", [[0], [1]], [0.5, 0.5])
    assert not heun.tableau.fsal


def test_adaptive_dopri5_costs_six_evaluations_per_step_and_log_matches_stats():
    calls = 0

    def f(t, y):
        nonlocal calls
        calls += 1
        return torch.stack([y[1], -y[0]])

    s = AdaptiveStepSolver(f, 0.0, 20.0, "dopri5", rtol=1e-8, atol=1e-8, first_step=0.5)
    sol = s.solve(torch.tensor([1.0, 0.0], dtype=torch.float64))
    st = sol.stats
    assert st.rejected >= 1  # first_step=0.5 is too long for rtol 1e-8
    # one f(t0, y0), then 6 new evaluations per attempted step (rejected ones reuse k1 too)
    assert calls == st.nfe == 1 + 6 * st.steps
    assert len(sol.log) == st.steps and sum(r.accepted for r in sol.log) == st.accepted
    assert sum(r.nfe for r in sol.log) == st.nfe
    assert all((r.error_ratio <= 1) == r.accepted for r in sol.log)
    assert abs(sol.y[0].item() - math.cos(20.0)) < 1e-6


def test_fixed_step_blow_up_is_reported_not_returned():
    from odenet.ode.solvers import NonFiniteState

    s = FixedStepSolver(lambda t, y: y**3, 0.0, 10.0, "euler", steps=5)
    with pytest.raises(NonFiniteState, match=r"the solve became NaN or infinite at t=10 after 5 steps of Euler"):
        s.integrate(torch.tensor([10.0]))  # float32 overflows on the fourth step
