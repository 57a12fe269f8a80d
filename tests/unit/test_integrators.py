import math

import pytest
import torch

from odenet.ode import integrators as I
from odenet.ode.integrators import ButcherTableau, TableauError, custom_method, get_method, rk_step
from odenet.ode.problems import PROBLEMS, convergence

FIXED = [k for k, m in I.METHODS.items()]


@pytest.mark.parametrize("key", FIXED)
@pytest.mark.parametrize("problem", ["nonautonomous", "spiral", "harmonic", "decay"])
def test_empirical_order_matches_nominal(key, problem):
    m = get_method(key)
    res = convergence(PROBLEMS[problem], m)  # float64, halving step sizes
    assert res.steps == [res.steps[0] * 2**i for i in range(4)]
    assert all(e1 > e2 for e1, e2 in zip(res.errors, res.errors[1:]))
    assert abs(res.fitted_order - m.order) <= 0.2, (key, res.errors, res.fitted_order)


def test_notebook_names_and_interface():
    assert I.Euler.name == "Euler" and I.Euler.order == 1
    assert I.ModifiedEuler.name == "ModifiedEuler" and I.ModifiedEuler.order == 2
    assert I.RungeKutta4.name == "RungeKutta4" and I.RungeKutta4.order == 4
    f = lambda t, y: -2.0 * y  # noqa: E731
    # the notebook's Euler step y + dt f(t, y)
    assert I.Euler.step(f, 0.0, 0.1, torch.tensor(1.0)).item() == pytest.approx(0.8)
    # classic RK4 of y' = -2y, one step of 0.1 equals the degree-4 Taylor polynomial of e^{-0.2}
    z = -0.2
    assert I.RungeKutta4.step(f, 0.0, 0.1, torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(
        1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24, abs=1e-15)


def test_generic_step_equals_notebook_hand_written_rk4():
    f = lambda t, y: torch.sin(t * y) + y**2 * 0.1  # noqa: E731
    y = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    t, dt = 0.4, 0.25
    k1 = f(t, y)
    k2 = f(t + dt / 2, y + dt * k1 / 2)
    k3 = f(t + dt / 2, y + dt * k2 / 2)
    k4 = f(t + dt, y + dt * k3)
    expected = y + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    assert torch.allclose(I.RungeKutta4.step(f, t, dt, y), expected, atol=1e-15, rtol=0)
    k2h = f(t + dt, y + dt * k1)
    assert torch.allclose(I.ModifiedEuler.step(f, t, dt, y), y + dt * (k1 + k2h) / 2, atol=1e-15, rtol=0)


def test_registry_names():
    for key in ("euler", "modified_euler", "midpoint", "ralston", "kutta3", "rk4", "rk38", "bosh3", "dopri5"):
        assert key in I.METHODS
    assert get_method("RungeKutta4") is I.RungeKutta4
    with pytest.raises(ValueError, match="unknown integrator 'rk5'.*rk4"):
        get_method("rk5")
    assert I.method_names(adaptive=True) == ["bosh3", "dopri5"]


@pytest.mark.parametrize("key", FIXED)
def test_tableaux_valid_and_orders_consistent(key):
    m = I.METHODS[key]
    assert m.tableau.satisfied_order() == min(m.order, 4)


def test_stage_evaluations_counted():
    calls = []

    def f(t, y):
        calls.append(t)
        return y

    for m in I.METHODS.values():
        calls.clear()
        m.step(f, 0.0, 0.5, torch.ones(2))
        assert len(calls) == m.stages
        # stage times are t + c_i dt
        assert calls == pytest.approx([0.5 * c for c in m.tableau.c])


def test_embedded_estimates_scale_with_error_order():
    f = lambda t, y: math.cos(t) * y  # noqa: E731
    y = torch.tensor([1.0], dtype=torch.float64)
    for m in (I.BogackiShampine32, I.DormandPrince54):
        e1 = rk_step(m.tableau, f, 0.3, 0.1, y)[1].abs().item()
        e2 = rk_step(m.tableau, f, 0.3, 0.05, y)[1].abs().item()
        # local error of the lower-order solution is O(dt^(q+1))
        assert math.log2(e1 / e2) == pytest.approx(m.error_order + 1, abs=0.3)


def test_gradcheck_through_generic_step():
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def run(w, y0):
        f = lambda t, y: torch.tanh(w @ y) * (1 + t)  # noqa: E731
        return I.DormandPrince54.step(f, 0.1, 0.2, y0) + I.RungeKutta4.step(f, 0.1, 0.2, y0)

    assert torch.autograd.gradcheck(run, (w, y0))


def test_custom_method_from_lists_is_usable():
    heun3 = custom_method("Heun3", [[0], [1 / 3], [0, 2 / 3]], [1 / 4, 0, 3 / 4])
    assert heun3.order == 3 and heun3.stages == 3 and heun3.tableau.c == pytest.approx((0, 1 / 3, 2 / 3))
    res = convergence(PROBLEMS["nonautonomous"], heun3)
    assert abs(res.fitted_order - 3) <= 0.2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(a=[[0], [0.5]], b=[0.4, 0.4]), r"weights b must sum to 1, got sum\(b\) = 0.8"),
        (dict(a=[[0], [0.5]], b=[0, 1], c=[0, 0.6]), r"row sum of a\[1\] is 0.5 but c\[1\] = 0.6"),
        (dict(a=[[0, 1], [0.5, 0]], b=[0, 1]), r"strictly lower triangular.*a\[0\]"),
        (dict(a=[[0], [0.5]], b=[0, 1], order=3), r"order 3 claimed.*only up to order 2"),
        (dict(a=[[0], [0.5], [0, 0]], b=[0, 1]), r"a must have 2 rows"),
        (dict(a=[[0], ["x"]], b=[0, 1]), r"a\[1\] must be a list of numbers"),
        (dict(a=[[0], [float("nan")]], b=[0, 1]), r"a\[1\]\[0\] must be finite"),
        (dict(a=[[0], [0.5]], b=[0, 1], b_error=[0.1, 0.2]), r"b_error must sum to 0, got 0.3"),
        (dict(a=[[0], [0.5]], b=[], c=[0, 0.5]), r"b must have at least one weight"),
    ],
)
def test_inconsistent_tableau_errors_name_the_problem(kwargs, message):
    with pytest.raises(TableauError, match=message):
        custom_method("bad", **kwargs)


def test_tableau_is_frozen():
    tab = ButcherTableau(a=((),), b=(1.0,), c=(0.0,))
    with pytest.raises(AttributeError):
        tab.b = (0.5,)


def test_builtin_registry_is_read_only():
    m = custom_method("Mine", [[0], [1]], [0.5, 0.5])
    with pytest.raises(TypeError):
        I.METHODS["mine"] = m  # no visitor can add to (or replace in) what every visitor sees
    with pytest.raises(TypeError):
        del I.METHODS["rk4"]
    assert not hasattr(I, "register_method")


def test_custom_config_does_not_register_anything():
    from odenet import ModelConfig, SolverSpec

    before = dict(I.METHODS)
    spec = SolverSpec.for_method(custom_method("RK²", [[0], [0.5]], [0, 1]), steps=2)
    assert spec.integrator == "custom_rk2" and spec.method.order == 2
    cfg = ModelConfig(integrator=spec.integrator, custom_tableau=spec.custom_tableau)
    assert cfg.method.tableau == spec.method.tableau
    assert dict(I.METHODS) == before
    with pytest.raises(I.UnknownIntegrator, match="unknown integrator 'custom_rk2'"):
        get_method("custom_rk2")


@pytest.mark.parametrize("name, key", [("RK²", "custom_rk2"), ("Heun 3!", "custom_heun_3"), ("x", "custom_x")])
def test_method_key_is_a_safe_identifier(name, key):
    assert I.method_key(name) == key


def test_method_key_without_letters_is_a_tableau_error():
    with pytest.raises(TableauError, match="no letters or digits"):
        I.method_key("!!")
