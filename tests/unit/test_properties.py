"""Property-based tests: any argument combination either works or raises the documented error."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from odenet import AdaptiveStepSolver, FixedStepSolver, SolverError, TrainConfig
from odenet.ode.integrators import METHODS, TableauError, custom_method
from odenet.ode.solvers import MAX_FIXED_STEPS, NonFiniteState
from odenet.train.config import ConfigError

anything = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=3))
times = st.one_of(st.floats(-10, 10), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3))
f_lin = lambda t, y: -0.7 * y + math.sin(t)  # noqa: E731
INTEGRATE_UP_TO = 2_000  # longer grids are checked, not integrated (time), up to the library's own limit


@given(t0=times, t1=times, steps=anything, step_size=anything, method=st.sampled_from(list(METHODS)))
def test_fixed_solver_works_or_raises_solver_error(t0, t1, steps, step_size, method):
    try:
        s = FixedStepSolver(f_lin, t0, t1, method, steps=steps, step_size=step_size)
    except SolverError as exc:
        assert str(exc)  # a message naming the problem
        return
    assert 1 <= len(s.hs) <= MAX_FIXED_STEPS  # the one limit: the library refuses longer grids
    assert s.ts[0] == t0 and s.ts[-1] == t1
    assert all(h != 0 for h in s.hs)
    if len(s.hs) > INTEGRATE_UP_TO:
        return
    try:
        y = s.integrate(torch.ones(2, dtype=torch.float64))
    except NonFiniteState as exc:  # e.g. 29 steps of 7e260: documented, never a silent NaN
        assert "NaN or infinite" in str(exc)
        return
    assert torch.isfinite(y).all()


@given(t0=st.floats(-5, 5), t1=st.floats(-5, 5), rtol=anything, atol=anything, max_steps=anything,
       method=st.sampled_from(["bosh3", "dopri5", "rk4"]))
def test_adaptive_solver_terminates_and_is_finite_or_raises(t0, t1, rtol, atol, max_steps, method):
    try:
        s = AdaptiveStepSolver(f_lin, t0, t1, method, rtol=rtol, atol=atol, max_steps=max_steps)
    except SolverError:
        return
    try:
        sol = s.solve(torch.ones(2, dtype=torch.float64))
    except SolverError as exc:  # MaxStepsExceeded / StepSizeTooSmall
        assert "max_steps" in str(exc) or "step size" in str(exc)
        return
    assert torch.isfinite(sol.y).all() and sol.stats.steps <= s.max_steps


@given(lr=anything, epochs=anything, batch_size=anything, train_size=anything, integrator=st.text(max_size=8) |
       st.sampled_from(list(METHODS)), steps=anything, t1=times)
def test_train_config_valid_or_config_error(lr, epochs, batch_size, train_size, integrator, steps, t1):
    kw = dict(lr=lr, epochs=epochs, batch_size=batch_size, train_size=train_size, integrator=integrator, steps=steps,
              t1=t1)
    kw = {k: v for k, v in kw.items() if v is not None}
    try:
        cfg = TrainConfig.from_dict(kw)  # flat model keys are folded into the nested ModelConfig
    except ConfigError as exc:
        assert str(exc)
        return
    assert cfg.model.steps >= 1 and cfg.model.integrator in METHODS
    assert cfg.lr > 0 and cfg.epochs >= 1 and 1 <= cfg.batch_size <= cfg.train_size <= 60_000
    assert TrainConfig.from_json(cfg.to_json()) == cfg


@given(a=st.lists(st.lists(st.floats(-3, 3), max_size=4), min_size=1, max_size=4),
       b=st.lists(st.floats(-3, 3), min_size=1, max_size=4))
def test_custom_tableau_valid_or_tableau_error(a, b):
    try:
        m = custom_method("prop", a, b)
    except TableauError as exc:
        assert str(exc)
        return
    y = m.step(f_lin, 0.0, 0.1, torch.ones(1, dtype=torch.float64))
    assert torch.isfinite(y).all() and m.order >= 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_state_is_not_silently_returned_by_adaptive(bad):
    s = AdaptiveStepSolver(lambda t, y: y * bad, 0.0, 1.0, "dopri5", max_steps=50)
    with pytest.raises(SolverError):
        s.solve(torch.ones(2))
