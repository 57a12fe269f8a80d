"""Integrators playground: test ODEs, step points vs exact solution, convergence orders,
Butcher tableaux and user-defined methods."""

import json
from dataclasses import replace

import pandas as pd
import streamlit as st
import torch

from odenet.app import plots
from odenet.app.access import Busy
from odenet.app.cache import cached_convergence
from odenet.app.links import PageLink, locked_controls
from odenet.app.nav import ensure_app_navigation
from odenet.app.state import add_custom_method, all_methods, keep
from odenet.app.urlstate import Param
from odenet.inspect.analysis import rk_stages
from odenet.ode.integrators import TableauError
from odenet.ode.problems import BLOWUP_FACTOR, PROBLEMS, plot_range, solve_fixed
from odenet.ode.solvers import SolverError, SolverSpec

DEFAULT_PROBLEM = "decay"
DEFAULT_METHODS = ["euler", "modified_euler", "rk4"]
PARAMS = [Param("problem", "choice", DEFAULT_PROBLEM, choices=list(PROBLEMS)),
          Param("methods", "choice_list", DEFAULT_METHODS, choices=lambda: list(all_methods()), max_items=12),
          Param("steps", "int", PROBLEMS[DEFAULT_PROBLEM].default_steps, lo=1, hi=2000)]


def _problem_changed() -> None:
    """A newly picked problem starts at its own sensible step count (``ODEProblem.default_steps``)."""
    st.session_state["int_steps"] = PROBLEMS[st.session_state["int_problem"]].default_steps


ensure_app_navigation()
keep("int_problem", "int_methods", "int_steps", "int_show", "int_rtol")
st.title("Integrators")
st.caption("Every method is a Butcher tableau run by one generic Runge-Kutta step.")
METHODS = all_methods()  # built-in plus this visitor's own (never shared with other visitors)
link = PageLink("integrators", PARAMS)
url_steps = link.values["steps"] if "steps" in link.query else PROBLEMS[link.values["problem"]].default_steps
link.seed({"int_problem": link.values["problem"], "int_methods": link.values["methods"], "int_steps": url_steps})

with locked_controls(link.lesson):
    c1, c2, c3 = st.columns([2, 4, 1])  # room for three "name (order k)" chips
    pkey = c1.selectbox("Test problem", list(PROBLEMS), format_func=lambda k: PROBLEMS[k].title, key="int_problem",
                        on_change=_problem_changed)
    methods = c2.multiselect("Integrators", list(METHODS), default=DEFAULT_METHODS, key="int_methods",
                             format_func=lambda k: f"{k} (order {METHODS[k].order})")
    steps = c3.number_input("Steps", min_value=1, max_value=2000, value=PROBLEMS[DEFAULT_PROBLEM].default_steps,
                            key="int_steps", help="Fixed steps of size Δt = (t1 - t0) / steps. Picking a problem "
                            "resets this to that problem's default.")
problem = PROBLEMS[pkey]
link.publish({"problem": pkey, "methods": methods, "steps": int(steps)})
st.latex(problem.equation + rf",\qquad t \in [{problem.t0:g}, {problem.t1:.3g}]")
if problem.exact is None:
    st.caption("No closed form: the reference is Dormand-Prince 5(4) at rtol = atol = 1e-12 (computed once per "
               "problem for every visitor).")

if not methods:
    st.info("Pick at least one integrator.")
    st.stop()

runs = {}
with st.spinner("Solving (the first visit to a problem without a closed form computes its reference) ..."):
    fine = torch.linspace(problem.t0, problem.t1, 400, dtype=torch.float64)
    reference = problem.solution(fine)
    for k in methods:
        try:
            runs[k] = solve_fixed(problem, METHODS[k], int(steps))
        except SolverError as exc:  # a custom method that cannot run: say so, keep the page
            st.warning(f"{k} with {int(steps)} steps: {exc}")
if not runs:
    st.stop()
st.plotly_chart(plots.ode_trajectories(problem, runs, fine, reference, y_range=plot_range(problem)),
                key="int_traj", width="stretch")

dt = (problem.t1 - problem.t0) / int(steps)
st.subheader(f"Cost and accuracy at {int(steps)} steps (Δt = {dt:.3g})")
# small static tables: st.table is plain HTML, cheaper for the browser than an interactive grid
st.table(pd.DataFrame([{"method": k, "order": METHODS[k].order, "stages": METHODS[k].stages,
                        "NFE": r.nfe, "wall time (ms)": f"{1000 * r.seconds:.3f}",
                        "max error": "inf" if r.blowup_step else f"{r.error:.3e}", "blew up": r.blowup_flag()}
                       for k, r in runs.items()]).set_index("method"))
if blown := [k for k, r in runs.items() if r.blew_up]:  # one line under the table, not a warning per method
    st.caption(f"⚠ {', '.join(blown)} blew up at Δt = {dt:.3g}: the state became NaN/infinite or the error exceeds "
               f"{BLOWUP_FACTOR:g}x the solution's size (curves are drawn up to the last finite step). Use more "
               f"steps; {problem.default_steps} suit this problem.")

st.subheader("One step up close")
st.caption("What a Butcher tableau (a_ij, b_i, c_i) does: stage i evaluates the slope k_i at t + c_i·Δt from "
           "y + Δt·Σ a_ij k_j (the arrows); the step then moves y by Δt·Σ b_i k_i (the thick red arrow).")
o1, o2 = st.columns([1, 2])
one = o1.selectbox("Method", list(runs), key="int_one_method",
                   format_func=lambda k: f"{k} ({METHODS[k].stages} stages)")
n_steps = len(runs[one].finite[0]) - 1
if st.session_state.get("int_one_step", 1) > max(n_steps, 2):  # fewer steps than before: start over
    st.session_state["int_one_step"] = 1
at_step = o2.slider("Step", 1, max(n_steps, 2), 1, key="int_one_step", disabled=n_steps < 2,
                    help="The step of this method's own solution to draw (from its state at the start of that step).")
at_step = min(at_step, max(n_steps, 1))
ts_one, ys_one = runs[one].finite
if n_steps >= 1:
    t_n, dt_n = float(ts_one[at_step - 1]), float(ts_one[1] - ts_one[0])
    stages = rk_stages(METHODS[one], problem.f, t_n, dt_n, ys_one[at_step - 1])
    near = torch.linspace(t_n, t_n + dt_n, 60, dtype=torch.float64)
    exact = (near, problem.solution(near)) if problem.exact is not None else None
    st.plotly_chart(plots.rk_step_figure(stages, problem.labels, exact, method=one), key="int_one_fig",
                    width="stretch")
    if exact is not None:
        st.caption("Black: the exact solution over this step (through the exact state, which after earlier steps "
                   "differs from the method's starting point).")

st.subheader("Convergence")
st.caption("Global error (max over the grid) for halving step sizes; the fitted log-log slope is the "
           "empirical order.")
bar = st.progress(0.0, text="Convergence runs ...")
conv = []
try:
    for i, k in enumerate(methods):  # cached per (problem, tableau) for every visitor after the first
        bar.progress(i / len(methods), text=f"Convergence runs: {k} ({i + 1}/{len(methods)}) ...")
        conv.append(replace(cached_convergence(problem, METHODS[k]), method=k))  # the names used above
except Busy as exc:  # no work slot free now: the rest of the page still works
    st.warning(str(exc))
bar.empty()
if len(conv) == len(methods):
    st.plotly_chart(plots.convergence_plot(conv), key="int_conv", width="stretch")
    st.table(pd.DataFrame([{"method": r.method, "nominal order": r.nominal_order,
                            "empirical order": round(r.fitted_order, 2)} for r in conv]).set_index("method"))

st.subheader("Inside the adaptive solver")
st.caption("dopri5 with its embedded error estimate on this problem: every attempted step with its size; red "
           "crosses are rejected steps (error ratio > 1, retried smaller), ticks are the stage evaluation points.")
a_rtol = st.select_slider("rtol", [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8], value=1e-4, key="int_rtol",
                          format_func=lambda v: f"{v:.0e}")
try:
    a_spec = SolverSpec(integrator="dopri5", adaptive=True, rtol=float(a_rtol), atol=float(a_rtol) * 1e-2,
                        t0=problem.t0, t1=problem.t1, max_steps=5000)
    a_sol = a_spec.build(problem.f).solve(problem.y0_tensor())
    st.plotly_chart(plots.step_size_timeline(a_sol.log, a_spec.method.tableau.c), key="int_adaptive_fig",
                    width="stretch")
    s_ = a_sol.stats
    st.caption(f"{s_.accepted} accepted and {s_.rejected} rejected steps, {s_.nfe} evaluations "
               f"({a_spec.method.stages} stages per step, the last reused by the next step).")
except SolverError as exc:
    st.warning(f"The adaptive solve failed: {exc}")

st.subheader("Butcher tableau")
show = st.selectbox("Method", methods, key="int_show")
m = METHODS[show]
tab = m.tableau
rows = [[f"{tab.c[i]:.6g}"] + [f"{v:.6g}" if j < i else "" for j, v in enumerate(tab.a[i])]
        for i in range(tab.stages)]
rows.append(["b"] + [f"{v:.6g}" for v in tab.b])
if tab.b_error is not None:
    rows.append(["b - b̂"] + [f"{v:.4g}" for v in tab.b_error])
st.table(pd.DataFrame(rows, columns=["c"] + [f"a·{j + 1}" for j in range(tab.stages)]).set_index("c"))
st.caption(m.description or f"{m.name}: order {m.order}, {m.stages} stages")

st.subheader("Define your own method")
st.caption("Enter the Butcher tableau (a_ij, b_i, c_i) as JSON lists. c defaults to the row sums of a; the order "
           "is derived from the order conditions. A valid method becomes available to you (not to other visitors) "
           "here and on the Train, Draw and other pages, for this browser session.")
with st.form("custom_tableau"):
    name = st.text_input("Name", value="Heun3", key="ct_name")
    a_text = st.text_area("a (rows, lower triangular)", value="[[0], [0.3333333333333333], [0, 0.6666666666666666]]",
                          key="ct_a")
    b_text = st.text_input("b", value="[0.25, 0, 0.75]", key="ct_b")
    c_text = st.text_input("c (optional)", value="", key="ct_c")
    submitted = st.form_submit_button("Validate and add")
if "ct_flash" in st.session_state:
    st.success(st.session_state.pop("ct_flash"))
if submitted:
    try:
        a = json.loads(a_text)
        b = json.loads(b_text)
        c = json.loads(c_text) if c_text.strip() else None
        key = add_custom_method(name, a, b, c)
        new = all_methods()[key]
        st.session_state["ct_flash"] = (f"Added {key!r}: order {new.order}, {new.stages} stages. "
                                        "Select it in the integrator list above.")
        st.rerun()  # so every integrator list on the page offers the new method
    except json.JSONDecodeError as exc:
        st.error(f"Could not read the numbers as JSON lists: {exc}")
    except TableauError as exc:
        st.error(f"Inconsistent tableau: {exc}")
