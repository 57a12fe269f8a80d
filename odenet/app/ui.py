"""Streamlit glue shared by the pages: cached resources and a few common widgets.

Only the pages import this module.  Read-only shared things (checkpoints via
``st.cache_resource``; MNIST is cached by odenet.data.mnist) are read once per process; anything
mutable lives in ``st.session_state`` or in the thread-safe job manager.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
import torch

from odenet.app.access import Busy, is_public_address, presenter_token, shared_override, token_matches, work_limiter
from odenet.app.address import AddressError, public_url
from odenet.app.identity import browser_id, is_remembered_presenter, remember_presenter
from odenet.app.urlstate import Param, encode, lesson_mode, parse, query_string
from odenet.data.mnist import DataError, MNISTSplit, load_mnist
from odenet.inspect.analysis import PCAFit, StepView, pca_fit, plane_field, stage_states, step_view
from odenet.model.rknet import RKNet
from odenet.ode.integrators import METHODS, RungeKuttaMethod, custom_method, method_key
from odenet.ode.problems import ConvergenceResult, ODEProblem, convergence
from odenet.ode.solvers import MAX_FIXED_STEPS, SolverSpec
from odenet.train.checkpoints import load_model
from odenet.train.jobs import JobManager, get_manager
from odenet.train.runs import ModelChoice, available_models

__all__ = ["PageInfo", "PAGES", "ensure_app_navigation", "cached_model", "manager", "model_picker", "model_and_test",
           "forget", "solver_picker", "require_mnist", "server_is_public", "join_url", "presenter_access", "visitor_id",
           "heavy_work", "add_custom_method", "session_methods", "all_methods", "keep", "write_query",
           "BoundedCache", "tensor_digest", "cached_step_view", "cached_convergence", "PageLink", "model_param",
           "model_key", "model_url_name", "default_model_name", "solver_params", "locked_controls"]

T = TypeVar("T")


@dataclass(frozen=True)
class PageInfo:
    """One page of the app: app.py builds the navigation and the Home page its links from these."""

    path: str
    title: str
    icon: str
    url_path: str
    description: str


PAGES: tuple[PageInfo, ...] = (
    PageInfo("pages/home.py", "Home", ":material/home:", "", "what a neural ODE is"),
    PageInfo("pages/train.py", "Train", ":material/model_training:", "train", "train RKNet live with any integrator"),
    PageInfo("pages/integrators.py", "Integrators", ":material/show_chart:", "integrators",
             "solvers on test ODEs, convergence orders, custom tableaux"),
    PageInfo("pages/draw.py", "Draw a digit", ":material/draw:", "draw",
             "classify your drawing and watch each solver step"),
    PageInfo("pages/trajectories.py", "Trajectories", ":material/scatter_plot:", "trajectories",
             "hidden states through the ODE, in PCA space"),
    PageInfo("pages/robustness.py", "Solver robustness", ":material/science:", "robustness",
             "does the net stay accurate with other solvers?"),
    PageInfo("pages/gradients.py", "Gradients & memory", ":material/memory:", "gradients",
             "backprop vs the adjoint method vs checkpointing"),
    PageInfo("pages/gallery.py", "Class gallery", ":material/photo_library:", "gallery",
             "the room's shared drawings, live (presenter)"),
)


def ensure_app_navigation() -> None:
    """Call first in every page file.

    Streamlit behaviour worked around: when a server's *first* request is a page URL (a
    bookmark to /draw, say) and a ``pages/`` folder exists next to the main script, Streamlit
    runs that file directly in its legacy multipage mode (``PagesManager.uses_pages_directory``),
    bypassing app.py's ``st.navigation`` (wrong menu, no wide layout).  Leave that mode and rerun,
    so app.py routes the request like any other.  tests/test_browser.py opens a page URL first
    on a fresh server and fails if this breaks.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    _persist_kept()


_KEEP = "_odenet_keep"  # session key: the widget-key patterns that every page run re-asserts


def keep(*patterns: str) -> None:
    """Keep these widgets' values for the whole session, across visits to other pages.

    Streamlit forgets the state of a widget that a script run does not render, so a page's
    settings are lost as soon as another page runs.  ``patterns`` are widget keys or
    ``fnmatch`` patterns (``"tr_*"``); every page run (:func:`ensure_app_navigation`, which
    every page calls first) writes the matching values back as ordinary session state, which
    Streamlit keeps, and the widget picks them up when its page is shown again.  Only value
    widgets belong here, never buttons or file uploaders (their state cannot be set).
    """
    registered: set[str] = st.session_state.setdefault(_KEEP, set())
    registered.update(patterns)
    _persist_kept()


_KEPT = "_odenet_kept"  # session key: the last value of every kept widget (a plain dict Streamlit never prunes)


def _persist_kept() -> None:
    """Re-assert every kept widget value, and restore one that Streamlit dropped.

    Re-assigning a value as ordinary session state is Streamlit's documented way to keep it,
    but under load a page change can still prune a widget's state before the next page's run
    gets to re-assign it (seen: the Integrators' steps back at their default after a visit to
    Train).  So the values are also copied into a plain dict, and a kept key that is missing is
    put back from it.  Code that deletes a kept key on purpose calls :func:`forget`."""
    patterns = st.session_state.get(_KEEP)
    if not patterns:
        return
    backup: dict[str, Any] = st.session_state.setdefault(_KEPT, {})
    for key in list(st.session_state):
        if isinstance(key, str) and key not in (_KEEP, _KEPT) and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            st.session_state[key] = backup[key] = st.session_state[key]
    for key, value in backup.items():
        if key not in st.session_state:
            st.session_state[key] = value


def forget(*patterns: str, but: tuple[str, ...] = ()) -> None:
    """Delete the session keys matching these ``fnmatch`` patterns (except ``but``) for good (a
    Reset, a link that sets a widget back to its default): also from the kept values, which would
    otherwise restore them, including a kept value whose widget state Streamlit already dropped."""
    backup: dict[str, Any] = st.session_state.get(_KEPT, {})
    for key in {*st.session_state, *backup}:
        if isinstance(key, str) and key not in but and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            st.session_state.pop(key, None)
            backup.pop(key, None)


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


def require_mnist() -> tuple[MNISTSplit, MNISTSplit] | None:
    """MNIST or an actionable error box (the page keeps rendering; other pages still work)."""
    try:
        with st.spinner("Loading MNIST ..."):
            return load_mnist()  # verified and read once per process (odenet.data.mnist caches it)
    except DataError as exc:
        st.error(f"MNIST is not available: {exc}")
        return None


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(path: str, mtime: float) -> RKNet:
    return load_model(path)


def cached_model(path: Path) -> RKNet:
    """A checkpoint's model, read once per process and file version and shared by every session.

    Sharing is safe because nothing changes a model after loading: it stays in eval mode and a
    page passes its solver to the call (``model(x, solver=...)``) instead of setting it.
    """
    return _load(str(path), path.stat().st_mtime)


def manager() -> JobManager:
    return get_manager()


def visitor_id() -> str:
    """This browser session's id (its share of the work limits)."""
    return st.session_state.setdefault("owner", f"session-{uuid.uuid4().hex[:6]}")


def owner_id() -> str:
    """Who owns the jobs this visitor starts: the browser (a reload or a second tab keeps control,
    another browser does not; :mod:`odenet.app.identity`), or this session until the browser reported."""
    return browser_id() or visitor_id()


@contextlib.contextmanager
def heavy_work(what: str) -> Iterator[None]:
    """Run an expensive computation within the per-visitor and server-wide limits
    (:mod:`odenet.app.access`); when none is free, say so on the page and stop this run."""
    try:
        slot = work_limiter().slot(visitor_id(), what)
        slot.__enter__()
    except Busy as exc:
        st.warning(str(exc))
        st.stop()
    try:
        yield
    finally:
        slot.__exit__(None, None, None)


def server_is_public() -> bool:
    """Whether this Streamlit server is a shared demo: it listens beyond localhost, or
    ``ODENET_SHARED=1`` says so (a reverse proxy in front of a localhost server)."""
    forced = shared_override()
    return forced if forced is not None else is_public_address(str(st.get_option("server.address") or ""))


def join_url(strict: bool = False) -> str | None:
    """The address a room opens to join this server (:func:`odenet.app.address.public_url`):
    ``$ODENET_PUBLIC_URL``, else this machine's LAN address and port; None if unknown or (unless
    ``strict``: AddressError) if ``ODENET_PUBLIC_URL`` is malformed."""
    try:
        return public_url(str(st.get_option("server.address") or ""), int(st.get_option("server.port")),
                          base_path=str(st.get_option("server.baseUrlPath") or ""),
                          https=bool(st.get_option("server.sslCertFile")), browser_url=st.context.url)
    except AddressError:
        if strict:
            raise
        return None


def presenter_access() -> bool:
    """True when this session may start, stop and delete training runs.

    Always on localhost.  On a shared server, after the visitor typed the presenter token into
    the sidebar's password field (compared in constant time; only "is presenter" is kept in the
    session, never the token in a URL)."""
    if not server_is_public() or st.session_state.get("_is_presenter"):
        return True
    if is_remembered_presenter(browser_id()):  # this browser typed the token before a reload
        st.session_state["_is_presenter"] = True
        return True
    with st.sidebar.expander("Presenter", icon=":material/lock:"):
        typed = st.text_input("Presenter token", type="password", key="_presenter_token",
                              help="Printed in the server's terminal at start (or ODENET_PRESENTER_TOKEN).")
        if typed:
            if token_matches(typed, presenter_token()):
                st.session_state["_is_presenter"] = True
                if (browser := browser_id()) is not None:
                    remember_presenter(browser)
                st.rerun()
            st.error("That is not the presenter token.")
    return False


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


def session_methods() -> dict[str, RungeKuttaMethod]:
    """This visitor's own methods (from the Integrators page), by key; never seen by others."""
    return st.session_state.setdefault("custom_methods", {})


def all_methods() -> dict[str, RungeKuttaMethod]:
    """The built-in methods followed by this session's custom ones."""
    return {**METHODS, **session_methods()}


def add_custom_method(name: str, a: list[list[float]], b: list[float], c: list[float] | None) -> str:
    """Validate a user tableau and keep it in this session; returns its key.  Raises TableauError."""
    key = method_key(name)  # "RK²" -> "custom_rk2"; TableauError if nothing usable is left
    session_methods()[key] = custom_method(name, a, b, c)
    return key


def solver_picker(key: str, default: SolverSpec, max_steps: int = 64) -> SolverSpec:
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


_CONVERGENCE = BoundedCache(max_entries=64)


def cached_convergence(problem: ODEProblem, method: RungeKuttaMethod) -> ConvergenceResult:
    """:func:`odenet.ode.problems.convergence`, cached per (problem, tableau) for every session
    (a custom method is keyed by its coefficients, so two visitors' equal tableaux share it)."""
    key = (problem.key, method.name, method.order, repr(method.tableau))
    return _CONVERGENCE.get_or_compute(key, lambda: convergence(problem, method))


# -- views carried by links ---------------------------------------------------------------------

def model_url_name(key: str) -> str:
    """The name a link carries for a model picker key: ``shipped:rk4_1step`` -> ``rk4_1step``;
    runs keep ``run:<name>``."""
    return key.removeprefix("shipped:")


def model_key(name: str) -> str:
    """The picker key for a link's model name (the inverse of :func:`model_url_name`)."""
    return name if name.startswith(("shipped:", "run:")) else f"shipped:{name}"


def _model_names() -> list[str]:
    keys = [c.key for c in available_models()]  # shipped files and the runs directory only
    return [model_url_name(k) for k in keys] + [k for k in keys if k.startswith("shipped:")]


def model_param() -> Param:
    """``model``: one of the picker's models (None = the picker's first); nothing else is looked up."""
    return Param("model", "choice", None, choices=_model_names)


def default_model_name() -> str | None:
    """The link name of the picker's first model (what a link without ``model`` shows)."""
    choices = available_models()
    return model_url_name(choices[0].key) if choices else None


def solver_params(max_steps: int = 64) -> list[Param]:
    """``integrator`` and ``steps`` (None = the model's training solver)."""
    return [Param("integrator", "choice", None, choices=lambda: list(all_methods())),
            Param("steps", "int", None, lo=1, hi=min(max_steps, MAX_FIXED_STEPS))]


_URL_SEEN = "_odenet_url_seen"  # session key: per page, the query this session last wrote
_URL_WRITTEN = "_odenet_url_written"  # session key: recent queries any page of this session wrote


def write_query(q: dict[str, str]) -> None:
    """Put ``q`` in the address bar and remember that this session wrote it (so returning to a
    page with another page's query is not mistaken for a newly opened link)."""
    if {k: st.query_params.get(k) for k in st.query_params.keys()} != q:
        st.query_params.from_dict(q)
    written: list[dict] = st.session_state.setdefault(_URL_WRITTEN, [])
    if q not in written:
        written.append(dict(q))
        del written[:-32]


class PageLink:
    """A page's URL state: parse ``st.query_params`` once per run (warnings shown when the link
    is new), seed widget state from it, then write the page's settings back (:meth:`publish`)
    and show a "Copy link" box.

    A query is *new* when it differs from the one this session last wrote for the page (a link
    opened, an address edited): its values win over the kept widget state on that first render,
    missing parameters meaning their defaults.  After that the widgets drive the URL.
    """

    def __init__(self, page: str, params: list[Param]) -> None:
        self.page = page
        self.params = params
        full = {k: st.query_params.get(k) for k in st.query_params.keys()}  # last value of each key
        names = {p.name for p in params} | {"lesson"}  # another page's parameters are not this page's link
        self.query = {k: v for k, v in full.items() if k in names}
        seen: dict[str, dict] = st.session_state.setdefault(_URL_SEEN, {})
        written: list[dict] = st.session_state.setdefault(_URL_WRITTEN, [])
        # new = a link opened or an address edited, not a query one of this session's pages wrote
        self.fresh = bool(self.query) and seen.get(page) != self.query and full not in written
        self.lesson = lesson_mode(self.query)
        self.values, warnings = parse(self.query, params)
        if self.fresh:
            for w in warnings:
                st.warning(w)
        self._slot = st.empty()

    def seed(self, widgets: dict[str, Any]) -> None:
        """On a new link, set these widget keys (None: remove, so the widget takes its default)."""
        if not self.fresh:
            return
        for key, value in widgets.items():
            if value is None:
                forget(glob.escape(key))  # a literal key, not a pattern
            else:
                st.session_state[key] = value

    def publish(self, values: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, str]:
        """Write ``values`` to the URL (leaving out those equal to ``defaults``: links stay short)
        and refresh the "Copy link" box; returns the query written.  Call it once per run: the
        box is a keyed widget."""
        defaults = defaults or {}
        shown = {k: v for k, v in values.items() if v is not None and not (k in defaults and defaults[k] == v)}
        q = encode(shown, self.params)
        if self.lesson:
            q["lesson"] = "1"
        write_query(q)
        st.session_state.setdefault(_URL_SEEN, {})[self.page] = dict(q)
        room = join_url() if server_is_public() else None  # a shared server: the address the room opens
        base = f"{room}/{self.page}" if room else (st.context.url or f"/{self.page}").split("?")[0]
        with self._slot.container():
            # built only while open: st.code needs a 1.6 MB highlighter script that, loaded on every
            # first visit, cost Integrators 0.4 s of its first render (benchmarks/app/page_times.py)
            box = st.expander("🔗 Copy link to this view", key=link_box_key(self.page), on_change="rerun")
            if box.open:
                with box:
                    st.code(base + query_string(q), language=None)
                    lesson = {**q, "lesson": "1"}
                    st.markdown("Lesson link (the same view with its settings hidden):")
                    st.code(base + query_string(lesson), language=None)
        return q


def link_box_key(page: str) -> str:
    """Session key of a page's "Copy link" expander (True while the visitor has it open)."""
    return f"odenet_link_box_{page}"


_LOCK_CSS = "<style>.st-key-odenet_locked { display: none !important; }</style>"


def locked_controls(lesson: bool) -> Any:
    """A container for the settings a lesson link locks: hidden (still run) when ``lesson``,
    so the view the link carries stays and its controls do not."""
    if lesson:
        st.html(_LOCK_CSS)
        st.caption("🔒 Lesson view: the settings come from the link.")
    return st.container(key="odenet_locked" if lesson else None)
