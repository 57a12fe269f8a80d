"""odenet dashboard entry point (placeholder until the pages land)."""

import streamlit as st

st.set_page_config(page_title="odenet: Neural ODE lab", page_icon="🌀", layout="wide")
st.title("odenet: Neural ODE lab")
st.write("Integrators, solvers and RKNet on MNIST. Pages are being built.")
