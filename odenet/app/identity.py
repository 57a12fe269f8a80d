"""Who is this browser? A stable id that survives a reload, so control follows the person.

A Streamlit session ends when its tab reloads, so a job "owned by this session" was taken away
from the person who started it by a reload or a second tab.  The owner is now the *browser*: a
random 128-bit id kept in a first-party cookie (``odenet_browser``, SameSite=Strict, one year)
that a tiny in-page component sets on the first visit.  Later visits send it with the
websocket handshake (``st.context.cookies``).  Only a hash of it is used as an owner name, so the
cookie itself never appears in job records or logs.  Another browser (or a private window) has
another id and stays a visitor.

On a shared server the presenter proves themselves once with the token; the browsers that did
are remembered in memory (bounded, per process), so a reload keeps the presenter's controls.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict

__all__ = ["COOKIE", "browser_owner", "remember_presenter", "is_remembered_presenter", "forget_presenters",
           "browser_id"]

COOKIE = "odenet_browser"
_VALID = re.compile(r"[0-9a-f]{32}")
_MAX_PRESENTERS = 64
_presenters: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()

_JS = """
export default function (component) {
  const { setStateValue, data } = component;
  const name = data.cookie;
  const found = document.cookie.split('; ').find((c) => c.startsWith(name + '='));
  let id = found ? found.slice(name.length + 1) : '';
  if (!/^[0-9a-f]{32}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    document.cookie = `${name}=${id}; path=/; max-age=31536000; SameSite=Strict`;
  }
  if (data.known !== id) setStateValue('id', id);
}
"""
_component = None
_component_lock = threading.Lock()


def browser_owner(cookie_value: str | None) -> str | None:
    """The owner name for a browser cookie value (a hash; None when the value is not a valid id)."""
    if not isinstance(cookie_value, str) or not _VALID.fullmatch(cookie_value):
        return None
    return "browser-" + hashlib.sha256(cookie_value.encode()).hexdigest()[:20]


def remember_presenter(owner: str) -> None:
    """This browser proved the presenter token: keep it the presenter after a reload (bounded)."""
    with _lock:
        _presenters[owner] = None
        _presenters.move_to_end(owner)
        while len(_presenters) > _MAX_PRESENTERS:
            _presenters.popitem(last=False)


def is_remembered_presenter(owner: str | None) -> bool:
    """Whether this browser entered the presenter token earlier in this server's life."""
    with _lock:
        return owner is not None and owner in _presenters


def forget_presenters() -> None:
    """Drop every remembered presenter browser (tests; a presenter who wants to hand over)."""
    with _lock:
        _presenters.clear()


def browser_id() -> str | None:
    """This browser's owner name, or None until the browser has reported it (first visit: one rerun).

    Streamlit glue: reads the cookie from the websocket handshake; when it is missing, mounts an
    invisible component that creates it and reports it back."""
    import streamlit as st

    try:
        cookie = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (bare script runs, some test harnesses)
        cookie = None
    known = st.session_state.get("_odenet_browser_cookie")
    owner = browser_owner(cookie) or browser_owner(known)
    global _component
    with _component_lock:
        if _component is None:
            _component = st.components.v2.component("odenet.browser_identity", js=_JS)
    from streamlit.errors import StreamlitDuplicateElementKey

    # mounted on every run of a page that asks, known or not: the sidebar keeps the same elements
    # from one run to the next, so widgets below it (the presenter box) keep their state
    try:
        with st.sidebar:
            result = _component(key="odenet_browser_identity", data={"cookie": COOKIE, "known": known or cookie},
                                on_id_change=lambda: None, width="content", height="content")
    except StreamlitDuplicateElementKey:  # already mounted in this run (a second caller)
        return owner
    value = result.get("id") if hasattr(result, "get") else getattr(result, "id", None)
    if owner is None and isinstance(value, str) and _VALID.fullmatch(value):
        st.session_state["_odenet_browser_cookie"] = value
        return browser_owner(value)
    return owner
