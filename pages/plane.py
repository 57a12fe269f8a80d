"""Flows in the plane: train a small Neural ODE on 2-D points in seconds and watch its flow."""

import streamlit as st

from odenet.app import plots
from odenet.app.cache import get_or_compute, peek
from odenet.app.links import PageLink, locked_controls
from odenet.app.nav import ensure_app_navigation
from odenet.app.plane_view import (
    CSV_CHOICE,
    LESSON,
    csv_inputs,
    lesson_pair,
    live_training,
    progress_bar,
    read_points,
    start_job,
    stop_on_bad_input,
    train_buttons,
)
from odenet.app.state import keep
from odenet.app.urlstate import Param
from odenet.data.toy2d import DATASETS
from odenet.ode.integrators import METHODS
from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.classifier import MAX_AUGMENT, PlaneConfig
from odenet.plane.views import decision_regions, field_arrows, flow, grid_flow, solver_sweep

ensure_app_navigation()
keep("pl_data", "pl_noise", "pl_integ", "pl_steps", "pl_aug", "pl_width", "pl_time")
st.title("Flows in the plane")
st.markdown(
    "A Neural ODE small enough to watch: each point of the plane is carried by a learned vector field "
    "f(t, h) from t = 0 to t = 1 with the solver you pick, then one straight line per class decides. "
    "So the **flow** has to pull the classes apart. It trains in seconds; then play the flow, look at the "
    "field, and check whether the model is still an ODE under other solvers."
)
D = PlaneConfig()
STEPS = [1, 2, 3, 4, 6, 8, 12, 16, 32]
WIDTHS = [8, 16, 32, 64, 128]
PARAMS = [Param("dataset", "choice", "moons", choices=[*DATASETS, CSV_CHOICE]),
          Param("noise", "float", 0.1, lo=0.0, hi=0.5),
          Param("integrator", "choice", D.solver.integrator, choices=list(METHODS)),
          Param("steps", "choice", D.solver.steps, choices=STEPS),
          Param("augment", "int", D.augment, lo=0, hi=MAX_AUGMENT),
          Param("width", "choice", D.width, choices=WIDTHS)]
link = PageLink("plane", PARAMS)
u = link.values
link.seed({"pl_data": u["dataset"], "pl_noise": u["noise"], "pl_integ": u["integrator"], "pl_steps": u["steps"],
           "pl_aug": u["augment"], "pl_width": u["width"]})
with locked_controls(link.lesson):
    c = st.columns([2, 2, 2, 2, 2, 2])
    dataset = c[0].selectbox("Dataset", [*DATASETS, CSV_CHOICE], key="pl_data")
    noise = c[1].slider("Noise", 0.0, 0.5, 0.1, 0.01, key="pl_noise", disabled=dataset == CSV_CHOICE)
    integ = c[2].selectbox("Integrator", list(METHODS), index=list(METHODS).index(D.solver.integrator),
                           key="pl_integ")
    steps = c[3].select_slider("Steps", STEPS, value=D.solver.steps, key="pl_steps")
    augment = c[4].number_input("Augmented dims", 0, MAX_AUGMENT, D.augment, key="pl_aug",
                                help="extra zero dimensions the flow may use (ANODE, Dupont et al. 2019)")
    width = c[5].select_slider("Width", WIDTHS, value=D.width, key="pl_width", help="hidden units of f")
    upload = pasted = None
    if dataset == CSV_CHOICE:
        upload, pasted = csv_inputs("pl", "Your points: CSV with the header x,y,label (labels 0..K-1, K <= 10)",
                                    "x,y,label\n0.1,0.2,0\n1.5,-0.3,1\n...")
link.publish({"dataset": dataset, "noise": noise, "integrator": integ, "steps": steps, "augment": augment,
              "width": width})

with stop_on_bad_input():
    solver = SolverSpec(integrator=integ, steps=steps)
    train, test = read_points(dataset, upload, pasted, noise, True,
                              "Upload or paste a CSV to train on your own points.")
    config = PlaneConfig(augment=int(augment), width=width, solver=solver)

job, running, b3 = train_buttons("plane_job", "pl", lambda: start_job(config, train, test))
b3.caption(f"{len(train)} training and {len(test)} test points, {train.classes} classes; "
           f"{config.iterations} full-batch Adam steps with {solver.label()} ({solver.nfe_estimate} evaluations "
           "of f per solve).")


def draw_progress(history: list) -> None:
    """The training curve while a job runs."""
    last = history[-1]
    test_s = f", test {100 * last.test_accuracy:.1f}%" if last.test_accuracy is not None else ""
    hist = progress_bar(history, f"loss {last.loss:.3f}, train {100 * last.train_accuracy:.1f}%{test_s}")
    st.plotly_chart(plots.plane_curves(hist), key="pl_curve")


def results(job) -> None:
    """The pictures of a finished (or stopped) training, drawn with the solver chosen above."""
    run = job.snapshot().run
    model, tr, te = run.model, job.train, job.test
    st.success(f"{'Stopped' if run.stopped else 'Trained'} in {run.seconds:.1f} s: train "
               f"{100 * run.train_accuracy:.1f}%, test {100 * run.test_accuracy:.1f}% with "
               f"{run.config.solver.label()}, augment {run.config.augment}. The pictures below use the solver "
               f"chosen above ({solver.label()}).")
    bounds = tr.bounds()
    try:
        regions = decision_regions(model, solver, bounds)
        moved = flow(model, te.x, solver)
        grid = grid_flow(model, solver, bounds)
    except SolverError as exc:
        st.error(f"The chosen solver fails on this model: {exc}")
        return
    left, right = st.columns(2)
    left.plotly_chart(plots.plane_regions(regions, te.x, te.y, "Decision regions in the input plane (test points)"),
                      key="pl_regions")
    with right:
        t = st.slider("Time of the vector field", float(solver.t0), float(solver.t1), float(solver.t0), 0.05,
                      key="pl_time")
        st.plotly_chart(plots.plane_field(field_arrows(model, t, bounds), te.x, te.y), key="pl_field")
    st.plotly_chart(plots.plane_flow_animation(moved, te.y, grid), key="pl_flow")
    st.caption(f"Each dot is a test point at a solver step ({len(moved.ts) - 1} steps, {moved.nfe} evaluations of "
               "f); press Play, or drag the slider. The grey grid is the plane itself, carried by the same flow: it "
               "bends and stretches but never tears or folds, because an ODE's trajectories cannot cross.")
    if model.augment:
        st.plotly_chart(plots.plane_lift_3d(moved, te.y), key="pl_lift")
        st.caption("With an augmented dimension the points can move off the plane: one class is lifted past the "
                   "other, which no flow inside the plane can do.")
    st.subheader("Is it still an ODE?")
    sweep = solver_sweep(model, te, trained_with=run.config.solver)
    shown = sweep.assign(accuracy=(100 * sweep["accuracy"]).round(1)).rename(
        columns={"accuracy": "test accuracy (%)", "nfe": "evaluations of f"})
    st.dataframe(shown if shown["error"].any() else shown.drop(columns="error"), hide_index=True, key="pl_sweep")
    st.caption("The same trained model solved with other integrators and step counts. A model that learned a vector "
               "field keeps its accuracy as the solver gets finer; one that learned its training solver's coarse "
               "map (a ResNet in disguise) does not.")


def lesson_section() -> None:
    """Why circles need an augmented dimension: augment 0 and 1 side by side (trained once per server)."""
    with st.expander(LESSON.title, expanded=dataset == "circles"):
        st.markdown(LESSON.text)
        pair = peek(("plane_lesson",))
        if pair is None and st.button("Train both (a few seconds)", key="pl_lesson_run"):
            pair = get_or_compute(("plane_lesson",), lesson_pair)
        if pair is None:
            return
        for col, (label, lesson, regions_) in zip(st.columns(2), pair):
            col.plotly_chart(plots.plane_regions(regions_, lesson.test.x, lesson.test.y, label),
                             key=f"pl_lesson_{label[:9]}")


live_training("plane_job", "plane_shown", running, draw_progress)
done = job is not None and job.snapshot().run is not None
if done:
    results(job)
else:
    st.plotly_chart(plots.plane_regions(None, train.x, train.y, f"{train.name}: the training points"),
                    key="pl_data_fig")
lesson_section()
