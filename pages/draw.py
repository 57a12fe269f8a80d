"""Draw a digit (or upload a picture) and let RKNet classify it, step by step."""

import streamlit as st

from odenet import plots
from odenet.analysis import predict
from odenet.preprocess import ImageError, load_upload, prepare_canvas
from odenet.ui import ensure_app_navigation, model_picker, solver_picker

ensure_app_navigation()
st.title("Draw a digit")

picked = model_picker("draw_model")
if picked is None:
    st.stop()
choice, model = picked
with st.expander("Inference solver (default: as trained)", expanded=False):
    solver = solver_picker(f"draw_{choice.key}", model.config.solver)

left, right = st.columns([1, 2])
with left:
    st.caption("Draw one digit, white on black. Undo/redo are in the canvas toolbar.")
    nonce = st.session_state.setdefault("canvas_nonce", 0)
    canvas_rgba = st.session_state.get("canvas_override")  # tests inject strokes here
    if canvas_rgba is None:
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(stroke_width=20, stroke_color="#FFFFFF", background_color="#000000", height=280,
                           width=280, drawing_mode="freedraw", return_image_data=True, key=f"canvas_{nonce}")
        canvas_rgba = result.image_data
    if st.button("Clear canvas", key="clear_canvas"):
        st.session_state["canvas_nonce"] = nonce + 1
        st.session_state.pop("canvas_override", None)
        st.session_state.pop("drawing", None)
        st.rerun()
    upload = st.file_uploader("... or upload a picture of a digit", type=["png", "jpg", "jpeg"], key="draw_upload")

prepared, source = None, None
try:
    if upload is not None:
        prepared, source = load_upload(upload.getvalue()), f"upload {upload.name}"
    elif canvas_rgba is not None:
        prepared, source = prepare_canvas(canvas_rgba), "drawing"
except ImageError as exc:
    right.error(f"Could not use that image: {exc}")
    st.stop()

with right:
    if prepared is None or prepared.blank:
        st.info("✍️ Draw a digit on the canvas (or upload a picture) to see the prediction.")
        st.stop()
    st.session_state["drawing"] = prepared.tensor  # the Trajectories page can use it
    pred = predict(model, prepared.tensor, solver)
    m1, m2, m3 = st.columns(3)
    m1.metric("Prediction", str(pred.digit))
    m2.metric("Confidence", f"{100 * pred.confidence:.1f}%")
    m3.metric("Solver", solver.label(), help="Integrator and step count used for this prediction")
    c1, c2 = st.columns([2, 1])
    c1.plotly_chart(plots.probability_bars(pred.probs[0]), key="draw_bars", width="stretch")
    c2.image(plots.digit_pixels(prepared.image28), caption="What the model sees (28x28)", width=168)
    st.caption(f"{pred.nfe} function evaluations, {1000 * pred.seconds:.0f} ms. Input: {source}. Cropped to the ink, "
               "scaled into 20x20, centred by mass in 28x28, normalised "
               "like the training data.")

st.subheader("Watch it think")
view_steps = st.slider("Solver steps for this view", 2, 32, max(8, solver.steps), key="think_steps",
                       help="The output head applied to the hidden state at every solver step time.")
think = predict(model, prepared.tensor, solver.replace(steps=int(view_steps)))
st.plotly_chart(plots.step_probabilities(think.ts, think.step_probs[:, 0]), key="draw_think", width="stretch")
st.caption("At t0 the head sees only the downsampled image; the ODE then moves the state towards its answer. "
           "BatchNorm inside the vector field uses its training statistics, so step counts far from the "
           "training setting can drift (see the Solver robustness page).")
