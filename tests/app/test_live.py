"""Issue 12: pages keep their settings, the live view is honest, the Integrators page shows
blow-ups, the Draw page flags inputs that are not digits, and the caches behave."""

import math

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from odenet import TrainConfig
from odenet.app.plots import training_curves
from odenet.app.training_view import phase_text, verdict
from odenet.data.mnist import load_mnist
from odenet.data.preprocess import prepare_grey
from odenet.inspect.analysis import OOD_THRESHOLD, ood_score, pca_project
from odenet.ode.problems import PROBLEMS, AdaptiveStepSolver, convergence, reference_solution, solve_fixed
from odenet.train.trainer import TrainEvent
from odenet.utils import BoundedLRU
from tests.support.apptest import APP
from tests.support.jobs import snapshot


def go(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"pages/{name}.py" if name != "home" else "pages/home.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_settings_survive_a_visit_to_another_page(runs):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "integrators")
    at.selectbox(key="int_problem").set_value("harmonic").run()
    at.number_input(key="int_steps").set_value(25).run()
    at.multiselect(key="int_methods").set_value(["rk4"]).run()
    go(at, "train")
    at.number_input(key="tr_t1").set_value(2.5).run()
    at.selectbox(key="tr_optimizer").set_value("sgd").run()
    go(at, "home")
    go(at, "integrators")
    assert at.selectbox(key="int_problem").value == "harmonic"
    assert at.number_input(key="int_steps").value == 25
    assert at.multiselect(key="int_methods").value == ["rk4"]
    go(at, "train")
    assert at.number_input(key="tr_t1").value == 2.5
    assert at.selectbox(key="tr_optimizer").value == "sgd"
    at.button(key="btn_reset").click().run()  # Reset restores every field to the recipe's defaults
    assert at.number_input(key="tr_t1").value == 1.0 and at.selectbox(key="tr_optimizer").value == "adamw"


def test_a_kept_setting_that_streamlit_dropped_comes_back(runs):
    """Under load a page change can prune a widget's state before the next page re-asserts it
    (the browser test saw the Integrators' steps back at 10); the kept copy restores it.  A
    deliberate delete (Train's Reset) is not undone."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "integrators")
    at.number_input(key="int_steps").set_value(25).run()
    go(at, "train")
    at.number_input(key="tr_t1").set_value(2.5).run()
    del at.session_state["int_steps"]  # what Streamlit's page-change cleanup did
    go(at, "integrators")
    assert at.number_input(key="int_steps").value == 25
    go(at, "train")
    at.button(key="btn_reset").click().run()
    go(at, "home")
    go(at, "train")
    assert at.number_input(key="tr_t1").value == 1.0


def test_useless_settings_warn_next_to_their_control(runs):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "train")
    at.number_input(key="tr_t1").set_value(1e9).run()
    at.number_input(key="tr_lr").set_value(1000.0).run()
    warnings = [w.value for w in at.sidebar.warning]
    assert any("t1 = 1e+09" in w for w in warnings) and any("lr = 1000" in w for w in warnings)
    assert not any("session-" in m.value for m in [*at.warning, *at.info, *at.success])


def test_noise_drawing_gets_a_not_a_digit_warning(runs):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "draw")
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (280, 280, 3))
    rgba[..., 3] = 255
    at.session_state["canvas_override"] = rgba
    at.run()
    assert any("does not look like a digit" in w.value for w in at.warning), [w.value for w in at.warning]


def test_ood_score_separates_digits_from_noise():
    _, test = load_mnist()
    digits = [ood_score(prepare_grey(test.images[i].float().numpy() / 255).image28) for i in range(200)]
    assert np.mean(np.array(digits) > OOD_THRESHOLD) < 0.02
    noise = np.random.default_rng(1).random((28, 28)) * 0.8 + 0.1
    assert ood_score(noise) > OOD_THRESHOLD and ood_score(np.zeros((28, 28))) == 1.0


def test_live_view_phase_eta_and_verdict():
    cfg = TrainConfig.for_app("default", train_size=1280, epochs=1, eval_every=5)  # 10 batches, eval after 5
    start = TrainEvent("start", batches_per_epoch=10, total_steps=10)
    assert phase_text(snapshot([start], config=cfg)) == "starting" and snapshot([start], config=cfg).eta_seconds is None
    b5 = TrainEvent("batch", epoch=1, batch=5, batches_per_epoch=10, step=5, total_steps=10, elapsed=5.0,
                    train_loss=2.0, train_acc=0.2, images_per_s=128.0)
    snap = snapshot([start, b5], config=cfg)
    assert phase_text(snap) == "evaluating on 1,000 test images"
    # 5 s of training left plus 1,000 + 10,000 test images at ~4x the training speed
    assert snap.eta_seconds == pytest.approx(5.0 + 11_000 / (4 * 128.0))
    b10 = TrainEvent("batch", epoch=1, batch=10, batches_per_epoch=10, step=10, total_steps=10, elapsed=10.0,
                     train_loss=9.0, train_acc=0.1, images_per_s=128.0)
    assert phase_text(snapshot([start, b5, b10], config=cfg)) == "evaluating on 10,000 test images"
    ev = TrainEvent("eval", epoch=1, batch=5, batches_per_epoch=10, step=5, test_acc=0.11, eval_seconds=1.0)
    done = snapshot([start, b5, ev, b10], status="stopped", config=cfg)
    assert done.last_test_acc == 0.11  # a stopped run shows its last accuracy, not None
    assert "chance" in verdict(done)
    good = snapshot([start, b5, b10], status="finished", config=cfg, best=0.98)
    assert verdict(good) is not None and "loss rose" in verdict(good)  # loss 2.0 -> 9.0


def test_training_curves_before_and_at_the_first_report():
    import pandas as pd

    loss, acc = training_curves({"run": pd.DataFrame([{"kind": "start"}])})
    assert not loss.data and not acc.data
    one = pd.DataFrame([{"kind": "batch", "epoch": 1, "batch": 5, "batches_per_epoch": 100, "train_loss": 2.3,
                         "train_acc": 0.1}])
    loss, acc = training_curves({"run": one})
    lo, hi = loss.layout.yaxis.range
    assert hi - lo >= 1.0 and lo < math.log10(2.3) < hi  # a decade around a single point
    # labelled 1-2-5 in full, not plotly's squeezed minor digits ("7 8 9 1 2 3 4 5 6")
    assert list(loss.layout.yaxis.ticktext) == ["1", "2", "5"], loss.layout.yaxis.ticktext
    assert acc.layout.yaxis.range == (0, 101)


def test_blowup_is_reported_at_its_step_and_plotted_up_to_it():
    run = solve_fixed(PROBLEMS["lotka_volterra"], "euler", 10)
    assert run.blowup_step is not None and math.isinf(run.error)
    ts, ys = run.finite
    assert len(ts) == run.blowup_step and torch.isfinite(ys).all()
    msg = run.blowup_message("euler")
    assert f"at step {run.blowup_step}" in msg and "t = " in msg
    assert solve_fixed(PROBLEMS["harmonic"], "rk4", 10).blowup_step is None


def test_dense_reference_matches_a_direct_tight_solve():
    p = PROBLEMS["vanderpol"]
    ts = torch.tensor([0.37, 2.5, 7.123, 10.0], dtype=torch.float64)
    ref = reference_solution(p, ts)
    direct = torch.stack([AdaptiveStepSolver(p.f, 0.0, float(t), "dopri5", rtol=1e-12, atol=1e-12,
                                             max_steps=200_000).integrate(p.y0_tensor()) for t in ts])
    assert (ref - direct).abs().max() < 1e-9
    assert convergence(p, "rk4").fitted_order == pytest.approx(4, abs=0.3)


def test_pca_project_matches_svd():
    x = torch.randn(5, 7, 4, 3, 3)
    coords, explained = pca_project(x, k=3)
    flat = x.reshape(35, -1).double()
    centred = flat - flat.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    ref = (centred @ vh[:3].T).reshape(5, 7, 3)
    assert torch.allclose(coords.abs(), ref.float().abs(), atol=1e-4)
    assert torch.allclose(explained, (s[:3] ** 2 / (s**2).sum()).float(), atol=1e-6)


def test_bounded_cache_evicts_least_recent():
    cache, calls = BoundedLRU(2), []
    for k in ["a", "b", "a", "c", "b"]:
        cache.get_or_compute(k, lambda k=k: calls.append(k) or k.upper())
    assert calls == ["a", "b", "c", "b"] and len(cache) == 2
