"""Streamlit glue shared by the pages: cached resources and a few common widgets.

Only the pages import this module.  Read-only shared things (checkpoints via
``st.cache_resource``; MNIST is cached by odenet.data) are read once per process; anything
mutable lives in ``st.session_state`` or in the thread-safe job manager.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st
import torch

from .checkpoints import load_model
from .data import DataError, MNISTSplit, load_mnist
from .integrators import METHODS, custom_method, register_method
from .jobs import JobManager, get_manager
from .models import RKNet
from .runs import ModelChoice, available_models

__all__ = ["ensure_app_navigation", "cached_model", "manager", "model_picker", "model_and_test", "solver_picker",
           "require_mnist", "add_custom_method"]

_MODEL_LOCK = threading.Lock()


def ensure_app_navigation() -> None:
    """Call first in every page file.  On a fresh server whose first request is a page URL
    (a bookmark to /draw, say), Streamlit runs the file in ``pages/`` directly in its legacy
    multipage mode, bypassing app.py's ``st.navigation`` (wrong menu, no wide layout).  Leave
    that mode and rerun, so app.py routes the request like any other."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def require_mnist() -> tuple[MNISTSplit, MNISTSplit] | None:
    """MNIST or an actionable error box (the page keeps rendering; other pages still work)."""
    try:
        with st.spinner("Loading MNIST ..."):
            return load_mnist()  # verified and read once per process (odenet.data caches it)
    except DataError as exc:
        st.error(f"MNIST is not available: {exc}")
        return None


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(path: str, mtime: float) -> RKNet:
    return load_model(path)


def cached_model(path: Path) -> RKNet:
    """This session's copy of a checkpoint's model.  The file is read once per process (and
    file version); each session gets its own copy once, so changing its solver settings never
    affects another user's page."""
    mtime = path.stat().st_mtime
    models = st.session_state.setdefault("_odenet_models", {})
    key = (str(path), mtime)
    if key not in models:
        base = _load(str(path), mtime)
        with _MODEL_LOCK:
            model = RKNet(base.config)
            model.load_state_dict(base.state_dict())
        model.train_config, model.metrics = base.train_config, base.metrics
        model.trained_config = base.trained_config
        models.clear()  # keep one model per session
        models[key] = model.to(memory_format=torch.channels_last).eval()
    return models[key]


def manager() -> JobManager:
    return get_manager()


def model_picker(key: str) -> tuple[ModelChoice, RKNet] | None:
    """Select box over shipped models and finished runs; returns the choice and its model."""
    choices = available_models()
    if not choices:
        st.warning("No models yet: the shipped models are missing and no run has finished. "
                   "Train one on the Train page.")
        return None
    labels = {c.key: c.label for c in choices}
    sel = st.selectbox("Model", list(labels), format_func=labels.get, key=key,
                       help="Shipped pretrained models and your finished or stopped runs.")
    choice = next(c for c in choices if c.key == sel)
    try:
        return choice, cached_model(choice.path)
    except ValueError as exc:
        st.error(f"Could not load {choice.label}: {exc}")
        return None


def model_and_test(key: str) -> tuple[ModelChoice, RKNet, MNISTSplit]:
    """Model picker plus the MNIST test split; stops the page with a message if either is missing."""
    picked = model_picker(key)
    data = require_mnist()
    if picked is None or data is None:
        st.stop()
    return picked[0], picked[1], data[1]


def add_custom_method(name: str, a: list[list[float]], b: list[float], c: list[float] | None) -> str:
    """Validate and register a user tableau; returns its registry key.  Raises TableauError."""
    method = custom_method(name, a, b, c)
    key = "custom_" + "".join(ch if ch.isalnum() else "_" for ch in name.lower())[:40]
    register_method(key, method, overwrite=True)
    return key


def solver_picker(key: str, default_integrator: str = "rk4", default_steps: int = 1) -> dict:
    """Integrator + steps widgets (embedded pairs run fixed-step here); kwargs for ``RKNet.set_solver``."""
    names = list(METHODS)
    idx = names.index(default_integrator) if default_integrator in names else 0
    c1, c2 = st.columns(2)
    integ = c1.selectbox("Integrator", names, index=idx, key=f"{key}_integ",
                         format_func=lambda k: f"{k} ({METHODS[k].name}, order {METHODS[k].order})")
    steps = c2.number_input("Steps", min_value=1, max_value=64, value=int(default_steps), step=1, key=f"{key}_steps")
    return dict(integrator=integ, steps=int(steps), adaptive=False)
