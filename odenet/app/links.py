"""Views carried by links, in Streamlit terms: a page's URL state, its "Copy link" box and lesson mode.

:mod:`odenet.app.urlstate` parses and encodes parameters (no Streamlit); :class:`PageLink` reads
them from ``st.query_params`` once per run, seeds the page's widgets from a newly opened link and
writes the page's settings back.  ``lesson=1`` hides the controls (:func:`locked_controls`).
"""

from __future__ import annotations

import glob
from typing import Any

import streamlit as st

from odenet.app import visitor
from odenet.app.state import all_methods, forget
from odenet.app.urlstate import Param, encode, lesson_mode, parse, query_string
from odenet.app.widgets import MAX_VIEW_STEPS
from odenet.ode.solvers import MAX_FIXED_STEPS
from odenet.train.runs import available_models

__all__ = ["PageLink", "write_query", "link_box_key", "locked_controls", "model_url_name", "model_key",
           "model_param", "default_model_name", "solver_params"]


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


def solver_params(max_steps: int = MAX_VIEW_STEPS) -> list[Param]:
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

    def reset(self, *patterns: str) -> None:
        """A Reset button's callback: forget these widget keys (``fnmatch`` patterns) and the link's
        settings, so the page shows its defaults; a lesson link stays a lesson link."""
        forget(*patterns)
        write_query({"lesson": "1"} if self.lesson else {})

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
        room = visitor.join_url() if visitor.server_is_public() else None  # a shared server: the room's address
        base = f"{room}/{self.page}" if room else (st.context.url or f"/{self.page}").split("?")[0]
        with self._slot.container():
            # built only while open: st.code needs a 1.6 MB highlighter script that, loaded on every
            # first visit, cost Integrators 0.4 s of its first render (benchmarks/app/page_times.py)
            box = st.expander("Copy link to this view", icon=":material/link:", key=link_box_key(self.page),
                              on_change="rerun")
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
