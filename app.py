"""odenet: the Neural ODE lab.  `streamlit run app.py` (or `make run`)."""

import streamlit as st

st.set_page_config(page_title="odenet: Neural ODE lab", page_icon=":material/scatter_plot:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/integrators.py", title="Integrators", icon=":material/show_chart:", url_path="integrators"),
    st.Page("pages/draw.py", title="Draw a digit", icon=":material/draw:", url_path="draw"),
    st.Page("pages/trajectories.py", title="Trajectories", icon=":material/scatter_plot:", url_path="trajectories"),
    st.Page("pages/robustness.py", title="Solver robustness", icon=":material/science:", url_path="robustness"),
]

st.navigation(PAGES).run()
