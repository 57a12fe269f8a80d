"""Results shared by every session: a checkpoint's model and the pages' expensive views.

Read-only shared things are computed once per process and key and handed to every visitor;
values are never mutated after they are cached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
import torch

from odenet.app.visitor import heavy_work
from odenet.inspect.analysis import PCAFit, StepView, pca_fit, plane_field, stage_states, step_view
from odenet.model.rknet import RKNet
from odenet.ode.integrators import RungeKuttaMethod
from odenet.ode.problems import ConvergenceResult, ODEProblem, convergence
from odenet.ode.solvers import SolverSpec
from odenet.train.checkpoints import load_model

__all__ = ["BoundedCache", "tensor_digest", "cached_model", "cached_step_view", "cached_animation_extras",
           "cached_convergence"]

T = TypeVar("T")


class BoundedCache:
    """A small thread-safe LRU cache shared by every session (values must never be mutated)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value for ``key``, computing it (outside the lock) on a miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data


def tensor_digest(x: torch.Tensor) -> str:
    """A short content hash of a tensor (shape, dtype and values), for cache keys."""
    t = x.detach().cpu().contiguous()
    h = hashlib.blake2b(f"{tuple(t.shape)}{t.dtype}".encode(), digest_size=16)
    h.update(t.numpy().tobytes())
    return h.hexdigest()


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(path: str, mtime: float) -> RKNet:
    return load_model(path)


def cached_model(path: Path) -> RKNet:
    """A checkpoint's model, read once per process and file version and shared by every session.

    Sharing is safe because nothing changes a model after loading: it stays in eval mode and a
    page passes its solver to the call (``model(x, solver=...)``) instead of setting it.
    """
    return _load(str(path), path.stat().st_mtime)


_STEP_VIEWS = BoundedCache(max_entries=6)
_ANIMATION_EXTRAS = BoundedCache(max_entries=12)


def cached_animation_extras(path: Path, model: RKNet, x: torch.Tensor, solver: SolverSpec, view: StepView,
                            fit: PCAFit, stages: bool, field_t: float | None) -> tuple[Any, Any]:
    """The animated PCA view's extras, cached like the step view: the RK stage points projected
    on the plane (or None) and the vector field on the plane at ``field_t`` (or None).  A miss
    takes a work slot (they cost steps x stages and grid-size evaluations of f)."""
    base = (str(path), path.stat().st_mtime_ns, repr(solver), tensor_digest(x))

    def get(key: tuple, compute: Callable[[], Any]) -> Any:
        if key in _ANIMATION_EXTRAS:
            return _ANIMATION_EXTRAS.get_or_compute(key, compute)
        with heavy_work("Animation"):
            return _ANIMATION_EXTRAS.get_or_compute(key, compute)

    points = get((*base, "stages"), lambda: fit.project(stage_states(model, view.ts, view.states, solver))) \
        if stages else None
    field = get((*base, "field", float(field_t)), lambda: plane_field(model, fit, float(field_t))) \
        if field_t is not None else None
    return points, field


def cached_step_view(path: Path, model: RKNet, x: torch.Tensor, solver: SolverSpec) -> tuple[StepView, PCAFit]:
    """:func:`odenet.inspect.analysis.step_view` of a checkpoint's model and its PCA fit, cached per
    (file version, solver, inputs) for every session; a revisit or a widget change elsewhere on
    the page does not recompute them.  Only a miss takes one of the visitor's work slots."""
    key = (str(path), path.stat().st_mtime_ns, repr(solver), tensor_digest(x))

    def compute() -> tuple[StepView, PCAFit]:
        view = step_view(model, x, solver)
        return view, pca_fit(view.states, k=3)

    if key in _STEP_VIEWS:
        return _STEP_VIEWS.get_or_compute(key, compute)
    with heavy_work("Trajectories"):
        return _STEP_VIEWS.get_or_compute(key, compute)


_CONVERGENCE = BoundedCache(max_entries=64)


def cached_convergence(problem: ODEProblem, method: RungeKuttaMethod) -> ConvergenceResult:
    """:func:`odenet.ode.problems.convergence`, cached per (problem, tableau) for every session
    (a custom method is keyed by its coefficients, so two visitors' equal tableaux share it)."""
    key = (problem.key, method.name, method.order, repr(method.tableau))
    return _CONVERGENCE.get_or_compute(key, lambda: convergence(problem, method))
