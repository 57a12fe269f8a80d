"""Issue 26 (a teacher's pass over the app): per-problem default steps and a blow-up column on
Integrators, distinguishable gradient-method traces, no "see the README" in the app, and Home's
notation (h = hidden state, Δt = step size) with its two diagrams."""

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from odenet.ode.integrators import METHODS
from odenet.ode.problems import PROBLEMS, solve_fixed
from tests.support.apptest import page

ROOT = Path(__file__).resolve().parents[2]


# -- 1. Integrators: a sensible step count per problem, blow-ups flagged in the table ------------
@pytest.mark.parametrize("key", list(PROBLEMS))
def test_no_built_in_method_blows_up_at_a_problems_default_steps(key):
    problem = PROBLEMS[key]
    for m in METHODS:
        run = solve_fixed(problem, m, problem.default_steps)
        assert not run.blew_up, (key, m, run.blowup_flag())


def test_a_finite_but_huge_error_counts_as_a_blow_up():
    run = solve_fixed(PROBLEMS["vanderpol"], "euler", 10)  # error ~1e65 without a NaN
    assert run.blowup_step is None and run.blew_up and run.blowup_flag().startswith("⚠ error")
    nan = solve_fixed(PROBLEMS["vanderpol"], "rk4", 10)
    assert nan.blowup_step is not None and nan.blowup_flag().startswith("⚠ NaN/inf at step")
    assert solve_fixed(PROBLEMS["decay"], "euler", 10).blowup_flag() == "no"


def test_van_der_pol_starts_at_its_default_and_a_tiny_step_count_is_flagged_in_the_table(runs):
    at = page("integrators")
    at.selectbox(key="int_problem").set_value("vanderpol").run()
    assert not at.exception
    assert at.number_input(key="int_steps").value == PROBLEMS["vanderpol"].default_steps > 10
    table = at.table[0].value
    assert (table["blew up"] == "no").all() and not at.warning
    assert not any("blew up" in c.value for c in at.caption)
    at.number_input(key="int_steps").set_value(5).run()
    assert not at.exception
    table = at.table[0].value
    assert all(v.startswith("⚠") for v in table["blew up"]) and (table["max error"] == "inf").any()
    assert not at.warning  # one caption under the table, not a warning per method
    assert sum("blew up at Δt = 2" in c.value for c in at.caption) == 1
    at.selectbox(key="int_problem").set_value("decay").run()  # a new problem: its own default again
    assert at.number_input(key="int_steps").value == PROBLEMS["decay"].default_steps


def test_integrators_link_without_steps_uses_the_problems_default(runs):
    from tests.support.apptest import open_link

    at = open_link("integrators", problem="lotka_volterra", methods="euler,rk4")
    assert at.number_input(key="int_steps").value == PROBLEMS["lotka_volterra"].default_steps
    assert (at.table[0].value["blew up"] == "no").all()


# -- 2. Gradients & memory: every method visible; no "see the README" anywhere in the app ----------
def _gradient_frame() -> pd.DataFrame:
    rows = []
    for method in ("backprop", "adjoint", "discrete_adjoint", "checkpoint"):
        for steps in (1, 4, 16):  # identical numbers for every method: the curves coincide exactly
            rows.append(dict(method=method, steps=steps, saved_mib=1.0, time_s=0.1, nfe_forward=4 * steps,
                             nfe_backward=4 * steps, grad_rel_error=1e-3))
    return pd.DataFrame(rows)


def test_gradient_costs_gives_every_trace_a_distinct_dash_and_marker():
    from odenet.app.plots import gradient_costs

    fig = gradient_costs(_gradient_frame())
    by_panel: dict[tuple, list] = {}
    for t in fig.data:
        assert t.line.dash and t.marker.symbol and "markers" in t.mode
        by_panel.setdefault((t.xaxis, t.yaxis), []).append((t.line.dash, t.marker.symbol))
    assert len(by_panel) == 4
    for styles in by_panel.values():
        assert len(set(styles)) == len(styles), styles
    # one style per method, the same in every panel (legend groups stay readable)
    style = {}
    for t in fig.data:
        if t.showlegend is not False:
            style[t.name] = (t.line.dash, t.marker.symbol)
    assert len(set(style.values())) == 4


def test_no_page_or_library_message_tells_the_user_to_see_the_readme():
    offenders = []
    for path in [*ROOT.glob("pages/*.py"), ROOT / "app.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]  # comments are for developers
            if "readme" in code.lower():
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_gradients_page_text_has_no_readme(runs):
    at = page("gradients")
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    shown += [w.help or "" for w in at.select_slider]
    assert shown and not any("readme" in s.lower() for s in shown)


# -- 3. Home: h is the hidden state, Δt the step size; the two diagrams ---------------------------
def test_home_calls_the_step_size_dt_and_names_the_butcher_tableau(runs):
    at = page("home")
    formulas = [x.value for x in at.latex]
    assert any(r"\Delta t" in f for f in formulas)
    for f in formulas:  # h only as the hidden state h(t), h_k, never as a step size "h f(...)", "c_i h"
        assert not re.search(r"(c_i\s*h\b|\bh\s*\\sum|\\tfrac\{h\}|\+\s*h\\?,?\s*f\b)", f), f
    text = " ".join(m.value for m in at.markdown)
    assert "Butcher tableau" in text
    assert "step size" in text and "Δt" in text


def test_home_draws_rknet_and_one_rk_step_offline(runs):
    start = time.perf_counter()
    at = page("home")
    elapsed = time.perf_counter() - start
    charts = at.get("graphviz_chart")
    assert len(charts) == 2
    rknet, step = (c.proto.spec for c in charts)
    for label in ("1x28x28", "64x6x6", "h' = f(t, h)", "10 classes", "t0", "t1"):
        assert label in rknet, label
    for label in ("k1", "ks", "c_i", "b_i", "Δt"):
        assert label in step, label
    assert "http" not in rknet + step  # nothing fetched from a CDN
    assert elapsed < 10  # the whole AppTest (app + page) on a shared 2-core machine; the page itself is far less
