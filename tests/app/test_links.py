"""Links carry views: URL -> widgets and widgets -> URL on every page with settings; bad values
warn and fall back; lesson links hide the controls; the motion figures are real animations."""

import pytest
import torch
from streamlit.testing.v1 import AppTest

from odenet.app import plots
from odenet.app.links import link_box_key
from odenet.inspect.analysis import pca_fit, pca_project, plane_field, rk_stages, stage_states, step_view
from odenet.ode.integrators import METHODS
from odenet.ode.problems import PROBLEMS
from odenet.train.checkpoints import load_model, pretrained_models
from tests.support.apptest import open_link


def warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_draw_link_selects_model_and_solver_and_round_trips():
    at = open_link("draw", model="euler_1step", integrator="midpoint", steps="3")
    assert at.selectbox(key="draw_model").value == "shipped:euler_1step"
    assert at.selectbox(key="draw_shipped:euler_1step_integ").value == "midpoint"
    assert at.number_input(key="draw_shipped:euler_1step_steps").value == 3
    assert any("midpoint x3" in c.value for c in at.caption)
    assert at.query_params == {"model": "euler_1step", "integrator": "midpoint", "steps": "3"}
    assert not warnings(at)
    # widgets -> URL
    at.number_input(key="draw_shipped:euler_1step_steps").set_value(5).run()
    assert at.query_params["steps"] == "5"
    at.selectbox(key="draw_shipped:euler_1step_integ").set_value("euler").run()
    at.number_input(key="draw_shipped:euler_1step_steps").set_value(1).run()
    assert at.query_params == {"model": "euler_1step"}  # the training solver is the default: left out
    assert not at.code  # the link box is built only when opened (its highlighter is 1.6 MB of script)
    at.session_state[link_box_key("draw")] = True
    at.run()
    links = [c.value for c in at.code]
    assert len(links) == 2 and links[0].endswith("/draw?model=euler_1step"), links
    assert links[1].endswith("/draw?model=euler_1step&lesson=1"), links


@pytest.mark.parametrize("query, bad", [
    ({"model": "../../etc/passwd"}, "model"), ({"steps": "abc"}, "steps"), ({"steps": "-3"}, "steps"),
    ({"integrator": "rk9"}, "integrator"), ({"model": "x" * 5000}, "model"), ({"model": "/root/.ssh/id_rsa"}, "model"),
])
def test_draw_bad_link_warns_and_uses_defaults(query, bad):
    at = open_link("draw", **query)
    assert any(w.startswith(f"Ignored {bad}=") for w in warnings(at)), warnings(at)
    assert at.selectbox(key="draw_model").value == "shipped:rk4_1step"
    assert bad not in at.query_params


def test_lesson_link_hides_the_controls_and_keeps_the_view():
    at = open_link("draw", model="euler_1step", integrator="midpoint", steps="3", lesson="1")
    assert any("Lesson view" in c.value for c in at.caption)
    assert any("odenet_locked" in str(h.proto) for h in at.get("html"))
    assert at.query_params["lesson"] == "1" and at.query_params["steps"] == "3"


def test_trajectories_link_round_trip():
    at = open_link("trajectories", model="euler_1step", integrator="rk4", steps="4", inputs="class", digit="3",
                   n="12", seed="7", channels="5,6")
    assert at.selectbox(key="traj_model").value == "shipped:euler_1step"
    assert at.radio(key="traj_source").value == "one class"
    assert at.selectbox(key="traj_class").value == 3
    assert at.slider(key="traj_n").value == 12 and at.number_input(key="traj_seed").value == 7
    assert at.multiselect(key="traj_ch").value == [5, 6]
    assert at.caption[-1].value.startswith("rk4 x4") or any(c.value.startswith("rk4 x4") for c in at.caption)
    q = dict(at.query_params)
    assert q["inputs"] == "class" and q["digit"] == "3" and q["n"] == "12" and q["channels"] == "5,6"
    at.slider(key="traj_n").set_value(20).run()
    assert at.query_params["n"] == "20"
    bad = open_link("trajectories", n="100000", channels="1,2,999")
    assert len([w for w in warnings(bad) if w.startswith("Ignored")]) == 2


def test_integrators_link_round_trip():
    at = open_link("integrators", problem="harmonic", methods="euler,rk4", steps="12")
    assert at.selectbox(key="int_problem").value == "harmonic"
    assert at.multiselect(key="int_methods").value == ["euler", "rk4"]
    assert at.number_input(key="int_steps").value == 12
    at.number_input(key="int_steps").set_value(7).run()
    assert at.query_params == {"problem": "harmonic", "methods": "euler,rk4", "steps": "7"}
    bad = open_link("integrators", problem="../x", methods="euler,nope")
    assert len(warnings(bad)) == 2 and bad.selectbox(key="int_problem").value == "decay"


def test_robustness_link_round_trip():
    at = open_link("robustness", model="euler_1step", integrators="euler,rk4", steps="1,2", size="200")
    assert at.selectbox(key="rob_model").value == "shipped:euler_1step"
    assert at.multiselect(key="rob_integ").value == ["euler", "rk4"]
    assert at.multiselect(key="rob_steps").value == [1, 2]
    assert at.select_slider(key="rob_size").value == 200
    at.select_slider(key="rob_size").set_value(500).run()
    assert at.query_params["size"] == "500" and at.query_params["integrators"] == "euler,rk4"


def test_gradients_link_round_trip():
    at = open_link("gradients", model="euler_1step", integrator="euler", steps="1,4")
    assert at.selectbox(key="grad_integ").value == "euler" and at.multiselect(key="grad_steps").value == [1, 4]
    at.selectbox(key="grad_integ").set_value("midpoint").run()
    assert at.query_params["integrator"] == "midpoint" and at.query_params["model"] == "euler_1step"


# -- the library behind the motion -------------------------------------------------------------


@pytest.fixture(scope="module")
def rk4_view():
    from odenet.data.mnist import load_mnist, normalize

    model = load_model(pretrained_models()["rk4_1step"])
    x = normalize(load_mnist()[1].images[:20])
    solver = model.config.solver.replace(steps=4)
    return model, solver, step_view(model, x, solver)


def test_pca_fit_matches_pca_project_and_projects_states(rk4_view):
    _, _, view = rk4_view
    coords, explained = pca_project(view.states, k=3)
    fit = pca_fit(view.states, k=3)
    assert torch.allclose(fit.coords.abs(), coords.abs(), atol=1e-3) and torch.allclose(fit.explained, explained)
    assert torch.allclose(fit.project(view.states), fit.coords, atol=1e-3)
    assert torch.allclose(fit.components @ fit.components.T, torch.eye(3, dtype=torch.float64), atol=1e-6)


def test_stage_states_reproduce_the_solver(rk4_view):
    model, solver, view = rk4_view
    stages = stage_states(model, view.ts, view.states, solver)
    assert stages.shape[:3] == (4, 4, 20)
    assert torch.equal(stages[:, 0], view.states[:-1])  # stage 1 of step i is y_i
    # RK4's second stage input is y + dt/2 * f(t, y)
    dt = float(view.ts[1] - view.ts[0])
    with torch.no_grad():
        y2 = view.states[0] + dt / 2 * model.gradient(float(view.ts[0]), view.states[0])
    assert torch.allclose(stages[0, 1], y2, atol=1e-5)


def test_plane_field_and_animation_figure(rk4_view):
    model, solver, view = rk4_view
    fit = pca_fit(view.states, k=2)
    field = plane_field(model, fit, t=0.5, grid=5)
    assert field.points.shape == (25, 2) and field.arrows.shape == (25, 2)
    assert ((field.off_plane >= 0) & (field.off_plane <= 1)).all()
    stages = fit.project(stage_states(model, view.ts, view.states, solver))
    fig = plots.pca_animation(fit.coords, [0] * 20, [0] * 20, view.ts, list(range(20)), fit.explained, stages, field)
    assert len(fig.frames) == 5 + 4  # a frame per step time plus one per step's stages
    assert fig.layout.updatemenus[0].buttons[0].label.endswith("Play") and len(fig.layout.sliders[0].steps) == 9


def test_rk_stages_match_the_step_and_draw():
    problem = PROBLEMS["harmonic"]
    for name in ("euler", "midpoint", "rk4", "dopri5"):
        m = METHODS[name]
        st_ = rk_stages(m, problem.f, 0.0, 0.5, problem.y0_tensor())
        assert st_.ks.shape == (m.stages, 2)
        assert torch.allclose(st_.y_next, m.step(problem.f, 0.0, 0.5, problem.y0_tensor()))
    fig = plots.rk_step_figure(st_, problem.labels, method="dopri5")
    assert len(fig.layout.annotations) >= 2 * m.stages + 1
    probs = torch.softmax(torch.randn(5, 10), -1)
    assert len(plots.probability_animation(torch.linspace(0, 1, 5), probs).frames) == 5
