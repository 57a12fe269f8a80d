"""Home: what a neural ODE is, the notebook's forward pass, and where to go next."""

import streamlit as st

from odenet.app.nav import PAGES, ensure_app_navigation
from odenet.data.mnist import TEST_SIZE
from odenet.errors import OdenetError
from odenet.inspect.analysis import REFERENCE_SOLVER
from odenet.train.checkpoints import pretrained_models, summarize_checkpoint

# Graphviz DOT drawn by Streamlit's own bundled renderer (no CDN, no graphviz package): sending a
# string costs nothing on the server.  Notation: h is the hidden state, Δt the step size.
_FONT = 'fontname="Helvetica", fontsize=11'
RKNET_DOT = f"""digraph RKNet {{
  rankdir=LR; bgcolor="transparent"; node [shape=box, style="rounded,filled", {_FONT}]; edge [{_FONT}];
  x [label="MNIST digit\\n1x28x28", fillcolor="#f0f0f0"];
  stem [label="stem: conv downsampling\\n1x28x28 -> 64x6x6", fillcolor="#dbe9f6"];
  ode [label="ODE block\\nh' = f(t, h)\\nintegrated from t0 to t1\\nby the chosen solver (steps of Δt)",
       fillcolor="#fde2c8"];
  head [label="head: pool + linear\\n-> 10 classes", fillcolor="#d9f0d3"];
  x -> stem; stem -> ode [label="h(t0)"]; ode -> head [label="h(t1)"];
  ode -> ode [label="one solver step\\nh(t) -> h(t + Δt)"];
}}"""
RK_STEP_DOT = f"""digraph RKStep {{
  rankdir=LR; bgcolor="transparent"; nodesep=0.25; node [shape=box, style="rounded,filled", {_FONT}];
  edge [{_FONT}]; graph [{_FONT}];
  h [label="state h\\nat time t", fillcolor="#f0f0f0"];
  {{ rank=same;
    k1 [label="k1 = f(t + c_1 Δt, h)", fillcolor="#dbe9f6"];
    k2 [label="k2 = f(t + c_2 Δt, h + Δt a_21 k1)", fillcolor="#dbe9f6"];
    dots [label="...", shape=plaintext, style=""];
    ks [label="ks = f(t + c_s Δt, h + Δt Σ_j a_sj k_j)", fillcolor="#dbe9f6"];
  }}
  out [label="h(t + Δt) ≈\\nh + Δt Σ_i b_i k_i", fillcolor="#d9f0d3"];
  h -> k1; h -> k2; h -> ks;
  k1 -> k2 [label="a_21"]; k2 -> dots; dots -> ks [label="a_sj"];
  k1 -> out [label="b_1"]; k2 -> out [label="b_2"]; ks -> out [label="b_s"];
  label="stage i evaluates f at t + c_i Δt; the step adds Δt times the stages weighted by b_i"; labelloc=b;
}}"""

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

Notation on this page: $h$ is always the **hidden state**; the solver's **step size** is $\\Delta t$
(Δt), so $n$ steps over $[t_0, t_1]$ have $\\Delta t = (t_1 - t_0)/n$.
"""
)
st.graphviz_chart(RKNET_DOT)
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
    st.latex(r"\text{Euler:}\quad h_{n+1} = h_n + \Delta t\, f(t_n, h_n)")
    st.latex(r"k_i = f\Big(t_n + c_i \Delta t,\; h_n + \Delta t \sum_{j<i} a_{ij} k_j\Big)")  # two lines: fit 1,400 px
    st.latex(r"h_{n+1} = h_n + \Delta t \sum_i b_i k_i")
    st.latex(r"\text{RK4:}\quad h_{n+1} = h_n + \tfrac{\Delta t}{6}(k_1 + 2k_2 + 2k_3 + k_4)")
    st.markdown("The coefficients $a_{ij}$, $b_i$, $c_i$ of an $s$-stage method form its **Butcher tableau**:")
    st.latex(r"\begin{array}{c|ccc} c_1 & & & \\ c_2 & a_{21} & & \\ \vdots & \vdots & \ddots & \\ "
             r"c_s & a_{s1} & \cdots & a_{s,s-1} \\ \hline & b_1 & \cdots & b_s \end{array}")

st.subheader("One Runge-Kutta step")
st.graphviz_chart(RK_STEP_DOT)
st.caption("Stages k1 ... ks of one step of size Δt: stage i evaluates f at t + c_i Δt from h plus earlier stages "
           "weighted by a_ij; the step adds Δt times the b_i-weighted sum of the stages. The Integrators page draws "
           "these stages for a real problem and shows every method's Butcher tableau.")

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
    st.caption(f"Accurate solver: {REFERENCE_SOLVER.label()}, on the {TEST_SIZE:,} test images. The gap is the "
               "accuracy with the training solver minus that (Ott et al., ICLR 2021); see Solver robustness.")
