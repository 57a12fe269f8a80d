"""Home: what a neural ODE is, the notebook's forward pass, and where to go next."""

import streamlit as st

from odenet.checkpoints import load_checkpoint, pretrained_models
from odenet.ui import ensure_app_navigation

ensure_app_navigation()
st.title("odenet: a Neural ODE lab")
st.markdown(
    """
A **neural ODE** replaces a stack of residual blocks $h_{k+1} = h_k + f(h_k)$ by a continuous
change of the hidden state, $\\frac{dh}{dt} = f_\\theta(t, h)$, integrated from $t_0$ to $t_1$ by an
ODE solver. A ResNet block is exactly one Euler step; better integrators (Runge-Kutta) and more
steps follow the same vector field more faithfully. **RKNet** downsamples an MNIST digit to a
64x6x6 state, lets a small conv network $f_\\theta$ (time fed in as an extra channel) drive it with
a solver, then pools and classifies.
"""
)
c1, c2 = st.columns(2)
with c1:
    st.subheader("The notebook's forward pass")
    st.code(
        """def forward(self, x):
    x = self.sampling(x)               # (N, 1, 28, 28) -> (N, 64, 6, 6)
    x = self.solver.integrate(x)       # h(t1) from h(t0) with the chosen method
    return self.output(x)              # pool -> linear -> 10 logits""",
        language="python",
    )
with c2:
    st.subheader("Runge-Kutta updates")
    st.latex(r"\text{Euler:}\quad y_{n+1} = y_n + h\, f(t_n, y_n)")
    st.latex(r"k_i = f\Big(t_n + c_i h,\; y_n + h \sum_{j<i} a_{ij} k_j\Big),\qquad "
             r"y_{n+1} = y_n + h \sum_i b_i k_i")
    st.latex(r"\text{RK4:}\quad y_{n+1} = y_n + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4)")

st.subheader("Pages")
cols = st.columns(5)
links = [
    ("pages/train.py", "Train", ":material/model_training:", "train RKNet live with any integrator"),
    ("pages/integrators.py", "Integrators", ":material/show_chart:",
     "solvers on test ODEs, convergence orders, custom tableaux"),
    ("pages/draw.py", "Draw a digit", ":material/draw:", "classify your drawing and watch each solver step"),
    ("pages/trajectories.py", "Trajectories", ":material/scatter_plot:", "hidden states through the ODE, in PCA space"),
    ("pages/robustness.py", "Solver robustness", ":material/science:",
     "does the net stay accurate with other solvers?"),
]
for col, (page, title, icon, text) in zip(cols, links):
    with col:
        st.page_link(page, label=title, icon=icon)
        st.caption(text)

st.subheader("Pretrained models")
models = pretrained_models()
if not models:
    st.info("No pretrained models are shipped in this checkout; train one on the Train page.")
rows = []
for name, path in models.items():
    try:
        ck = load_checkpoint(path)
    except ValueError as exc:
        st.warning(f"{name}: {exc}")
        continue
    acc = (ck.metrics or {}).get("test_acc")
    rows.append({"model": name, "solver": ck.model_config.label(),
                 "test accuracy": f"{100 * acc:.2f}%" if isinstance(acc, float) else "n/a",
                 "file": path.name})
if rows:
    st.dataframe(rows, hide_index=True, width="content")
