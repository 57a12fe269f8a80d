"""Home: what a neural ODE is, the notebook's forward pass, and where to go next."""

import streamlit as st

from odenet.checkpoints import pretrained_models, summarize_checkpoint
from odenet.errors import OdenetError
from odenet.ui import PAGES, ensure_app_navigation

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
    x = self.sampling(x)          # -> (N, 64, 6, 6)
    x = self.solver.integrate(x)  # h(t0) -> h(t1)
    return self.output(x)         # -> 10 logits""",
        language="python",
    )
with c2:
    st.subheader("Runge-Kutta updates")
    st.latex(r"\text{Euler:}\quad y_{n+1} = y_n + h\, f(t_n, y_n)")
    st.latex(r"k_i = f\Big(t_n + c_i h,\; y_n + h \sum_{j<i} a_{ij} k_j\Big)")  # two lines: fits at 1,400 px
    st.latex(r"y_{n+1} = y_n + h \sum_i b_i k_i")
    st.latex(r"\text{RK4:}\quad y_{n+1} = y_n + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4)")

st.subheader("Pages")
links = [p for p in PAGES if p.url_path]
for i, page in enumerate(links):
    if i % 3 == 0:
        cols = st.columns(3)  # rows of three: the titles fit at 1,400 px
    with cols[i % 3]:
        st.page_link(page.path, label=page.title, icon=page.icon)
        st.caption(page.description)

st.subheader("Pretrained models")
models = pretrained_models()
if not models:
    st.info("No pretrained models are shipped in this checkout; train one on the Train page.")
rows = []
for name, path in models.items():
    try:
        info = summarize_checkpoint(path, name)
    except OdenetError as exc:
        st.warning(f"{name}: {exc}")
        continue
    ode = info.odeness or {}
    rows.append({"model": name, "training solver": info.solver_label,
                 "test accuracy": f"{100 * info.test_acc:.2f}%" if info.test_acc is not None else "n/a",
                 "with an accurate solver": f"{100 * ode['reference_acc']:.2f}%" if ode else "not measured",
                 "ODE-ness gap (points)": f"{100 * ode['gap']:+.2f}" if ode else "",
                 "note": ("works only with its training solver (a ResNet in disguise)" if info.solver_bound
                          else "stays accurate under other solvers" if ode else "")})
if rows:
    st.dataframe(rows, hide_index=True, width="content")
    st.caption("Accurate solver: adaptive Dormand-Prince 5(4), rtol 1e-5, on the 10,000 test images. The gap is "
               "the accuracy with the training solver minus that (Ott et al., ICLR 2021); see Solver robustness.")
