"""Who this visitor is and what they may do, in Streamlit terms.

The rules live in :mod:`odenet.app.access` (presenter token, work limits) and
:mod:`odenet.app.identity` (the browser's id); this module applies them to the current session:
its id and the owner of the jobs it starts, whether the server is a shared demo, the address a
room opens, the presenter check in the sidebar and a slot for expensive work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import streamlit as st

from odenet.app.access import Busy, is_public_address, presenter_token, shared_override, token_matches, work_limiter
from odenet.app.address import AddressError, public_url
from odenet.app.identity import browser_id, is_remembered_presenter, remember_presenter

__all__ = ["visitor_id", "owner_id", "heavy_work", "server_is_public", "join_url", "presenter_access"]


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
