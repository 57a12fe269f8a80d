"""Widgets several pages share: the model picker, the solver picker and MNIST with its error box."""

from __future__ import annotations

import streamlit as st

from odenet.app.cache import cached_model
from odenet.app.state import all_methods
from odenet.data.mnist import DataError, MNISTSplit, load_mnist
from odenet.model.rknet import RKNet
from odenet.ode.solvers import SolverSpec
from odenet.train.runs import ModelChoice, available_models

__all__ = ["MAX_VIEW_STEPS", "require_mnist", "model_picker", "model_and_test", "solver_picker"]

MAX_VIEW_STEPS = 64  # the most fixed steps a page's inference view solves with (the pickers, links and sliders)


def require_mnist() -> tuple[MNISTSplit, MNISTSplit] | None:
    """MNIST or an actionable error box (the page keeps rendering; other pages still work)."""
    try:
        with st.spinner("Loading MNIST ..."):
            return load_mnist()  # verified and read once per process (odenet.data.mnist caches it)
    except DataError as exc:
        st.error(f"MNIST is not available: {exc}")
        return None


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
    choice = next((c for c in choices if c.key == sel), choices[0])
    try:
        return choice, cached_model(choice.path)
    except (ValueError, OSError) as exc:
        st.error(f"Could not load {choice.label}: {exc}")
        return None


def model_and_test(key: str) -> tuple[ModelChoice, RKNet, MNISTSplit]:
    """Model picker plus the MNIST test split; stops the page with a message if either is missing."""
    picked = model_picker(key)
    data = require_mnist()
    if picked is None or data is None:
        st.stop()
    return picked[0], picked[1], data[1]


def solver_picker(key: str, default: SolverSpec, max_steps: int = MAX_VIEW_STEPS) -> SolverSpec:
    """Integrator + steps widgets over built-in and this session's methods (fixed steps here);
    returns the chosen :class:`SolverSpec` on the default's interval."""
    methods = {**all_methods(), default.integrator: default.method}  # a run's own custom method too
    names = list(methods)
    idx = names.index(default.integrator) if default.integrator in names else 0
    c1, c2 = st.columns(2)
    integ = c1.selectbox("Integrator", names, index=idx, key=f"{key}_integ",
                         format_func=lambda k: f"{k} ({methods[k].name}, order {methods[k].order})")
    steps = c2.number_input("Steps", min_value=1, max_value=max_steps, value=min(max_steps, int(default.steps)),
                            step=1, key=f"{key}_steps")
    return SolverSpec.for_method(methods[integ], steps=int(steps), t0=default.t0, t1=default.t1)
