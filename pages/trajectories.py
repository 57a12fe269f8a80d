"""Hidden-state trajectories: how the ODE moves images through feature space."""

import streamlit as st
import torch

from odenet import plots
from odenet.analysis import pca_project
from odenet.data import normalize
from odenet.ui import cached_step_view, ensure_app_navigation, keep, model_and_test, solver_picker

ensure_app_navigation()
keep("traj_*")
st.title("Hidden-state trajectories")
choice, model, test = model_and_test("traj_model")
trained = model.config.solver
solver = solver_picker(f"traj_{choice.key}", trained.replace(steps=max(trained.steps, 8)))

c1, c2, c3 = st.columns(3)
source = c1.radio("Inputs", ["random test images", "one class", "current drawing"], key="traj_source")
n = c2.slider("Images", 5, 200, 60, key="traj_n", disabled=source == "current drawing")
seed = c3.number_input("Seed", 0, 10_000, 0, key="traj_seed")
gen = torch.Generator().manual_seed(int(seed))
if source == "current drawing":
    drawing = st.session_state.get("drawing")
    if drawing is None:
        st.info("Draw a digit on the Draw page first; it will appear here.")
        st.stop()
    x, labels, idx = drawing, [-1], ["drawing"]
else:
    pool = torch.arange(len(test))
    if source == "one class":
        digit = st.selectbox("Class", list(range(10)), key="traj_class")
        pool = pool[test.labels == digit]
    sel = pool[torch.randperm(len(pool), generator=gen)[:n]]
    x, labels, idx = normalize(test.images[sel]), test.labels[sel].tolist(), sel.tolist()

with st.spinner("Pushing the images through the ODE ..."):
    view = cached_step_view(choice.path, model, x, solver)  # shared cache: revisits do not recompute
    coords, explained = pca_project(view.states, k=3)
shown = [lab if lab >= 0 else int(p) for lab, p in zip(labels, view.preds.tolist())]
dims = st.segmented_control("PCA view", ["2-D", "3-D"], default="2-D", key="traj_dims",
                            help="Only the chosen figure is built and sent to the browser.") or "2-D"
st.plotly_chart(plots.pca_figure(coords, shown, view.preds.tolist(), view.ts, idx, 3 if dims == "3-D" else 2,
                                 explained), key="traj_pca", width="stretch")
acc_text = ""
if source != "current drawing":
    acc_text = f" Accuracy on these images: {100 * (view.preds == torch.tensor(labels)).float().mean():.1f}%."
st.caption(f"{solver.label()}: {len(view.ts)} step times, larger marker = t1.{acc_text}")

st.subheader("One image up close")
which = st.selectbox("Image", list(range(len(idx))), format_func=lambda j: f"#{idx[j]} (label {shown[j]})",
                     key="traj_one")
channels = st.multiselect("Channels", list(range(model.config.channels)), default=[0, 1, 2, 3], key="traj_ch",
                          max_selections=8)
if channels:
    st.plotly_chart(plots.feature_maps(view.states[:, which], channels, view.ts), key="traj_maps", width="stretch")
g1, g2 = st.columns(2)
g1.plotly_chart(plots.norms_figure(view.ts, view.state_norm[:, which], view.field_norm[:, which]),
                key="traj_norms", width="stretch")
g2.plotly_chart(plots.step_probabilities(view.ts, view.step_probs[:, which]), key="traj_probs", width="stretch")
st.info(
    "What you see: each line is one image's 64x6x6 hidden state moving from t0 (small markers) to t1 (large "
    "marker). Classes separate along the way. The vector field contains BatchNorm layers that use the "
    "statistics gathered with the training solver; evaluating with a very different solver or step count "
    "feeds them states they never saw, which is why trajectories (and accuracy) can change with the solver."
)
