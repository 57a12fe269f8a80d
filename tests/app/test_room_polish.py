"""Issue #26 (a teacher's report): the Robustness page says how sure its accuracies are
(Wilson 95% intervals, no more decimals than the sample carries, a warning when the 0.5-point
rule is finer than one image); the Trajectories page shows a drawing among test images that fix
the PCA, hovered by its prediction, with the explanation first and the play controls off the data."""

import json
import re

import pandas as pd
import pytest
import torch

from odenet.app import plots
from odenet.data.mnist import load_mnist, normalize
from odenet.inspect.analysis import (
    critical_step_sizes,
    images_within_tolerance,
    join_views,
    percent_decimals,
    step_view,
    wilson_interval,
)
from odenet.train.checkpoints import load_model, pretrained_models
from tests.support.apptest import page
from tests.support.figures import animated_figures

# -- the statistics --------------------------------------------------------------------------


@pytest.mark.parametrize("correct, n, lo, hi", [
    (200, 200, 0.981155, 1.0),  # 100.0% of 200: the interval is not a point
    (150, 200, 0.685659, 0.804918),
    (0, 10, 0.0, 0.277533),  # textbook values (Wilson 1927; Newcombe 1998)
    (5, 10, 0.236593, 0.763407),
    (81, 263, 0.255289, 0.366210),
    (992, 1000, 0.984294, 0.995941),
])
def test_wilson_interval_known_values(correct, n, lo, hi):
    got = wilson_interval(correct, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_wilson_interval_matches_scipy_and_its_closed_form_at_the_ends():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for n in (1, 7, 200, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12), (k, n)
    z2 = 1.959963984540054**2
    assert wilson_interval(200, 200)[0] == pytest.approx(200 / (200 + z2), rel=1e-12)  # all correct: n / (n + z²)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_decimals_and_images_follow_the_resolution_of_one_image():
    assert [percent_decimals(n) for n in (50, 100, 200, 500, 1000, 2000, 5000, 10000)] == [0, 0, 1, 1, 1, 2, 2, 2]
    # strictly closer than 0.5 points: one image of 200 is exactly 0.5 points and already too much
    assert [images_within_tolerance(n) for n in (100, 200, 201, 500, 1000, 2000, 10000)] == [0, 0, 1, 2, 4, 9, 49]


def test_critical_step_boundary_is_counted_not_left_to_float_residue():
    def crit(acc: float, ref: float) -> float | None:
        grid = pd.DataFrame([dict(integrator="euler", steps=1, accuracy=acc)])
        return critical_step_sizes(grid, reference_acc=ref, span=1.0)["euler"]

    # five images of 1,000 (0.5 points): float subtraction made some such pairs "within" and others not
    assert abs(0.937 - 0.942) <= 0.005 and not abs(0.938 - 0.943) <= 0.005
    assert crit(0.937, 0.942) is None and crit(0.938, 0.943) is None
    assert crit(0.938, 0.942) == 1.0  # four images (0.4 points) are within
    assert abs(7 / 200 - 8 / 200) <= 0.005  # one image of 200 passed the old rule here ...
    assert crit(7 / 200, 8 / 200) is None and crit(199 / 200, 1.0) is None  # ... and fails everywhere now


# -- the robustness figures ------------------------------------------------------------------


def _grid(n: int = 200) -> pd.DataFrame:
    rows = []
    for name, accs in (("euler", (150, 186)), ("rk4", (200, 199))):
        for steps, k in zip((1, 2), accs):
            lo, hi = wilson_interval(k, n)
            rows.append(dict(integrator=name, steps=steps, nfe=steps * (1 if name == "euler" else 4), accuracy=k / n,
                             loss=0.1, seconds=0.1, n=n, ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows)


def test_robustness_figures_show_intervals_at_the_sample_resolution():
    df = _grid(200)
    heat = plots.robustness_heatmap(df, ("rk4", 1))
    cells = [v for row in heat.data[0].text for v in row]
    assert sorted(cells) == ["100.0", "75.0", "93.0", "99.5"]  # not "100.00" / "75.00"
    assert "95% interval" in heat.data[0].hovertemplate and "200 images" in heat.layout.title.text
    assert heat.data[0].customdata[0][0] == "68.6–80.5%"  # euler x1: 150 of 200

    curves = plots.accuracy_vs_step_size(df, 1.0, 1.0, {"euler": None, "rk4": 1.0}, ("rk4", 1))
    euler = next(t for t in curves.data if t.name == "euler")
    lo, hi = wilson_interval(150, 200)
    assert euler.error_y.arrayminus[0] == pytest.approx(75 - 100 * lo, abs=0.01)  # 6.4 points down
    assert euler.error_y.array[0] == pytest.approx(100 * hi - 75, abs=0.01)  # 5.5 points up
    assert "95% interval" in euler.hovertemplate and "%{y:.1f}" in euler.hovertemplate
    assert any(a.text == "reference solve 100.0%" for a in curves.layout.annotations)

    nfe = plots.accuracy_vs_nfe(df)
    assert all("95% interval" in t.hovertemplate and t.error_y.array is not None for t in nfe.data)
    assert plots.robustness_heatmap(_grid(2000)).data[0].text[0][0] == "7.50"  # 2,000 images: two decimals


def test_robustness_page_intervals_decimals_and_one_image_warning(runs):
    from odenet.app import cache

    cache.clear("robustness")  # the grid is shared process-wide: another test (test_app.py) may have run this one
    rob = page("robustness")
    rob.multiselect(key="rob_integ").set_value(["euler", "rk4"])
    rob.multiselect(key="rob_steps").set_value([1, 2])
    rob.select_slider(key="rob_size").set_value(200).run()
    rob.button(key="rob_run").click().run()
    assert not rob.exception, [e.value for e in rob.exception]
    accs = [m.value for m in rob.metric if m.label.startswith("Accuracy with")]
    assert len(accs) == 2 and all(re.fullmatch(r"\d+\.\d%", v) for v in accs), accs  # 200 images: one decimal
    captions = [c.value for c in rob.caption]
    intervals = [c for c in captions if c.startswith("95% interval")]
    assert len(intervals) == 2 and all("(200 images)" in c for c in intervals), captions
    for value, text in zip(accs, intervals):  # the interval holds the shown accuracy
        lo, hi = map(float, re.findall(r"(\d+\.\d)", text)[:2])
        assert lo <= float(value[:-1]) <= hi and hi - lo > 1.0  # at least a point wide at n = 200
    assert any("One image is 0.5 points" in c for c in captions)
    warning = next(w.value for w in rob.warning if "not a single image differs" in w.value)
    assert "200 test images" in warning and "1,000" in warning
    df = rob.dataframe[0].value
    assert {"accuracy (%)", "95% low (%)", "95% high (%)"} <= set(df.columns)
    assert ((df["95% low (%)"] <= df["accuracy (%)"]) & (df["accuracy (%)"] <= df["95% high (%)"])).all()
    assert (df["accuracy (%)"] * 2).round(6).eq((df["accuracy (%)"] * 2).round()).all()  # multiples of 0.5


# -- trajectories ----------------------------------------------------------------------------


def _walk(node):
    """Leaves of an AppTest tree in page order."""
    kids = getattr(node, "children", None)
    if isinstance(kids, dict) and kids:
        for k in sorted(kids):
            yield from _walk(kids[k])
    else:
        yield node


def test_trajectories_show_a_drawing_among_test_images(runs):
    at = page("trajectories")
    order = [n.type for n in _walk(at.main)]
    first_info = next(i for i, n in enumerate(_walk(at.main)) if n.type == "info" and "What you see" in n.value)
    assert first_info < order.index("plotly_chart") and first_info <= 2  # right under the title
    test = load_mnist()[1]
    at.session_state["drawing"] = normalize(test.images[3:4])  # (1, 1, 28, 28), as the Draw page keeps it
    at.radio(key="traj_source").set_value("current drawing").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    pc1 = int(re.search(r"PC1 \((\d+)%\)", spec["layout"]["xaxis"]["title"]["text"]).group(1))
    assert pc1 < 50  # one trajectory alone put ~99% on PC1 (a line)
    context = [d for d in spec["data"] if d["name"].endswith("(test images)")]
    assert len(context) >= 8  # 150 test images cover (nearly) every class
    assert sum(s == 0 for d in context for s in d["marker"]["size"]) == 150  # one gap after each image's path
    mine = next(d for d in spec["data"] if d["name"].startswith("your drawing"))
    assert re.fullmatch(r"your drawing: prediction \d", mine["name"]) and mine["line"]["color"] == "black"
    assert all("prediction" in h and "label" not in h for h in mine["hovertext"])
    assert any("Your drawing (thick black line, predicted" in c.value for c in at.caption)
    assert at.selectbox(key="traj_one").format_func(0).startswith("your drawing (prediction ")
    # the animated view: the drawing's marker is hovered by its prediction too
    at.get("button_group")[0].set_value("2-D animated").run()
    assert not at.exception, [e.value for e in at.exception]
    anim = json.loads(at.get("plotly_chart")[0].proto.spec)
    states = next(d for d in anim["data"] if d.get("name") == "state h(t)")
    assert states["hovertext"][0].startswith("your drawing<br>prediction") and "label" not in states["hovertext"][0]
    assert all("label" in h for h in states["hovertext"][1:])


def test_drawing_projected_with_the_test_images_pca_equals_the_joint_solve():
    model = load_model(pretrained_models()["rk4_1step"])
    x = normalize(load_mnist()[1].images[:12])  # (12, 1, 28, 28)
    solver = model.config.solver.replace(steps=4)
    joint = step_view(model, x, solver)
    joined = join_views(step_view(model, x[:1], solver), step_view(model, x[1:], solver))
    assert joined.states.shape == joint.states.shape == (5, 12, 64, 6, 6)
    assert torch.allclose(joined.states, joint.states, atol=1e-4) and torch.equal(joined.preds, joint.preds)
    other = step_view(model, x[:1], solver.replace(steps=2))
    with pytest.raises(ValueError, match="different time grids"):
        join_views(other, joint)


def test_pca_figures_mark_an_unlabelled_input_by_its_prediction():
    torch.manual_seed(0)
    coords, ts = torch.randn(5, 4, 3), torch.linspace(0, 1, 5)  # (T, N, k)
    labels, preds, idx = [-1, 3, 3, 5], [7, 3, 8, 5], ["your drawing", 10, 11, 12]
    fig = plots.pca_figure(coords, labels, preds, ts, idx, 2, torch.tensor([0.2, 0.1, 0.05]))
    assert [t.name for t in fig.data] == ["digit 3 (test images)", "digit 5 (test images)",
                                         "your drawing: prediction 7"]
    assert fig.data[-1].hovertext[0] == "your drawing<br>prediction 7<br>t=0"
    assert "label 3, prediction 8" in fig.data[0].hovertext[fig.data[0].hovertext.index("image 11<br>label 3, "
                                                                                          "prediction 8<br>t=0")]
    assert fig.data[-1].line.width > 2 * fig.data[0].line.width
    plain = plots.pca_figure(coords, [1, 3, 3, 5], preds, ts, [9, 10, 11, 12])  # no drawing: as before
    assert [t.name for t in plain.data] == ["digit 1", "digit 3", "digit 5"] and plain.data[0].line.width == 2


# -- animation controls off the data -----------------------------------------------------------


def test_play_controls_sit_in_the_top_margin():
    for name, fig in animated_figures().items():
        slider, buttons = fig.layout.sliders[0], fig.layout.updatemenus[0]
        # anchored by their bottom edge at or above the plot area's top edge (paper y = 1)
        assert slider.yanchor == "bottom" and slider.y >= 1 and slider.pad.b >= 5, name
        assert buttons.yanchor == "bottom" and buttons.y >= 1 and buttons.pad.b > 70, name  # above the slider too
        assert fig.layout.margin.t >= 140 and fig.layout.title.yanchor == "top", name
