"""Draw a digit (or upload a picture) and let RKNet classify it, step by step.

Projector first: the canvas, the predicted digit and the ten bars sit side by side in one
panel (the pen canvas component) that fits a 1280x720 screen without scrolling. The drawing is
classified in the browser while the pen moves (the model exported to ONNX, run by
onnxruntime-web); the server receives the final 28x28 on pen-up. Uploads, and browsers without
wasm, are classified on the server and shown in the same panel. The latest input wins: an upload
replaces the drawing, a stroke or Clear replaces the upload.
"""


import streamlit as st

from odenet.app import plots
from odenet.app.access import Busy
from odenet.app.cache import cached_onnx_bytes, file_version
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
from odenet.app.room_ui import SHARE_KEY, maybe_share, share_toggle
from odenet.app.state import keep
from odenet.app.web import drawing_image, drawing_tensor, pen_canvas
from odenet.app.widgets import MAX_VIEW_STEPS, model_picker, solver_picker
from odenet.data.preprocess import ImageError, load_upload, prepare_canvas
from odenet.inspect.analysis import predict
from odenet.inspect.digitcheck import check_digit, warm_digit_stats
from odenet.model.export import ExportError, step_times

# less empty space above the title, so that the canvas and its panel fit a 720-pixel-high projector
COMPACT = "<style>[data-testid=stMainBlockContainer] { padding-top: 2.2rem; }</style>"

ensure_app_navigation()
keep("draw_model", "draw_*_integ", "draw_*_steps", "think_steps_*", "think_play", SHARE_KEY)
st.html(COMPACT)
head_left, head_right = st.columns([3, 2], vertical_alignment="bottom")
head_left.title("Draw a digit")
with head_right:
    link = PageLink("draw", [model_param(), *solver_params()])
url = link.values
link.seed({"draw_model": model_key(url["model"]) if url["model"] else None})

with locked_controls(link.lesson):
    c_model, c_solver = st.columns([3, 2], vertical_alignment="bottom")
    with c_model:
        picked = model_picker("draw_model")
    if picked is None:
        st.stop()
    choice, model = picked
    trained = model.config.solver
    link.seed({f"draw_{choice.key}_integ": url["integrator"], f"draw_{choice.key}_steps": url["steps"]})
    # the popover's label names the solver in use (read from the widgets' state before they render)
    integ_now = st.session_state.get(f"draw_{choice.key}_integ", trained.integrator)
    steps_now = st.session_state.get(f"draw_{choice.key}_steps", trained.steps)
    as_trained = (integ_now, int(steps_now)) == (trained.integrator, trained.steps)
    with c_solver.popover(f"Inference solver: {integ_now} x{steps_now}" + (" (as trained)" if as_trained else ""),
                          width="stretch"):
        solver = solver_picker(f"draw_{choice.key}", trained)
        st.caption(f"Trained with {trained.label()}. Other solvers show whether the model is still an ODE.")
if link.lesson:  # the settings row is hidden: say what the link chose
    st.caption(f"Model: {choice.label} · inference solver: **{solver.label()}**"
               + ("" if solver == trained else f" (trained with {trained.label()})"))
link.publish({"model": model_url_name(choice.key), "integrator": solver.integrator, "steps": solver.steps},
             defaults={"model": default_model_name(), "integrator": trained.integrator, "steps": trained.steps})

warmed = st.session_state.setdefault("_digit_stats_warm", set())
if choice.key not in warmed:  # the non-digit check's statistics (3-6 s once per model) fit while the visitor draws
    warmed.add(choice.key)
    warm_digit_stats(model)

canvas_nonce = st.session_state.setdefault("canvas_nonce", 0)  # a new value wipes the canvas in place
upload_nonce = st.session_state.setdefault("upload_nonce", 0)  # a new value empties the file uploader
onnx, export_error = None, None
try:  # exported once per (checkpoint version, solver) for all visitors, within the work limits
    onnx = cached_onnx_bytes(model, solver.method, solver.steps, solver.t0, solver.t1, key=file_version(choice.path))
except (ExportError, Busy) as exc:  # the server classifies meanwhile
    export_error = str(exc)

# the component is drawn first, the uploader below it; what the server computes for the current
# input (an upload, or a drawing where the browser cannot run the model) reaches the panel on the
# next run through ``external`` and ``notice``, kept from the previous run of this script
canvas_rgba = st.session_state.get("canvas_override")  # tests inject canvas pixels here
drawing = None
if canvas_rgba is None:
    # one key for good: Clear wipes this canvas in place (clear_token) instead of mounting a new one,
    # so the in-browser model stays loaded and a stroke begun right after Clear is not lost
    drawing = pen_canvas(onnx, key="pen", steps_ts=step_times(solver.steps, solver.t0, solver.t1),
                         strokes=st.session_state.get("draw_strokes"), clear_token=canvas_nonce,
                         external=st.session_state.get("draw_external"), notice=st.session_state.get("draw_notice"))
    if drawing is not None and drawing.get("strokes") is not None:
        st.session_state["draw_strokes"] = drawing["strokes"]  # the drawing survives a visit to another page
upload = st.file_uploader("... or upload a picture of a digit (it replaces the drawing; Clear or a stroke "
                          "replaces it)", type=["png", "jpg", "jpeg"], key=f"draw_upload_{upload_nonce}")
sharing = share_toggle()  # off by default; the class gallery (presenter's page) shows shared drawings

# the latest input wins: a new upload replaces the drawing, a new stroke (or Clear) replaces the upload
seq = None if drawing is None or drawing.get("seq") is None else (drawing.get("mount"), drawing["seq"])
upload_id = None if upload is None else upload.file_id
last = st.session_state.get("draw_source")
if upload_id is not None and (last is None or last.get("upload") != upload_id):
    st.session_state["draw_source"] = {"kind": "upload", "upload": upload_id, "seq": seq}
    if seq is not None or st.session_state.get("draw_strokes"):
        st.session_state["canvas_nonce"] = canvas_nonce + 1  # wipe the drawing: the upload replaces it
        st.session_state.pop("draw_strokes", None)
elif seq is not None and (last is None or last.get("seq") != seq):
    st.session_state["draw_source"] = {"kind": "drawing", "upload": None, "seq": seq}
    if upload is not None:  # a stroke or Clear after an upload: the upload goes
        st.session_state["upload_nonce"] = upload_nonce + 1
        st.session_state.pop("draw_external", None)
        st.session_state.pop("draw_notice", None)
        st.rerun()
last = st.session_state.get("draw_source")
use_upload = upload is not None and last is not None and last["kind"] == "upload"

in_browser = (canvas_rgba is None and onnx is not None and not use_upload
              and (drawing is None or drawing.get("wasm", True) is not False))
prepared, source = None, None
try:
    if use_upload:
        prepared, source = load_upload(upload.getvalue()), f"upload {upload.name}"
        if prepared.blank:
            st.warning(f"No digit found in {upload.name}: the picture has (almost) no ink after cropping.")
            st.session_state.pop("draw_external", None)
            st.stop()
    elif canvas_rgba is not None:
        prepared, source = prepare_canvas(canvas_rgba), "drawing"
except ImageError as exc:
    st.error(f"Could not use that image: {exc}")
    st.stop()

if in_browser:
    st.caption(f"Predictions run in your browser (onnxruntime-web on wasm) with {solver.label()}, updating while "
               "you draw; the server only receives the final 28x28.")
elif canvas_rgba is None and not use_upload:
    why = export_error or (drawing or {}).get("error") or "wasm is unavailable in this browser"
    st.caption(f"Predictions run on the server ({why}).")
x = image28 = None
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
    if st.session_state.pop("draw_external", None) is not None:
        st.rerun()  # the panel still shows an input that is gone
    if not in_browser:  # the pen canvas shows its own prompt and live prediction
        st.info("✍️ Draw a digit on the canvas (or upload a picture) to see the prediction.")
    st.stop()
st.session_state["drawing"] = x  # the Trajectories page can use it

# one check for every input (pen-up 28x28, upload, test hook): odenet.inspect.digitcheck (docs/digit_check.md)
check = check_digit(model, prepared if prepared is not None else image28,
                    strokes=None if use_upload or drawing is None else drawing.get("strokes"))
notice_text = check.message or None
if notice_text:
    st.warning(notice_text)
pred = None
if not in_browser:  # the server answers: the panel beside the canvas shows it, and this line says it too
    pred = predict(model, x, solver)
    st.markdown(f"**Prediction: {pred.digit}** · confidence {plots.format_confidence(pred.confidence)} · "
                f"{solver.label()}")
    st.caption(f"{pred.nfe} function evaluations, {1000 * pred.seconds:.0f} ms on the server. Input: {source}. "
               "Cropped to the ink, scaled into 20x20, centred by mass in 28x28, normalised like the training data.")
    if canvas_rgba is not None:  # no pen canvas (test hooks): show the bars and the 28x28 here
        c1, c2 = st.columns([2, 1])
        c1.plotly_chart(plots.probability_bars(pred.probs[0]), key="draw_bars", width="stretch")
        c2.image(plots.digit_pixels(image28), caption="What the model sees (28x28)", width=168)
    probs = pred.step_probs[:, 0].tolist()  # (steps + 1) x 10
    if use_upload:
        external = {"id": f"upload:{upload_id}:{solver.label()}:{choice.key}", "kind": "upload", "probs": probs,
                    "image28": [int(round(255 * float(v))) for v in image28.reshape(-1)], "title": source}
        notice = {"text": notice_text, "for": "upload"} if notice_text else None
    else:
        external = {"id": f"server:{seq}:{solver.label()}:{choice.key}", "kind": "server", "probs": probs,
                    "seq": None if seq is None else seq[1]}
        notice = {"text": notice_text, "seq": None if seq is None else seq[1]} if notice_text else None
else:
    external = None
    notice = {"text": notice_text, "seq": seq[1]} if notice_text and seq is not None else None
if sharing:  # the 28x28 only, with the prediction and the check's verdict (odenet.app.room)
    shared = pred or predict(model, x, solver)
    maybe_share(image28, shared.digit, shared.confidence, not_digit=not check.looks_like_digit,
                drawing=("upload", upload_id) if use_upload else ("canvas", canvas_nonce))
if canvas_rgba is None and (external, notice) != (st.session_state.get("draw_external"),
                                                  st.session_state.get("draw_notice")):
    st.session_state["draw_external"], st.session_state["draw_notice"] = external, notice
    st.rerun()  # hand the server's answer to the panel beside the canvas

st.subheader("Watch it think")
view_steps = st.slider("Solver steps for this view", 1, MAX_VIEW_STEPS, int(solver.steps),
                       key=f"think_steps_{solver.label()}",
                       help="The output head applied to the hidden state at every solver step time.")
# at the inference solver's own steps the server's answer above is this view already: not solved again
same_steps = int(view_steps) == solver.steps
think = pred if pred is not None and same_steps else predict(model, x, solver.replace(steps=int(view_steps)))
if not same_steps:
    st.caption(f"This view solves with {solver.integrator} x{int(view_steps)}; the panel beside the canvas uses the "
               f"inference solver, {solver.label()}. More steps show the same path at finer time resolution (the "
               "answer can differ slightly: the model was trained with its own steps).")
if st.toggle("Play it over solver time", key="think_play", help="Bars that change step by step (play/pause, slider)"):
    st.plotly_chart(plots.probability_animation(think.ts, think.step_probs[:, 0]), key="draw_think_anim",
                    width="stretch")
else:
    st.plotly_chart(plots.step_probabilities(think.ts, think.step_probs[:, 0]), key="draw_think", width="stretch")
st.caption("At t0 the head sees only the downsampled image; the ODE then moves the state towards its answer. "
           "BatchNorm inside the vector field uses its training statistics, so step counts far from the "
           "training setting can drift (see the Solver robustness page).")
