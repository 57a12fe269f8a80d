"""The shipped pretrained models: found without training, accurate, and robust to the
Draw page's preprocessing."""

import numpy as np
import pytest
import torch

from odenet import TrainConfig, load_model, pretrained_models
from odenet.data.mnist import load_mnist, normalize
from odenet.data.preprocess import prepare_canvas, render_digit_on_canvas
from odenet.train.runs import available_models
from odenet.train.trainer import Trainer, evaluate

SHIPPED = pretrained_models()


def test_shipped_models_present_small_and_listed():
    assert {"rk4_1step", "euler_1step"} <= set(SHIPPED)
    for path in SHIPPED.values():
        assert path.stat().st_size < 2 * 1024 * 1024
    assert [c.key for c in available_models()][:2] == ["shipped:rk4_1step", "shipped:euler_1step"]
    m = load_model("rk4_1step")
    assert m.config.label() == "rk4 x1" and (m.config.t0, m.config.t1) == (0.0, 1.0)
    assert load_model("euler_1step").config.label() == "euler x1"


def test_canvas_pipeline_keeps_accuracy_within_one_point():
    """Real test digits painted on a 280x280 canvas (smaller, off-centre) and preprocessed
    like a drawing are classified as well as the originals, within 1 point."""
    _, test = load_mnist()
    model = load_model("rk4_1step")
    n = 1000
    rng = np.random.default_rng(0)
    xs = []
    for i in range(n):
        scale = rng.uniform(0.5, 0.9)
        off = tuple(int(v) for v in rng.integers(-40, 41, size=2))
        xs.append(prepare_canvas(render_digit_on_canvas(test.images[i].numpy(), scale=scale, offset=off)).tensor)
    with torch.no_grad():
        acc_canvas = (model(torch.cat(xs)).argmax(1) == test.labels[:n]).float().mean().item()
        acc_plain = (model(normalize(test.images[:n])).argmax(1) == test.labels[:n]).float().mean().item()
    assert acc_canvas >= acc_plain - 0.01, (acc_canvas, acc_plain)


@pytest.mark.slow
def test_shipped_models_full_test_set_accuracy():
    _, test = load_mnist()
    _, acc = evaluate(load_model("rk4_1step"), test)
    assert acc >= 0.994, acc
    _, acc_e = evaluate(load_model("euler_1step"), test)
    assert acc_e >= 0.99, acc_e


@pytest.mark.slow
def test_default_recipe_reaches_98_percent_in_one_epoch():
    res = Trainer(TrainConfig.from_preset("default", epochs=1, device="cpu")).run()
    assert res.final_test_acc >= 0.98, res.final_test_acc
