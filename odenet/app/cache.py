"""The app's one cache: results shared by every session, bounded, and computed within the work limits.

Every cached result of the app goes through :func:`get_or_compute`.  A key is a tuple whose first
item names its kind (:data:`KINDS`: how many of that kind are kept, and whether computing one is
expensive).  A hit costs nothing; a miss of an expensive kind first takes one of the visitor's
work slots (:func:`odenet.app.visitor.heavy_work`, limits in :mod:`odenet.app.access`), so one
visitor cannot fill the server with computations.  Values are shared by every visitor and must
never be mutated; anything a visitor owns lives in ``st.session_state`` instead.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import plotly.graph_objects as go
import torch

from odenet.app import plots, visitor
from odenet.app.access import work_limiter
from odenet.inspect.analysis import PCAFit, StepView, pca_fit, plane_field, stage_states, step_view
from odenet.model.export import export_onnx_bytes
from odenet.model.rknet import RKNet
from odenet.ode.integrators import RungeKuttaMethod
from odenet.ode.problems import ConvergenceResult, ODEProblem, convergence
from odenet.ode.solvers import SolverSpec
from odenet.train.checkpoints import load_model
from odenet.train.jobs import JobSnapshot
from odenet.utils import BoundedLRU

__all__ = ["Kind", "KINDS", "get_or_compute", "peek", "clear", "tensor_digest", "file_version", "cached_model",
           "cached_step_view", "cached_animation_extras", "cached_convergence", "cached_onnx_bytes",
           "cached_live_curves"]

T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One kind of cached result: at most ``max_entries`` are kept; ``work`` names a miss on the
    page when no work slot is free (None: cheap to compute, a miss takes no slot)."""

    max_entries: int
    work: str | None


KINDS: dict[str, Kind] = {
    "model": Kind(16, None),  # a checkpoint's RKNet per file version (milliseconds to read)
    "convergence": Kind(64, "Convergence runs"),  # Integrators: orders per (problem, tableau), up to ~2 s
    "step_view": Kind(6, "Trajectories"),  # a batch's hidden states through the solve and their PCA
    "animation": Kind(12, "Animation"),  # RK stage points and the vector field on the PCA plane
    "per_image_cost": Kind(8, "Per-image cost"),  # Trajectories: each image solved alone, adaptively
    "robustness": Kind(32, "Robustness grid"),  # accuracy over integrators x steps, and the ODE-ness gap
    "gradients": Kind(16, "Gradient measurement"),  # memory, time and error of each gradient method
    "pareto": Kind(64, "Pareto view"),  # Train: (accuracy, evaluations per image) per checkpoint version
    "onnx": Kind(8, "ONNX export"),  # Draw: the model unrolled for the browser, ~0.9 MB each
    "plane_lesson": Kind(1, "Augment lesson"),  # Flows in the plane: circles trained with augment 0 and 1
    "density_lesson": Kind(1, "Regulariser lesson"),  # Density flows: a CNF trained without and with RNODE
    "live": Kind(8, None),  # Train: a job's metrics and its two live charts, per report (~10 ms to build)
}
_STORES: dict[str, BoundedLRU[Any]] = {name: BoundedLRU(kind.max_entries) for name, kind in KINDS.items()}


def _store(key: tuple) -> BoundedLRU[Any]:
    if not isinstance(key, tuple) or not key or key[0] not in _STORES:
        raise KeyError(f"a cache key is a tuple starting with one of {', '.join(KINDS)}, got {key!r}")
    return _STORES[key[0]]


def peek(key: tuple) -> Any | None:
    """The cached value for ``key``, or None; never computes (a page that computes on a button)."""
    return _store(key).get(key)


def get_or_compute(key: tuple, fn: Callable[[], T], *, on_busy: Literal["stop", "raise"] = "stop") -> T:
    """The value for ``key`` shared by every session, computed by ``fn()`` on a miss.

    A miss of an expensive kind runs inside one of this visitor's work slots; when none is free
    the page says so and stops (``on_busy="stop"``), or :class:`odenet.app.access.Busy` is raised
    for the page to fall back on something else (``"raise"``).  Concurrent misses of the same key
    compute it once: the others wait for that result, and need no work slot for it."""
    store, kind = _store(key), KINDS[key[0]]
    hit = store.wait(key, _MISSING)  # a hit, or another visitor's computation of it to wait for
    if hit is not _MISSING:
        return hit
    with _work_slot(kind.work, on_busy):
        return store.get_or_compute(key, fn)


_MISSING: Any = object()


@contextlib.contextmanager
def _work_slot(work: str | None, on_busy: str) -> Iterator[None]:
    if work is None:
        yield
    elif on_busy == "raise":
        with work_limiter().slot(visitor.visitor_id(), work):
            yield
    else:
        with visitor.heavy_work(work):
            yield


def clear(kind: str | None = None) -> None:
    """Forget the cached values of one kind, or of all (tests; checkpoints rewritten in place)."""
    for name, store in _STORES.items():
        if kind is None or name == kind:
            store.clear()


def tensor_digest(x: torch.Tensor) -> str:
    """A short content hash of a tensor (shape, dtype and values), for cache keys."""
    t = x.detach().cpu().contiguous()
    h = hashlib.blake2b(f"{tuple(t.shape)}{t.dtype}".encode(), digest_size=16)
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def file_version(path: Path) -> tuple[str, int]:
    """A file's part of a cache key: its path and modification time (a rewritten checkpoint is new)."""
    return str(path), path.stat().st_mtime_ns


def cached_model(path: Path) -> RKNet:
    """A checkpoint's model, read once per process and file version and shared by every session.

    Sharing is safe because nothing changes a model after loading: it stays in eval mode and a
    page passes its solver to the call (``model(x, solver=...)``) instead of setting it.
    """
    return get_or_compute(("model", *file_version(path)), lambda: load_model(path))


def cached_step_view(path: Path, model: RKNet, x: torch.Tensor, solver: SolverSpec) -> tuple[StepView, PCAFit]:
    """:func:`odenet.inspect.analysis.step_view` of a checkpoint's model and its PCA fit, per
    (file version, solver, inputs); a revisit or a widget change elsewhere on the page does not
    recompute them."""
    def compute() -> tuple[StepView, PCAFit]:
        view = step_view(model, x, solver)
        return view, pca_fit(view.states, k=3)

    return get_or_compute(("step_view", *file_version(path), repr(solver), tensor_digest(x)), compute)


def cached_animation_extras(path: Path, model: RKNet, x: torch.Tensor, solver: SolverSpec, view: StepView,
                            fit: PCAFit, stages: bool, field_t: float | None) -> tuple[Any, Any]:
    """The animated PCA view's extras, cached like the step view: the RK stage points projected
    on the plane (or None) and the vector field on the plane at ``field_t`` (or None); they cost
    steps x stages and grid-size evaluations of f."""
    base = ("animation", *file_version(path), repr(solver), tensor_digest(x))
    points = get_or_compute((*base, "stages"), lambda: fit.project(stage_states(model, view.ts, view.states, solver))) \
        if stages else None
    field = get_or_compute((*base, "field", float(field_t)), lambda: plane_field(model, fit, float(field_t))) \
        if field_t is not None else None
    return points, field


def cached_convergence(problem: ODEProblem, method: RungeKuttaMethod) -> ConvergenceResult:
    """:func:`odenet.ode.problems.convergence` per (problem, tableau); a custom method is keyed by
    its coefficients, so two visitors' equal tableaux share it.  Raises Busy when no work slot is free."""
    key = ("convergence", problem.key, method.name, method.order, repr(method.tableau))
    return get_or_compute(key, lambda: convergence(problem, method), on_busy="raise")


def cached_onnx_bytes(model: RKNet, method: RungeKuttaMethod, steps: int, t0: float, t1: float,
                      key: Hashable) -> bytes:
    """:func:`odenet.model.export.export_onnx_bytes` per ``key`` (identifying the weights, e.g.
    :func:`file_version`) and solver.  An export is heavy work like any other: with no work slot
    free it raises Busy, and the page classifies on the server meanwhile."""
    full = ("onnx", key, getattr(method, "name", None), repr(method.tableau), int(steps), float(t0), float(t1))
    return get_or_compute(full, lambda: export_onnx_bytes(model, method, steps, t0, t1), on_busy="raise")


def cached_live_curves(snap: JobSnapshot) -> tuple[pd.DataFrame, go.Figure, go.Figure]:
    """A watched job's metrics frame and its loss and accuracy figures, built once per report for every
    visitor watching it (a room refreshing every 2 s otherwise rebuilt the same two figures per
    visitor).  Keyed by the job, its run directory, how many events it has and its status."""
    def compute() -> tuple[pd.DataFrame, go.Figure, go.Figure]:
        df = pd.DataFrame([e.to_dict() for e in snap.events])
        if df.empty or "kind" not in df or not (df["kind"] == "batch").any():
            return df, go.Figure(), go.Figure()
        loss, acc = plots.training_curves({"run": df})
        return df, loss, acc

    last = snap.events[-1] if snap.events else None
    key = ("live", snap.id, str(snap.run_dir), snap.status, len(snap.events),
           None if last is None else (last.kind, last.step, last.elapsed))
    return get_or_compute(key, compute)
