"""The "Density flows" page in AppTest: data first, train (short), the pictures, a link's settings, lesson
mode, bad CSV, the regulariser lesson."""

import time

import pytest

from odenet.app import cache, density_view
from tests.support.apptest import figures, open_link, page, titles, train_plane_page


def test_first_render_is_fast_and_shows_the_data(runs):
    at = page("density")
    assert titles(at) == ["ringblobs: the training points"]
    assert at.button(key="dn_stop").disabled and not at.button(key="dn_train").disabled
    assert "700 training and 300 test points; 800 full-batch Adam steps with rk4 x4" in at.caption[0].value
    started = time.perf_counter()
    at.run()  # the page's own work, without AppTest's start: nothing heavy before Train
    assert time.perf_counter() - started < 2.0
    assert not at.exception


def test_stop_ends_a_training_and_keeps_what_it_learned(runs):
    at = page("density")
    at.button(key="dn_train").click().run()
    assert not at.button(key="dn_stop").disabled
    at.button(key="dn_stop").click().run()
    job = at.session_state["density_job"]
    assert job.wait(60)
    at.run()
    run = job.snapshot().run
    assert run.stopped and run.history[-1].iteration < 800
    assert at.success[0].value.startswith("Stopped in")


def test_train_shows_curves_and_every_picture(runs, monkeypatch):
    real = density_view.start_job
    monkeypatch.setattr(density_view, "start_job", lambda config, train, test: real(config.replace(iterations=60),
                                                                                    train, test))
    at = open_link("density", dataset="ringblobs", steps="2")
    job = train_plane_page(at, "dn", "density_job")
    run = job.snapshot().run
    assert run.config.solver.steps == 2 and run.history[-1].iteration == 60
    assert [p.iteration for p in job.snapshot().history] == [20, 40, 60]
    assert all(p.probe_nfe and p.probe_nfe > 0 for p in job.snapshot().history)  # the live NFE of an accurate solve
    assert "Trained in" in at.success[0].value and "rk4 x2" in at.success[0].value
    assert "Gaussian fit" in at.success[0].value and "kernel density estimate" in at.success[0].value
    shown = titles(at)
    for want in ("Negative log-likelihood (nats per point, lower is better)", "Evaluations of f per solve",
                 "The density at t = 1.00, with samples carried there",
                 "The flow carries the Gaussian into the data's density", "Samples beside the data"):
        assert want in shown, (want, shown)
    assert any(t.startswith("Trajectories of 40 samples (2 solver steps)") for t in shown)
    anim = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("The flow carries"))
    assert len(anim["frames"]) == 21 and anim["frames"][0]["data"][0]["type"] == "heatmap"
    labels = [s["label"] for s in anim["layout"]["sliders"][0]["steps"]]
    assert labels[0] == "t=0.00" and labels[-1] == "t=1.00"
    said = next(c.value for c in at.caption if "integrates to" in c.value)
    mass = float(said.split("integrates to ")[1].split(" ")[0])
    assert mass == pytest.approx(1.0, abs=0.03)
    at.slider(key="dn_time").set_value(0.0).run()  # the Gaussian itself: no solve
    assert not at.exception
    assert "The density at t = 0.00, with samples carried there" in titles(at)


def test_link_settings_lesson_mode_and_a_bad_solver(runs):
    at = open_link("density", dataset="moons", integrator="euler", adaptive="true", kinetic="0", lesson="1")
    assert at.session_state["dn_data"] == "moons" and at.session_state["dn_integ"] == "euler"
    assert at.session_state["dn_kin"] == "0" and at.session_state["dn_adapt"] is True
    assert any("odenet_locked" in str(h.proto) for h in at.get("html"))  # the controls are hidden
    assert [e.value for e in at.error][0].startswith("adaptive=True needs an embedded pair")


def test_bad_csv_is_one_message_and_good_csv_shows_its_points(runs):
    at = open_link("density", dataset="your CSV")
    assert "Upload or paste a CSV" in at.info[0].value
    at.text_area(key="dn_paste").input("x,y\n0,0\n1,1\n").run()
    assert [e.value for e in at.error] == ["the uploaded file has 2 data rows; at least 10 are needed"]
    at.text_area(key="dn_paste").input("x,y\n" + "\n".join(f"{i / 10},{(i % 7) / 10}" for i in range(40))).run()
    assert not at.error
    assert "28 training and 12 test points" in at.caption[0].value


def test_regulariser_lesson_trains_both_once_for_everyone(runs, monkeypatch):
    monkeypatch.setattr(density_view, "LESSON_ITERATIONS", 40)
    cache.clear("density_lesson")
    at = open_link("density", lesson="1")
    at.button(key="dn_lesson_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    lesson = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("How hard the flow"))
    assert [d["name"] for d in lesson["data"]] == ["no regulariser", "kinetic 0.05 + Jacobian 0.1"]
    table = at.dataframe[0].value
    assert list(table["model"]) == ["no regulariser", "kinetic 0.05 + Jacobian 0.1"]
    assert (table["evaluations of f (accurate solve)"] > 0).all()
    again = open_link("density", lesson="1")  # another visitor: the pair is already there
    assert not [b for b in again.button if b.key == "dn_lesson_run"]
    cache.clear("density_lesson")
