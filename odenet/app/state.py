"""What a visitor's session keeps: widget settings across pages, and the visitor's own methods.

Streamlit forgets a widget's value as soon as a script run does not draw it (another page ran),
so a page names the widgets to keep (:func:`keep`) and every page run puts them back
(:func:`restore_kept`, called by :func:`odenet.app.nav.ensure_app_navigation`).  A custom Butcher
tableau typed on the Integrators page belongs to this session only (:func:`session_methods`);
other visitors never see it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import streamlit as st

from odenet.ode.integrators import METHODS, RungeKuttaMethod, custom_method, method_key

__all__ = ["keep", "restore_kept", "forget", "session_methods", "all_methods", "add_custom_method"]

_KEEP = "_odenet_keep"  # session key: the widget-key patterns that every page run re-asserts
_KEPT = "_odenet_kept"  # session key: the last value of every kept widget (a plain dict Streamlit never prunes)


def keep(*patterns: str) -> None:
    """Keep these widgets' values for the whole session, across visits to other pages.

    ``patterns`` are widget keys or ``fnmatch`` patterns (``"tr_*"``); every page run
    (:func:`restore_kept`) writes the matching values back as ordinary session state, which
    Streamlit keeps, and the widget picks them up when its page is shown again.  Only value
    widgets belong here, never buttons or file uploaders (their state cannot be set).
    """
    registered: set[str] = st.session_state.setdefault(_KEEP, set())
    registered.update(patterns)
    restore_kept()


def restore_kept() -> None:
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
