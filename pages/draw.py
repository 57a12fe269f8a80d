"""Draw a digit (or upload a picture) and let RKNet classify it, step by step.

The drawing is classified in the browser while the pen moves (the model exported to ONNX,
run by onnxruntime-web); the server receives the final 28x28 on pen-up for the other pages.
Uploads, test hooks and browsers without wasm use the server path.
"""

import streamlit as st

from odenet import plots
from odenet.analysis import OOD_THRESHOLD, ood_score, predict
from odenet.export import ExportError, cached_onnx_bytes, step_times
from odenet.preprocess import ImageError, load_upload, prepare_canvas
from odenet.ui import (
    PageLink,
    default_model_name,
    ensure_app_navigation,
    keep,
    locked_controls,
    model_key,
    model_param,
    model_picker,
    model_url_name,
    solver_params,
    solver_picker,
)
from odenet.web import drawing_image, drawing_tensor, pen_canvas

ensure_app_navigation()
keep("draw_model", "draw_*_integ", "draw_*_steps", "think_steps", "think_play")
st.title("Draw a digit")
link = PageLink("draw", [model_param(), *solver_params(64)])
url = link.values
link.seed({"draw_model": model_key(url["model"]) if url["model"] else None})

with locked_controls(link.lesson):
    picked = model_picker("draw_model")
    if picked is None:
        st.stop()
    choice, model = picked
    link.seed({f"draw_{choice.key}_integ": url["integrator"], f"draw_{choice.key}_steps": url["steps"]})
    from_link = link.fresh and (url["integrator"] is not None or url["steps"] is not None)
    with st.expander("Inference solver (default: as trained)", expanded=from_link):
        solver = solver_picker(f"draw_{choice.key}", model.config.solver)
trained = model.config.solver
st.caption(f"Model: {choice.label} · inference solver: **{solver.label()}**"
           + ("" if solver == trained else f" (trained with {trained.label()})"))
link.publish({"model": model_url_name(choice.key), "integrator": solver.integrator, "steps": solver.steps},
             defaults={"model": default_model_name(), "integrator": trained.integrator, "steps": trained.steps})

nonce = st.session_state.setdefault("canvas_nonce", 0)
onnx, export_error = None, None
try:  # exported once per (checkpoint version, solver) for all visitors; cached bytes afterwards
    onnx = cached_onnx_bytes(model, solver.method, solver.steps, solver.t0, solver.t1,
                             key=(str(choice.path), choice.path.stat().st_mtime_ns))
except ExportError as exc:
    export_error = str(exc)

left, right = st.columns([3, 2])
with left:
    canvas_rgba = st.session_state.get("canvas_override")  # tests inject canvas pixels here
    drawing = None
    if canvas_rgba is None:
        # one key for good: Clear wipes this canvas in place (clear_token) instead of mounting a new
        # one, so the in-browser model stays loaded and a stroke begun right after Clear is not lost
        drawing = pen_canvas(onnx, key="pen", steps_ts=step_times(solver.steps, solver.t0, solver.t1),
                             strokes=st.session_state.get("draw_strokes"), clear_token=nonce)
        if drawing is not None and drawing.get("strokes") is not None:
            st.session_state["draw_strokes"] = drawing["strokes"]  # the drawing survives a visit to another page
    if st.button("Clear drawing and upload", key="clear_canvas"):
        st.session_state["canvas_nonce"] = nonce + 1
        for k in ("canvas_override", "drawing", "draw_strokes", "draw_source"):
            st.session_state.pop(k, None)
        st.rerun()
    upload = st.file_uploader("... or upload a picture of a digit", type=["png", "jpg", "jpeg"],
                              key=f"draw_upload_{nonce}")

# the latest input wins: a new upload replaces the drawing, a new stroke replaces the upload
seq = None if drawing is None or drawing.get("seq") is None else (drawing.get("mount"), drawing["seq"])
upload_id = None if upload is None else upload.file_id
last = st.session_state.get("draw_source")
if upload_id is not None and (last is None or last.get("upload") != upload_id):
    st.session_state["draw_source"] = last = {"kind": "upload", "upload": upload_id, "seq": seq}
elif seq is not None and (last is None or last.get("seq") != seq):
    st.session_state["draw_source"] = last = {"kind": "drawing", "upload": upload_id, "seq": seq}
use_upload = upload is not None and last is not None and last["kind"] == "upload"

in_browser = (canvas_rgba is None and onnx is not None and not use_upload
              and (drawing is None or drawing.get("wasm", True) is not False))
prepared, source = None, None
try:
    if use_upload:
        prepared, source = load_upload(upload.getvalue()), f"upload {upload.name}"
        if prepared.blank:
            right.warning(f"No digit found in {upload.name}: the picture has (almost) no ink after cropping.")
            st.stop()
    elif canvas_rgba is not None:
        prepared, source = prepare_canvas(canvas_rgba), "drawing"
except ImageError as exc:
    right.error(f"Could not use that image: {exc}")
    st.stop()

with right:
    if in_browser:
        st.caption(f"Predictions run in your browser (onnxruntime-web on wasm) with {solver.label()}, "
                   "updating while you draw; the server only receives the final 28x28.")
    elif canvas_rgba is None and not use_upload:
        why = export_error or (drawing or {}).get("error") or "wasm is unavailable in this browser"
        st.caption(f"Predictions run on the server ({why}).")
    x = None
    if prepared is not None and not prepared.blank:
        x, image28 = prepared.tensor, prepared.image28
    elif not use_upload:
        try:
            img = drawing_image(drawing)  # validated: 784 grey levels from the browser
        except ValueError as exc:
            st.error(f"The drawing the browser sent is not usable: {exc}")
            st.stop()
        if img is not None:
            x, image28 = drawing_tensor(drawing), img / 255.0
    if x is None:
        if not in_browser:  # the pen canvas shows its own prompt and live prediction
            st.info("✍️ Draw a digit on the canvas (or upload a picture) to see the prediction.")
        st.stop()
    st.session_state["drawing"] = x  # the Trajectories page can use it
    if (score := ood_score(image28)) > OOD_THRESHOLD:
        st.warning(f"This does not look like a handwritten digit (stroke score {score:.2f} > {OOD_THRESHOLD}: "
                   "mostly grey blur, as noise gives). The model answers anyway; do not trust its confidence.")
    if not in_browser:  # the browser already shows the probabilities, the prediction and the 28x28
        pred = predict(model, x, solver)
        m1, m2, m3 = st.columns(3)
        m1.metric("Prediction", str(pred.digit))
        m2.metric("Confidence", plots.format_confidence(pred.confidence))
        m3.metric("Solver", solver.label(), help="Integrator and step count used for this prediction")
        c1, c2 = st.columns([2, 1])
        c1.plotly_chart(plots.probability_bars(pred.probs[0]), key="draw_bars", width="stretch")
        c2.image(plots.digit_pixels(image28), caption="What the model sees (28x28)", width=168)
        st.caption(f"{pred.nfe} function evaluations, {1000 * pred.seconds:.0f} ms on the server. Input: {source}. "
                   "Cropped to the ink, scaled into 20x20, centred by mass in 28x28, normalised like the training "
                   "data.")

st.subheader("Watch it think")
view_steps = st.slider("Solver steps for this view", 2, 32, max(8, solver.steps), key="think_steps",
                       help="The output head applied to the hidden state at every solver step time.")
think = predict(model, x, solver.replace(steps=int(view_steps)))
if st.toggle("Play it over solver time", key="think_play", help="Bars that change step by step (play/pause, slider)"):
    st.plotly_chart(plots.probability_animation(think.ts, think.step_probs[:, 0]), key="draw_think_anim",
                    width="stretch")
else:
    st.plotly_chart(plots.step_probabilities(think.ts, think.step_probs[:, 0]), key="draw_think", width="stretch")
st.caption("At t0 the head sees only the downsampled image; the ODE then moves the state towards its answer. "
           "BatchNorm inside the vector field uses its training statistics, so step counts far from the "
           "training setting can drift (see the Solver robustness page).")
