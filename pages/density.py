"""Density flows: a continuous normalizing flow carries a Gaussian into the data's density, trained live."""

import streamlit as st
import torch

from odenet.app import plots
from odenet.app.cache import get_or_compute, peek
from odenet.app.density_view import LESSON, baselines, lesson_table, pictures, regulariser_lesson, start_job
from odenet.app.links import PageLink, locked_controls
from odenet.app.nav import ensure_app_navigation
from odenet.app.plane_view import (
    CSV_CHOICE,
    csv_inputs,
    live_training,
    progress_bar,
    read_points,
    stop_on_bad_input,
    train_buttons,
)
from odenet.app.state import keep
from odenet.app.urlstate import Param
from odenet.data.toy2d import DATASETS
from odenet.ode.gradients import GRADIENT_METHODS
from odenet.ode.integrators import METHODS
from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.density import REPORT_EVERY, DensityConfig
from odenet.plane.density_views import density_frames, sample_flow
from odenet.plane.views import REFERENCE

ensure_app_navigation()
keep("dn_data", "dn_noise", "dn_integ", "dn_steps", "dn_adapt", "dn_grad", "dn_kin", "dn_jac", "dn_time")
st.title("Density flows")
st.markdown(
    "A **continuous normalizing flow**: a learned vector field f(t, z) carries the standard Gaussian at t = 0 "
    "into the data's density at t = 1. Along each trajectory the log-density changes by minus the field's "
    "divergence, d log p / dt = -div f, so the likelihood of a point is one solve back to t = 0 with the solver "
    "you pick (in the plane the divergence is exact: two Jacobian-vector products). Train it, watch the density "
    "move, draw samples, and see why regularised flows are cheaper to solve."
)
D = DensityConfig()
STEPS = [1, 2, 3, 4, 6, 8, 12, 16]
WEIGHTS = ["0", "0.01", "0.05", "0.1", "0.5"]  # as text: a link carries them as typed
PARAMS = [Param("dataset", "choice", "ringblobs", choices=[*DATASETS, CSV_CHOICE]),
          Param("noise", "float", 0.05, lo=0.0, hi=0.5),
          Param("integrator", "choice", D.solver.integrator, choices=list(METHODS)),
          Param("steps", "choice", D.solver.steps, choices=STEPS),
          Param("adaptive", "bool", False),
          Param("gradient", "choice", D.gradient, choices=list(GRADIENT_METHODS)),
          Param("kinetic", "choice", f"{D.kinetic:g}", choices=WEIGHTS),
          Param("jacobian", "choice", f"{D.jacobian:g}", choices=WEIGHTS)]
link = PageLink("density", PARAMS)
u = link.values
link.seed({"dn_data": u["dataset"], "dn_noise": u["noise"], "dn_integ": u["integrator"], "dn_steps": u["steps"],
           "dn_adapt": u["adaptive"], "dn_grad": u["gradient"], "dn_kin": u["kinetic"], "dn_jac": u["jacobian"]})
with locked_controls(link.lesson):
    c = [*st.columns(4), *st.columns(4)]  # two rows of four: the labels fit at 1280 x 720
    dataset = c[0].selectbox("Dataset", [*DATASETS, CSV_CHOICE], index=DATASETS.index("ringblobs"), key="dn_data",
                             help="labels are ignored: the flow models where the points are")
    noise = c[1].slider("Noise", 0.0, 0.5, 0.05, 0.01, key="dn_noise", disabled=dataset == CSV_CHOICE)
    integ = c[2].selectbox("Integrator", list(METHODS), index=list(METHODS).index(D.solver.integrator),
                           key="dn_integ")
    adaptive = c[4].checkbox("Adaptive", False, key="dn_adapt", help="adaptive steps (bosh3, dopri5)")
    steps = c[3].select_slider("Steps", STEPS, value=D.solver.steps, key="dn_steps", disabled=adaptive)
    gradient = c[5].selectbox("Gradient", list(GRADIENT_METHODS), index=list(GRADIENT_METHODS).index(D.gradient),
                              key="dn_grad", help="how gradients go through the solve")
    kinetic = c[6].select_slider("Kinetic", WEIGHTS, value=f"{D.kinetic:g}", key="dn_kin",
                                 help="weight of the kinetic-energy regulariser ||f||^2 (RNODE)")
    jacobian = c[7].select_slider("Jacobian", WEIGHTS, value=f"{D.jacobian:g}", key="dn_jac",
                                  help="weight of the Jacobian Frobenius-norm regulariser ||df/dz||^2 (RNODE)")
    upload = pasted = None
    if dataset == CSV_CHOICE:
        upload, pasted = csv_inputs("dn", "Your points: CSV with the header x,y (a label column is ignored)",
                                    "x,y\n0.1,0.2\n1.5,-0.3\n...")
link.publish({"dataset": dataset, "noise": noise, "integrator": integ, "steps": steps, "adaptive": adaptive,
              "gradient": gradient, "kinetic": kinetic, "jacobian": jacobian})

with stop_on_bad_input():
    solver = SolverSpec(integrator=integ, steps=steps, adaptive=adaptive)
    train, test = read_points(dataset, upload, pasted, noise, False,
                              "Upload or paste a CSV to fit a density to your own points.")
    config = DensityConfig(solver=solver, gradient=gradient, kinetic=float(kinetic), jacobian=float(jacobian))


def start():
    """A new flow job, with the Gaussian and KDE baselines its curves are drawn against."""
    st.session_state["density_baselines"] = baselines(train, test)
    return start_job(config, train, test)


job, running, b3 = train_buttons("density_job", "dn", start)
b3.caption(f"{len(train)} training and {len(test)} test points; {config.iterations} full-batch Adam steps with "
           f"{solver.label()} ({'adaptive' if adaptive else solver.nfe_estimate} evaluations of f per solve), "
           f"{gradient} gradients. Every {REPORT_EVERY} iterations the test points are also solved with the "
           f"reference solver ({REFERENCE.label()}).")


def draw_progress(history: list) -> None:
    """The NLL and NFE curves while a job runs."""
    last = history[-1]
    test_s = f", test NLL {last.test_nll:.3f}" if last.test_nll is not None else ""
    hist = progress_bar(history, f"train NLL {last.train_nll:.3f}{test_s} nats/point")
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.density_curves(hist, st.session_state.get("density_baselines")), key="dn_curve")
    right.plotly_chart(plots.density_nfe(hist), key="dn_nfe")


def results(job) -> None:
    """The pictures of a finished (or stopped) flow, drawn with the solver chosen above."""
    run, tr = job.snapshot().run, job.train
    base = st.session_state.get("density_baselines") or {}
    ref = (f"; under the reference solver {run.reference_nll:.3f} with {run.reference_nfe} evaluations"
           if run.reference_nll is not None else "")
    beside = ", ".join(f"{k} {v:.3f}" for k, v in base.items())
    st.success(f"{'Stopped' if run.stopped else 'Trained'} in {run.seconds:.1f} s: test NLL {run.test_nll:.3f} nats "
               f"per point with {run.config.solver.label()}{ref} ({beside}). The pictures below use the solver "
               f"chosen above ({solver.label()}).")
    bounds = tr.bounds(0.25)
    model = run.model
    try:
        pics = pictures(job, solver, bounds)
    except SolverError as exc:
        st.error(f"The chosen solver fails on this flow: {exc}")
        return
    left, right = st.columns(2)
    with left:
        t = st.slider("Time t", float(solver.t0), float(solver.t1), float(solver.t1), 0.05, key="dn_time")
        try:
            at_t = density_frames(model, solver, bounds, times=[t], res=60)
            carried = sample_flow(model, solver, 300, seed=1, t=t).states[-1]
        except SolverError as exc:
            st.error(str(exc))
            return
        st.plotly_chart(plots.density_heatmap(at_t, 0, carried, f"The density at t = {t:.2f}, with samples carried "
                                              "there"), key="dn_at_t")
    right.plotly_chart(plots.density_animation(pics.frames), key="dn_anim")
    st.caption(f"Left: the density p_t at the time you pick, with {len(carried)} Gaussian draws carried to t. Right: "
               f"the same from t0 to t1, {len(pics.frames.times)} frames played in your browser (colours scaled to "
               f"each frame's peak). Change of variables, checked: the model's density integrates to "
               f"{pics.frames.mass(-1):.3f} over the square shown.")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.density_samples(tr.x, pics.samples.states[-1]), key="dn_samples")
    c2.plotly_chart(plots.density_paths(pics.paths, pics.frames), key="dn_paths")
    st.caption(f"Samples: {pics.samples.states.shape[1]} Gaussian draws carried from t0 to t1 ({pics.samples.nfe} "
               "evaluations of f). Trajectories: a few of them, a dot at every solver step; they never cross, "
               "because an ODE's flow is one-to-one.")


def lesson_section() -> None:
    """Why regularise: the same flow trained without and with RNODE (trained once per server)."""
    with st.expander(LESSON.title, expanded=link.lesson):
        st.markdown(LESSON.text)
        lesson = peek(("density_lesson",))
        if lesson is None and st.button("Train both (about a minute, once for everyone)", key="dn_lesson_run"):
            with st.spinner("Training two flows on the ring and blobs..."):
                lesson = get_or_compute(("density_lesson",), regulariser_lesson)
        if lesson is None:
            return
        st.plotly_chart(plots.density_lesson({item.label: item.history for item in lesson}), key="dn_lesson")
        st.dataframe(lesson_table(lesson), hide_index=True, key="dn_lesson_table")


# every 2 s: the browser redraws two charts per update, on the same 2 cores in a demo
live_training("density_job", "density_shown", running, draw_progress, every=2.0)
done = job is not None and job.snapshot().run is not None
if done:
    results(job)
else:
    st.plotly_chart(plots.plane_regions(None, train.x, torch.zeros(len(train), dtype=torch.long),
                                        f"{train.name}: the training points"), key="dn_data_fig")
lesson_section()
