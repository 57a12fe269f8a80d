"""The Draw page's pen canvas: a Streamlit Components v2 element that predicts in the browser.

While the pen moves, the browser preprocesses the canvas exactly as
:func:`odenet.data.preprocess.prepare_canvas` does (``assets/preprocess.js``) and runs the exported
RKNet (:mod:`odenet.model.export`) with onnxruntime-web on wasm, so the probabilities, the prediction
and the per-step chart follow the pen without a server round trip.  On pen-up, undo and clear it
sends Python the 28x28 the model saw, the strokes and its probabilities.

Every file the browser loads comes from the Streamlit server: the component's JS/CSS and the
vendored onnxruntime-web runtime + wasm (gzip-compressed, inflated in the browser) are this
package's ``assets`` directory, served as the component's ``asset_dir`` under
``/_stcore/bidi-components/odenet.pen_canvas/``; the ONNX model is registered with Streamlit's
media file manager (``/media/<content hash>.bin``), so a rerun sends only its URL and the
browser keeps the loaded session while the URL (the bytes) stay the same.  If wasm cannot
start, the component reports ``wasm: False`` and the page predicts on the server from
``image28``.

Rebuild the vendored runtime with ``cd odenet/app/web && npm ci && npm run build``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from odenet.data.mnist import MNIST_MEAN, MNIST_STD, normalize
from odenet.data.preprocess import INK_THRESHOLD, MIN_INK_PIXELS
from odenet.utils import package_dir

__all__ = ["COMPONENT_NAME", "ASSET_DIR", "assets_available", "register_model", "pen_canvas", "drawing_image",
           "drawing_tensor"]

COMPONENT_NAME = "odenet.pen_canvas"
ASSET_DIR = package_dir("odenet.app.web", "assets")  # built JS/CSS/wasm, found through package resources
_REQUIRED = ("pen_canvas.js", "pen_canvas.css", "preprocess.js", "vendor/ort.wasm.bundle.min.mjs",
             "vendor/ort-wasm-simd-threaded.wasm.gz")

_lock = threading.Lock()
_mounts: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def assets_available() -> bool:
    """Whether the built browser assets (component JS and the vendored onnxruntime-web) are present."""
    return all((ASSET_DIR / name).is_file() for name in _REQUIRED)


def _mount_fn() -> Callable[..., Any]:
    """The component's mount callable for the running Streamlit runtime, registering it on first use.

    Installed packages declare an ``asset_dir`` in ``pyproject.toml``; odenet also runs from a
    source checkout, so the asset directory is registered here with the same manifest objects
    Streamlit builds from ``[tool.streamlit.component]``.
    """
    import streamlit as st
    from streamlit.components.v2.get_bidi_component_manager import get_bidi_component_manager
    from streamlit.components.v2.manifest_scanner import ComponentConfig, ComponentManifest

    if not assets_available():
        missing = [n for n in _REQUIRED if not (ASSET_DIR / n).is_file()]
        raise FileNotFoundError(f"odenet's browser assets are missing from {ASSET_DIR} ({', '.join(missing)}); "
                                "rebuild them with: cd odenet/app/web && npm ci && npm run build")
    manager = get_bidi_component_manager()
    with _lock:
        mount = _mounts.get(manager)
        if mount is None:
            if manager.get_component_path(COMPONENT_NAME) is None:
                manifest = ComponentManifest(name="odenet", version="0",
                                             components=[ComponentConfig(name="pen_canvas", asset_dir=ASSET_DIR.name)])
                manager.register_from_manifest(manifest, ASSET_DIR.parent)
            mount = st.components.v2.component(COMPONENT_NAME, js="pen_canvas.js", css="pen_canvas.css",
                                               isolate_styles=True)
            _mounts[manager] = mount
    return mount


def register_model(onnx_bytes: bytes, key: str) -> str:
    """Serve ``onnx_bytes`` from this Streamlit server; returns its URL (stable for the same bytes).

    Uses the media file manager that also serves ``st.image`` files: the file lives while a
    session's latest run referenced it, so call this on every rerun that mounts the canvas.
    """
    from streamlit import runtime

    return runtime.get_instance().media_file_mgr.add(onnx_bytes, "application/octet-stream",
                                                     f"odenet.pen_canvas.model.{key}")


def pen_canvas(model: bytes | str | None, *, key: str, steps_ts: Sequence[float], labels: Sequence[str] | None = None,
               pen_width: int = 20, size: int = 280, strokes: list[list[list[float]]] | None = None,
               clear_token: int | None = None, external: dict[str, Any] | None = None,
               notice: dict[str, Any] | None = None,
               on_change: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Mount the pen canvas; returns the last drawing the browser sent, or None before the first one.

    ``model``: the ONNX bytes from :func:`odenet.app.cache.cached_onnx_bytes` (served by this server),
    a URL on this server, or None (no browser inference: the page predicts from ``image28``).
    ``steps_ts``: the step times of the exported solve (x axis of the per-step chart; one per row
    of the model's output).  ``strokes``: a drawing to restore when the canvas is mounted afresh
    (e.g. the ``strokes`` of an earlier result, after visiting another page).
    ``clear_token``: change it to wipe the canvas in place (the page's own Clear button).  The
    canvas keeps its key, so it is never remounted under the pen, and a drawing the browser sent
    before the change is not returned: the result is as if nothing had been drawn since.
    ``external``: a result the server computed, shown in the same panel as the browser's own:
    ``{"id", "kind": "upload", "image28": 784 ints, "probs": (steps + 1) x classes, "title"}``
    puts an uploaded picture on the canvas (a stroke or Clear replaces it), ``{"id", "kind":
    "server", "seq", "probs"}`` answers the drawing ``seq`` where the browser cannot run the model.
    ``notice``: ``{"text", "seq"}`` (a drawing) or ``{"text", "for": "upload"}``, shown in the panel
    while that input is on the canvas (the non-digit warning).

    The result dict: ``seq`` (counter), ``blank``, ``image28`` (784 uint8 values, row-major),
    ``strokes``, ``size``, ``probs`` ((steps + 1) x classes from the browser, or None),
    ``prediction`` (index or None), ``wasm`` (False when browser inference is unavailable),
    ``error`` (why, or None), ``mount`` (an id of the browser-side instance: ``(mount, seq)``
    names one drawing even across a remount, which restarts ``seq``) and ``clear_token``.  When
    wasm fails before anything is drawn, the result is ``{"wasm": False, "error": ..., "image28":
    None, ...}``.
    """
    if isinstance(model, (bytes, bytearray)):
        url: str | None = register_model(bytes(model), key)
    else:
        url = model
    data = {
        "instance": key,
        "model_url": url,
        "ts": [float(t) for t in steps_ts],
        "labels": [str(x) for x in (labels if labels is not None else range(10))],
        "pen_width": int(pen_width),
        "size": int(size),
        "strokes": strokes or [],
        "clear_token": clear_token,
        "external": external,
        "notice": notice,
        "preprocess": {"inkThreshold": INK_THRESHOLD, "minInk": MIN_INK_PIXELS, "mean": MNIST_MEAN, "std": MNIST_STD},
    }
    callback = on_change or (lambda: None)
    result = _mount_fn()(key=key, data=data, on_drawing_change=callback, on_runtime_change=callback,
                         width="stretch", height="content")
    drawing = result.get("drawing") if hasattr(result, "get") else getattr(result, "drawing", None)
    runtime_state = result.get("runtime") if hasattr(result, "get") else getattr(result, "runtime", None)
    if drawing and drawing.get("clear_token") != clear_token:
        drawing = None  # drawn before the page's last Clear: forgotten
    if drawing is None and runtime_state is None:
        return None
    out: dict[str, Any] = {"seq": 0, "blank": True, "image28": None, "strokes": [], "size": size, "probs": None,
                           "prediction": None, "wasm": True, "error": None, "mount": None, "clear_token": clear_token}
    if drawing:
        out.update(drawing)
    if runtime_state and runtime_state.get("wasm") is False:
        out["wasm"] = False
        out["error"] = runtime_state.get("error") or out.get("error")
    return out


def drawing_image(drawing: dict[str, Any] | None) -> np.ndarray | None:
    """The 28x28 uint8 picture the browser's model saw, or None for no/blank drawing."""
    if not drawing or drawing.get("blank") or drawing.get("image28") is None:
        return None
    arr = np.asarray(drawing["image28"], dtype=np.int64)
    if arr.size != 784 or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"image28 must hold 784 values in 0..255, got {arr.size} values")
    return arr.astype(np.uint8).reshape(28, 28)


def drawing_tensor(drawing: dict[str, Any] | None) -> torch.Tensor | None:
    """(1, 1, 28, 28) normalised model input from the browser's 28x28 (server-side fallback inference)."""
    img = drawing_image(drawing)
    return None if img is None else normalize(torch.from_numpy(img)[None])
