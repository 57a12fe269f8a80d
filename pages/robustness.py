"""Solver robustness: is the trained network a true ODE, or a ResNet tied to its solver?"""

import streamlit as st

from odenet.app import plots
from odenet.app.cache import file_version, get_or_compute, peek
from odenet.app.links import PageLink, default_model_name, locked_controls, model_key, model_param, model_url_name
from odenet.app.nav import ensure_app_navigation
from odenet.app.urlstate import Param
from odenet.app.widgets import model_and_test
from odenet.data.mnist import TEST_SIZE
from odenet.inspect.analysis import (
    GAP_TOLERANCE,
    REFERENCE_SOLVER,
    critical_step_sizes,
    images_within_tolerance,
    odeness_gap,
    percent_decimals,
    robustness_grid,
    wilson_interval,
)
from odenet.ode.integrators import METHODS

STEP_CHOICES = [1, 2, 3, 4, 6, 8, 12, 16, 32]
SIZES = [200, 500, 1000, 2000, 5000, TEST_SIZE]  # test images; the last is all of them
DEFAULT_INTEGRATORS = ["euler", "modified_euler", "rk4", "dopri5"]
PARAMS = [model_param(), Param("integrators", "choice_list", DEFAULT_INTEGRATORS, choices=list(METHODS)),
          Param("steps", "choice_list", [1, 2, 4, 8], choices=STEP_CHOICES),
          Param("size", "choice", 1000, choices=SIZES)]

ensure_app_navigation()
st.title("Solver robustness")
st.markdown(
    "Evaluate one trained model with many integrators and step counts. If accuracy holds as the solver gets "
    "more accurate, the network learned a vector field it can follow (a true ODE); if it only works with the "
    "training solver, it behaves like a ResNet with that discretisation baked in (Ott et al., *ResNet after "
    "all? Neural ODEs and their numerical solution*, ICLR 2021)."
)
link = PageLink("robustness", PARAMS)
url = link.values
link.seed({"rob_model": model_key(url["model"]) if url["model"] else None, "rob_integ": url["integrators"],
           "rob_steps": url["steps"], "rob_size": url["size"]})
with locked_controls(link.lesson):
    choice, model, test = model_and_test("rob_model")
    c1, c2, c3 = st.columns([5, 3, 2])  # room for the default four integrator chips
    integrators = c1.multiselect("Integrators", list(METHODS), default=DEFAULT_INTEGRATORS, key="rob_integ")
    steps = c2.multiselect("Steps", STEP_CHOICES, default=[1, 2, 4, 8], key="rob_steps")
    size = c3.select_slider("Test images", SIZES, value=1000, key="rob_size")
trained = model.config
link.publish({"model": model_url_name(choice.key), "integrators": integrators, "steps": steps, "size": size},
             defaults={"model": default_model_name()})


if not integrators or not steps:
    st.info("Pick at least one integrator and one step count.")
    st.stop()


def run_grid() -> tuple:
    bar = st.progress(0.0, text="starting ...")
    subset = test.subset(size)
    df = robustness_grid(model, subset, integrators, sorted(steps),
                         progress=lambda f, label: bar.progress(0.8 * f, text=f"evaluating {label} ..."))
    bar.progress(0.85, text=f"reference solve ({REFERENCE_SOLVER.label()}) and the training solver ...")
    gap = odeness_gap(model, subset)
    bar.empty()
    return df, gap


key = ("robustness", *file_version(choice.path), tuple(integrators), tuple(sorted(steps)), size)
hit = peek(key)  # shared by every visitor
if hit is None and st.button(f"Run the grid ({len(integrators) * len(steps)} evaluations on {size} images)",
                             type="primary", key="rob_run"):
    hit = get_or_compute(key, run_grid)
if hit is None:
    st.caption("Results are cached per model and grid; rerunning the same grid is instant.")
    st.stop()
df, gap = hit
span = trained.t1 - trained.t0
critical = critical_step_sizes(df, gap.reference_acc, span)
n = int(df["n"].iloc[0])  # the images evaluated (the subset's size)
d = percent_decimals(n)  # one image is 100/n points: no more decimals than that carries


def _interval(acc: float) -> str:
    lo, hi = wilson_interval(round(acc * n), n)
    return f"95% interval {100 * lo:.{d}f}–{100 * hi:.{d}f}% ({n:,} images)"


m1, m2, m3 = st.columns(3)
m1.metric(f"Accuracy with its training solver ({gap.train_solver})", f"{100 * gap.train_acc:.{d}f}%")
m1.caption(_interval(gap.train_acc))
m2.metric("Accuracy with an accurate solver", f"{100 * gap.reference_acc:.{d}f}%",
          help=f"{gap.reference_solver}, {gap.reference_nfe:.0f} evaluations per batch of 1000")
m2.caption(_interval(gap.reference_acc))
m3.metric("ODE-ness gap", f"{100 * gap.gap:+.{d}f} points",
          help="Training-solver accuracy minus reference accuracy. Near 0: the model learned a vector field any "
               "accurate solver can follow. Large: a ResNet with its discretisation baked in.")
m3.caption(f"One image is {100 / n:.2g} points of accuracy here.")
if gap.solver_bound:
    st.warning(f"This model works only with its training solver: {100 * gap.gap:.1f} points better with "
               f"{gap.train_solver} than with an accurate solve. It is a ResNet in disguise, not an ODE model.")
crit_text = ", ".join(f"{k}: h ≤ {v:.3g}" if v is not None else f"{k}: none of these steps"
                      for k, v in critical.items())
points = f"{100 * GAP_TOLERANCE:g}"  # the tolerance, in accuracy points
st.caption(f"Critical step size (largest step closer than {points} points to the reference accuracy): {crit_text}. "
           "The training solver is outlined; bars and hovers give each accuracy's 95% Wilson interval.")
if images_within_tolerance(n) == 0:
    st.warning(f"With {n:,} test images one image is {100 / n:.2g} points of accuracy, at or above the "
               f"{points}-point rule: here the critical step size means **not a single image differs** from the "
               f"reference solve. Choose more test images (with 1,000 up to {images_within_tolerance(1000)} may "
               f"differ, with 2,000 up to {images_within_tolerance(2000)}).")
st.plotly_chart(plots.accuracy_vs_step_size(df, span, gap.reference_acc, critical,
                                            (trained.integrator, trained.steps)), key="rob_curves", width="stretch")
st.plotly_chart(plots.robustness_heatmap(df, (trained.integrator, trained.steps)), key="rob_heat", width="stretch")
st.plotly_chart(plots.accuracy_vs_nfe(df), key="rob_scatter", width="stretch")
st.dataframe(df.assign(accuracy=(100 * df["accuracy"]).round(d), ci_low=(100 * df["ci_low"]).round(d),
                       ci_high=(100 * df["ci_high"]).round(d), loss=df["loss"].round(4),
                       seconds=df["seconds"].round(2)).rename(columns={
                           "accuracy": "accuracy (%)", "ci_low": "95% low (%)", "ci_high": "95% high (%)"}),
             hide_index=True)
