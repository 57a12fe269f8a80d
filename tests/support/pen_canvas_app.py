"""A tiny app around odenet.app.web.pen_canvas for the browser tests and the latency benchmark.

``?model=broken`` hands the component bytes that are not an ONNX model (the wasm-failure path);
``?steps=N`` exports the shipped rk4 x1 model with N Euler steps instead of its own solver;
``?lab=1`` adds a model switch (its own solver, Euler x2, Euler x3: three ONNX files) and a "hide
canvas" box (ticking it and unticking it unmounts and mounts the canvas again).
"""

import json

import streamlit as st

from odenet.app.cache import cached_onnx_bytes
from odenet.app.web import pen_canvas
from odenet.model.export import step_times
from odenet.ode.integrators import get_method
from odenet.train.checkpoints import load_model, pretrained_models

st.set_page_config(page_title="pen canvas test", layout="wide")


@st.cache_resource
def _model():
    return load_model("rk4_1step")


model = _model()
steps = int(st.query_params.get("steps", model.config.steps))
method = get_method("euler" if "steps" in st.query_params else model.config.integrator)
if st.query_params.get("lab"):
    choice = st.radio("model", ["own solver", "euler x2", "euler x3"], horizontal=True)
    if choice != "own solver":
        steps, method = int(choice[-1]), get_method("euler")
    if st.checkbox("hide canvas"):
        st.stop()
path = pretrained_models()["rk4_1step"]
onnx = cached_onnx_bytes(model, method, steps, model.config.t0, model.config.t1,
                         key=(str(path), path.stat().st_mtime_ns))
if st.query_params.get("model") == "broken":
    onnx = b"this is not an onnx model"
result = pen_canvas(onnx, key="pen", steps_ts=step_times(steps, model.config.t0, model.config.t1))
summary = None if result is None else {k: result[k] for k in ("seq", "blank", "prediction", "wasm", "error")}
st.text("server: " + json.dumps(summary))
