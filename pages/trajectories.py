"""Hidden-state trajectories: how the ODE moves images through feature space."""

import streamlit as st
import torch

from odenet.app import plots
from odenet.app.cache import (
    cached_animation_extras,
    cached_step_view,
    file_version,
    get_or_compute,
    peek,
    tensor_digest,
)
from odenet.app.links import (
    PageLink,
    default_model_name,
    locked_controls,
    model_key,
    model_param,
    model_url_name,
    solver_params,
)
from odenet.app.nav import ensure_app_navigation
from odenet.app.state import keep
from odenet.app.urlstate import Param
from odenet.app.widgets import model_and_test, solver_picker
from odenet.data.mnist import normalize
from odenet.inspect.analysis import join_views, per_image_cost
from odenet.ode.solvers import SolverSpec

INPUTS = {"random": "random test images", "class": "one class", "drawing": "current drawing"}
CONTEXT = 150  # test images a drawing is shown among: the PCA is fitted on them (one path alone is a line)
PARAMS = [model_param(), *solver_params(), Param("inputs", "choice", "random", choices=list(INPUTS)),
          Param("digit", "int", 0, lo=0, hi=9), Param("n", "int", 60, lo=5, hi=200),
          Param("seed", "int", 0, lo=0, hi=10_000),
          Param("channels", "int_list", [0, 1, 2, 3], lo=0, hi=63, max_items=8)]

ensure_app_navigation()
keep("traj_*")
st.title("Hidden-state trajectories")
st.info(
    "What you see: each line is one image's 64x6x6 hidden state moving from t0 (small markers) to t1 (large "
    "marker), projected on its first principal components. Classes separate along the way. A drawing (input "
    f"\"current drawing\") is the thick black line among {CONTEXT} test images that fix the projection; it has no "
    "label, so its colour is the model's prediction. The vector field contains BatchNorm layers that use the "
    "statistics gathered with the training solver; evaluating with a very different solver or step count "
    "feeds them states they never saw, which is why trajectories (and accuracy) can change with the solver."
)
link = PageLink("trajectories", PARAMS)
url = link.values
link.seed({"traj_model": model_key(url["model"]) if url["model"] else None, "traj_source": INPUTS[url["inputs"]],
           "traj_class": url["digit"], "traj_n": url["n"], "traj_seed": url["seed"], "traj_ch": url["channels"]})
with locked_controls(link.lesson):
    choice, model, test = model_and_test("traj_model")
    trained = model.config.solver
    default = trained.replace(steps=max(trained.steps, 8))
    link.seed({f"traj_{choice.key}_integ": url["integrator"], f"traj_{choice.key}_steps": url["steps"]})
    solver = solver_picker(f"traj_{choice.key}", default)
    a1, a2 = st.columns(2)
    adaptive = a1.checkbox("adaptive dopri5", key="traj_adaptive",
                           help="Let dopri5 choose its steps from its error estimate (overrides the picker above); "
                                "shows the step sizes and the per-image cost below.")
    if adaptive:
        rtol = a2.select_slider("rtol", [1e-2, 1e-3, 1e-4, 1e-5], value=1e-3, key="traj_rtol",
                                format_func=lambda v: f"{v:.0e}")
        solver = SolverSpec(integrator="dopri5", adaptive=True, rtol=float(rtol), atol=float(rtol) / 10,
                            t0=default.t0, t1=default.t1, max_steps=2000)

    c1, c2, c3 = st.columns(3)
    source = c1.radio("Inputs", list(INPUTS.values()), key="traj_source")
    n = c2.slider("Images", 5, 200, 60, key="traj_n", disabled=source == "current drawing")
    seed = c3.number_input("Seed", 0, 10_000, 0, key="traj_seed")
    digit = st.selectbox("Class", list(range(10)), key="traj_class") if source == "one class" else url["digit"]
    channels = st.multiselect("Channels (one image up close, below)", list(range(model.config.channels)),
                              default=[0, 1, 2, 3], key="traj_ch", max_selections=8)
inputs = next(k for k, v in INPUTS.items() if v == source)
link.publish({"model": model_url_name(choice.key), "integrator": solver.integrator, "steps": solver.steps,
              "inputs": inputs, "digit": digit if inputs == "class" else 0, "n": n, "seed": seed,
              "channels": channels}, defaults={"model": default_model_name(), "integrator": default.integrator,
                                               "steps": default.steps})
gen = torch.Generator().manual_seed(int(seed))
if source == "current drawing":
    drawing = st.session_state.get("drawing")
    if drawing is None:
        st.info("Draw a digit on the Draw page first; it will appear here.")
        st.stop()
    ctx = torch.randperm(len(test), generator=gen)[:CONTEXT]
    ctx_x = normalize(test.images[ctx])  # (CONTEXT, 1, 28, 28)
    x = torch.cat([drawing, ctx_x])  # (1 + CONTEXT, 1, 28, 28): the drawing first
    labels, idx = [-1, *test.labels[ctx].tolist()], ["your drawing", *ctx.tolist()]
else:
    pool = torch.arange(len(test))
    if source == "one class":
        pool = pool[test.labels == digit]
    sel = pool[torch.randperm(len(pool), generator=gen)[:n]]
    x, labels, idx = normalize(test.images[sel]), test.labels[sel].tolist(), sel.tolist()

with st.spinner("Pushing the images through the ODE ..."):
    if source == "current drawing" and not solver.adaptive:
        # the test images' solve and PCA are cached for every visitor; a new drawing costs one image's solve
        ctx_view, fit = cached_step_view(choice.path, model, ctx_x, solver)
        own, _ = cached_step_view(choice.path, model, drawing, solver)
        view = join_views(own, ctx_view)
        coords = torch.cat([fit.project(own.states), fit.coords], dim=1)  # (T, 1 + CONTEXT, 3)
    else:  # adaptive: one batch, one error control, one time grid (PCA on the test images and the drawing)
        view, fit = cached_step_view(choice.path, model, x, solver)  # shared cache: revisits do not recompute
        coords = fit.coords
    explained = fit.explained
dims = st.segmented_control("PCA view", ["2-D", "3-D", "2-D animated"], default="2-D", key="traj_dims",
                            help="Only the chosen figure is built and sent to the browser. Animated: play the "
                                 "solve step by step, with the RK stage points and the vector field.") or "2-D"
if dims == "2-D animated":
    a1, a2, a3 = st.columns([1, 1, 2])
    show_stages = a1.toggle("RK stage points", value=True, key="traj_show_stages",
                            help="Where the solver evaluated f between steps (the stage inputs), projected.")
    show_field = a2.toggle("Vector field", value=True, key="traj_show_field")
    t_field = a3.slider("Field at t", float(solver.t0), float(solver.t1), float(solver.t0), key="traj_field_t",
                        disabled=not show_field)
    stages, field = cached_animation_extras(choice.path, model, x, solver, view, fit, show_stages,
                                            float(t_field) if show_field else None)
    st.plotly_chart(plots.pca_animation(coords, labels, view.preds.tolist(), view.ts, idx, explained, stages, field),
                    key="traj_anim", width="stretch")
else:
    st.plotly_chart(plots.pca_figure(coords, labels, view.preds.tolist(), view.ts, idx, 3 if dims == "3-D" else 2,
                                     explained), key="traj_pca", width="stretch")
known = torch.tensor(labels) >= 0  # the drawing has no label
acc = 100 * (view.preds[known] == torch.tensor(labels)[known]).float().mean()
acc_text = f" Accuracy on these images: {acc:.1f}%."
if source == "current drawing":
    acc_text = (f" Your drawing (thick black line, predicted {int(view.preds[0])}) among {CONTEXT} test images "
                f"(accuracy {acc:.1f}%); the PCA is fitted on the test images.")
st.caption(f"{solver.label()}: {len(view.ts)} step times, larger marker = t1.{acc_text}")

if solver.adaptive:
    st.subheader("Inside the adaptive solver")
    st.plotly_chart(plots.step_size_timeline(view.log, solver.method.tableau.c,
                                             title=f"Step sizes for these {len(idx)} images (one error control)"),
                    key="traj_steps_fig", width="stretch")
    st.markdown("**Per-image cost.** A batch shares one error control (the RMS error over all its images): every "
                "image takes the batch's steps, more than an easy image needs alone and sometimes fewer than a hard "
                "one does. Solve each image alone and compare.")
    drawing = st.session_state.get("drawing")
    pool = torch.randperm(len(test), generator=torch.Generator().manual_seed(int(seed)))[:16]
    cost_x = normalize(test.images[pool])
    names = [f"test #{i}" for i in pool.tolist()]
    if drawing is not None:
        cost_x, names = torch.cat([drawing, cost_x]), ["current drawing", *names]
    cost_key = ("per_image_cost", *file_version(choice.path), repr(solver), tensor_digest(cost_x))
    # the request goes through a callback: a URL update may rerun the page, which would drop a button's True
    st.button("Compute per-image cost", key="btn_traj_cost", on_click=st.session_state.update,
              kwargs={"cost_request": True})
    if st.session_state.pop("cost_request", False):
        with st.spinner(f"Solving {len(names)} images one by one ..."):
            get_or_compute(cost_key, lambda: per_image_cost(model, cost_x, solver))
    saved = peek(cost_key)
    if saved is not None:
        df = saved.assign(image=names)
        st.dataframe(df, hide_index=True, width="stretch")
        st.caption(f"In one batch of {len(names)}: {int(df['in batch'].iloc[0])} evaluations for every image; "
                   f"alone: {df['alone'].mean():.0f} on average (min {df['alone'].min()}, max {df['alone'].max()}).")

st.subheader("One image up close")
which = st.selectbox("Image", list(range(len(idx))), key="traj_one",
                     format_func=lambda j: f"#{idx[j]} (label {labels[j]})" if labels[j] >= 0
                     else f"{idx[j]} (prediction {int(view.preds[j])})")
if channels:
    st.plotly_chart(plots.feature_maps(view.states[:, which], channels, view.ts), key="traj_maps", width="stretch")
g1, g2 = st.columns(2)
g1.plotly_chart(plots.norms_figure(view.ts, view.state_norm[:, which], view.field_norm[:, which]),
                key="traj_norms", width="stretch")
g2.plotly_chart(plots.step_probabilities(view.ts, view.step_probs[:, which]), key="traj_probs", width="stretch")
if dims == "2-D animated" and field is not None:
    st.caption(
        f"Arrows: f(t={field.t:.3g}, h) at points h = mean + u·PC1 + v·PC2 of the plane through the states' mean, "
        "projected onto PC1 and PC2 (lengths scaled). What it can show: the direction the field pushes states that "
        "lie on this plane. What it cannot: real states lie off the plane (the other "
        f"{view.states[0, 0].numel() - 2:,} dimensions), where the field can differ; on average "
        f"{100 * float(field.off_plane.mean()):.0f}% of the field's length points out of the plane and is not drawn. "
        "Trajectories need not follow the arrows."
    )
