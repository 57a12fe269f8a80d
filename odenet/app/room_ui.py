"""Streamlit glue for a class in the room: the join address in the sidebar, sharing drawings.

:func:`room_sidebar` (app.py, every page) shows a shared server's address as text and QR code.
The Draw page calls :func:`share_toggle` once and :func:`maybe_share` with each prediction; the
Gallery page shows the wall (:func:`drawing_wall`).  The shared state itself lives in
:mod:`odenet.app.room` (bounded, locked, presenter checks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any

import streamlit as st

from odenet.app import visitor
from odenet.app.address import AddressError, join_qr_png
from odenet.app.room import GALLERY_SIZE, SharedDrawing, as_image28, gallery, tally, tile

__all__ = ["SHARE_KEY", "SHARE_TEXT", "room_sidebar", "share_toggle", "maybe_share", "drawing_wall"]

SHARE_KEY = "room_share"  # session key of the "Share my drawings with the room" toggle
_LAST = "_room_last_share"  # session key: {"drawing", "id", "digest"} of this session's latest share
SHARE_TEXT = ("Shared: only the 28x28 picture the model sees, its prediction and confidence; no name. "
              f"Kept in the server's memory only (the room's last {GALLERY_SIZE} drawings, never written to "
              "disk) and shown on the presenter's Class gallery. Turning this off takes yours down.")


def room_sidebar() -> None:
    """On a shared server, the sidebar's "Join this class" block: the address the room opens
    (``ODENET_PUBLIC_URL`` or this machine's LAN address) as text and as a QR code.  Nothing on a
    local lab.  Call once per run from app.py (every page)."""
    if not visitor.server_is_public():
        return
    with st.sidebar.container(key="odenet_join"):
        st.markdown("**Join this class**")
        try:
            url = visitor.join_url(strict=True)
        except AddressError as exc:
            st.error(str(exc))
            return
        if url is None:
            st.caption("This machine's network address was not found (no network?). Set ODENET_PUBLIC_URL to "
                       "the address the room should open, e.g. http://192.168.1.20:8501.")
            return
        st.markdown(f"[`{url}`]({url})")
        st.image(join_qr_png(url), caption="Scan to open the lab", width=180)


def _withdraw_if_off() -> None:
    if not st.session_state.get(SHARE_KEY):
        gallery().withdraw(visitor.visitor_id())
        st.session_state.pop(_LAST, None)


def share_toggle() -> bool:
    """The "Share my drawings with the room" toggle (off by default, kept across pages) with the
    sentence saying exactly what is shared; turning it off removes this visitor's drawings from
    the gallery.  Returns whether sharing is on.  The page keeps :data:`SHARE_KEY` with
    :func:`odenet.app.state.keep` at its top (keep() re-asserts every kept widget, so it must run before
    any of them is drawn)."""
    on = st.toggle("Share my drawings with the room", key=SHARE_KEY, on_change=_withdraw_if_off)
    st.caption(SHARE_TEXT)
    return bool(on)


def maybe_share(image28: Any, digit: int, confidence: float, not_digit: bool, drawing: Hashable = None,
                said: int | None = None) -> SharedDrawing | None:
    """Add this drawing to the class gallery if the visitor's share toggle is on; returns what was
    shared (None when off or unchanged).

    ``image28``: the 28x28 the model saw (uint8, or float in [0, 1]); ``digit``/``confidence``:
    the prediction; ``not_digit``: the "not a digit" check's verdict; ``drawing``: what identifies
    this drawing on the page (the canvas' clear counter, an upload's id): more strokes on the same
    drawing replace its earlier share instead of adding one, and a rerun with an unchanged picture
    adds nothing.  ``said``: what the visitor says they drew, if they did (optional)."""
    if not st.session_state.get(SHARE_KEY):
        return None
    image = as_image28(image28)
    digest = hashlib.blake2b(image.tobytes() + f"|{int(digit)}|{said}".encode(), digest_size=16).hexdigest()
    last = st.session_state.get(_LAST)
    same = last is not None and last["drawing"] == drawing
    if same and last["digest"] == digest:
        return None
    item = gallery().add(image, digit, confidence, not_digit, visitor.visitor_id(), said=said,
                         replaces=last["id"] if same else None)
    st.session_state[_LAST] = {"drawing": drawing, "id": item.id, "digest": digest}
    return item


def drawing_wall(n: int) -> None:
    """The gallery's ``n`` most recent drawings as a grid of framed tiles with prediction and
    confidence (newest first), with a one-line summary."""
    items = gallery().recent(n)
    if not items:
        st.info("No drawings shared yet. On **Draw a digit**, students turn on *Share my drawings with the room*.")
        return
    t = tally(items)
    digits = ", ".join(f"{d}×{c}" for d, c in t["digits"].items())
    st.markdown(f"**{t['total']}** drawing{'s' if t['total'] != 1 else ''} · 🚫 {t['not_digit']} not a digit · "
                f"❌ {t['wrong']} not what was drawn · ⚠️ {t['low']} low confidence · predicted: {digits}")
    st.image([tile(d) for d in items], caption=[d.caption() for d in items], width=96)
