"""A browser tab without a browser: Streamlit's websocket protocol spoken with streamlit's own protobufs.

A tab opens ``ws://HOST:PORT/_stcore/stream`` (subprotocol ``streamlit``), sends a ``BackMsg`` whose
``rerun_script`` carries a ``ClientState`` (query string, page, widget states) and receives
``ForwardMsg``s: ``new_session`` when a run starts, ``navigation`` (the pages and their script
hashes), ``delta``s (the elements, each widget with its ``id``), ``auto_rerun`` (a fragment's
timer), and ``script_finished``.  :class:`StTab` does the same: it remembers the widgets the
server drew, keeps the values it set (sent with every rerun, as the browser's widget manager
does; a button's trigger only once), runs a fragment's timer on request, and times each
interaction from the ``BackMsg`` sent to the ``script_finished`` of the run it caused (a run that
ends early for an ``st.rerun`` continues into the next one).

Used by the capacity harness (``benchmarks/app/capacity.py``: hundreds of tabs in one asyncio
loop) and its test (``tests/app/test_stclient.py``).  Loopback servers only: the URL must name
127.0.0.1 or localhost.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DONE = {ForwardMsg.FINISHED_SUCCESSFULLY: "ok", ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "ok",
        ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile_error"}  # FINISHED_EARLY_FOR_RERUN: the next run follows


class StClientError(RuntimeError):
    """The server did something a tab cannot go on from: closed the socket, never finished a run in
    time, or has no such page or widget."""


@dataclass
class Widget:
    """One widget the server drew: its element type (``button``, ``selectbox``, ``bidi_component``
    ...), ``id`` (what a ``WidgetState`` names), label, options (for pickers) and the element proto."""

    kind: str
    id: str
    label: str
    options: list[str]
    proto: Any


@dataclass
class Interaction:
    """One timed interaction: what it was, seconds from the BackMsg sent to its run finished,
    how it ended (``ok``, ``compile_error``, ``timeout``, ``disconnected``), the exceptions shown,
    what came back (ForwardMsgs, bytes), the alerts shown, when it was sent and the markdown drawn."""

    what: str
    page: str
    seconds: float
    outcome: str
    exceptions: list[str]
    messages: int
    bytes: int
    alerts: list[str] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() when the BackMsg was sent
    texts: list[str] = field(default_factory=list)  # the markdown the run drew


@dataclass
class _Run:
    """The interaction in flight: when it was sent and what has come back since."""

    sent: float
    done: asyncio.Future
    started: float = 0.0
    exceptions: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0


def _check_loopback(url: str) -> None:
    """Refuse any server but this machine's: the harness must not load anything else."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"StTab connects to loopback servers only, not {host!r} ({url})")


def _element_label(kind: str, proto: Any) -> str:
    """A widget's label (a pen canvas has none: its component name)."""
    return str(getattr(proto, "label", "") or getattr(proto, "component_name", "") or "")


def _element_options(proto: Any) -> list[str]:
    """A picker's options as shown (selectbox, multiselect, radio, select_slider); else []."""
    opts = getattr(proto, "options", None)
    if opts is None:
        return []
    try:
        return [str(o) for o in opts]
    except TypeError:
        return []


class StTab:
    """One visitor's tab: ``await StTab.open(url, page)``, then :meth:`rerun` (or :meth:`click`,
    :meth:`set`, :meth:`goto`, :meth:`fragment_tick`) and :meth:`close`.

    ``interactions`` holds every timed interaction; ``bytes_by_kind`` and ``msgs_by_kind`` count
    what the server sent per message kind (a delta by its element type); ``widgets`` maps an id to
    the :class:`Widget` the latest runs drew (``find`` looks one up by key or label).
    """

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        _check_loopback(url)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.ws: Any = None
        self.pages: dict[str, str] = {}  # url path ("" for the default page) -> page script hash
        self.page = ""  # the url path of the page this tab shows
        self.page_hash = ""
        self.widgets: dict[str, Widget] = {}
        self.values: dict[str, WidgetState] = {}  # what this tab set: sent with every rerun
        self.fragments: dict[str, float] = {}  # fragment id -> its auto-rerun interval (s)
        self.interactions: list[Interaction] = []
        self.bytes_by_kind: Counter[str] = Counter()
        self.msgs_by_kind: Counter[str] = Counter()
        self.bytes_by_page: dict[str, Counter[str]] = defaultdict(Counter)
        self.session_id = ""
        self.closed_reason: str | None = None
        self._run: _Run | None = None
        self._reader: asyncio.Task | None = None

    @classmethod
    async def open(cls, url: str, page: str = "", query: str = "", timeout: float = 60.0,
                   cookies: dict[str, str] | None = None) -> StTab:
        """Connect and load ``page`` (its url path; "" the default page) as a browser's first request
        does; ``cookies`` go with the handshake (odenet's ``odenet_browser`` id, say)."""
        tab = cls(url, timeout)
        ws_url = tab.url.replace("http://", "ws://", 1) + "/_stcore/stream"
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else None
        tab.ws = await websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, additional_headers=headers,
                                          open_timeout=timeout, ping_interval=None, compression=None)
        tab._reader = asyncio.create_task(tab._read())
        tab.page = page
        await tab.rerun(f"open {page or 'home'}", page_name=page, query=query)
        return tab

    # -- sending ---------------------------------------------------------------------------------
    async def rerun(self, what: str, *, states: list[WidgetState] = (), page_hash: str | None = None,
                    page_name: str = "", fragment_id: str = "", auto: bool = False, query: str = "") -> Interaction:
        """Send one ``rerun_script`` (the kept values plus ``states``; a trigger is sent only this
        once) and wait for its run to finish; returns (and records) the timed :class:`Interaction`."""
        if self.closed_reason is not None:
            raise StClientError(f"the tab is closed ({self.closed_reason})")
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = query
        cs.page_script_hash = self.page_hash if page_hash is None else page_hash
        cs.page_name = page_name
        cs.fragment_id = fragment_id
        cs.is_auto_rerun = auto
        once = {s.id: s for s in states}
        for wid, state in self.values.items():
            if wid not in once:
                cs.widget_states.widgets.append(state)
        cs.widget_states.widgets.extend(once.values())
        if not fragment_id:
            self.fragments.clear()  # a full run re-announces the timed fragments it draws
            self.widgets.clear()  # ... and every element it shows
        loop = asyncio.get_running_loop()
        run = self._run = _Run(sent=time.perf_counter(), done=loop.create_future(), started=time.monotonic())
        await self.ws.send(msg.SerializeToString())
        try:
            outcome = await asyncio.wait_for(asyncio.shield(run.done), self.timeout)
        except TimeoutError:
            outcome = "timeout"
        self._run = None
        record = Interaction(what, self.page, time.perf_counter() - run.sent, outcome, run.exceptions, run.messages,
                             run.bytes, run.alerts, run.started, run.texts)
        self.interactions.append(record)
        return record

    def keep(self, state: WidgetState) -> None:
        """Remember a value this tab set, to send with every later rerun (not for triggers)."""
        self.values[state.id] = state

    async def set(self, widget: Widget, what: str = "", **value: Any) -> Interaction:
        """Set a widget's value (one ``WidgetState`` field, e.g. ``int_value=3`` or
        ``string_array_value=[...]``) and rerun, as a browser does on a change."""
        state = widget_state(widget.id, **value)
        self.keep(state)
        return await self.rerun(what or f"set {widget.label or widget.kind}", fragment_id=self._fragment_of(widget))

    async def click(self, widget: Widget, what: str = "") -> Interaction:
        """Press a button (a trigger, sent once) and rerun."""
        return await self.rerun(what or f"click {widget.label}", states=[widget_state(widget.id, trigger_value=True)],
                                fragment_id=self._fragment_of(widget))

    async def goto(self, page: str) -> Interaction:
        """Switch to another page (its url path) as the sidebar's link does."""
        if page not in self.pages:
            raise StClientError(f"no page {page!r} in the navigation; pages: {sorted(self.pages)}")
        self.page = page
        self.page_hash = self.pages[page]
        return await self.rerun(f"open {page or 'home'}", page_hash=self.page_hash)

    async def fragment_tick(self) -> Interaction | None:
        """Rerun the page's timed fragment once, as the browser's timer does (None: there is none)."""
        if not self.fragments:
            return None
        fid = next(iter(self.fragments))
        return await self.rerun(f"tick {self.page or 'home'}", fragment_id=fid, auto=True)

    def _fragment_of(self, widget: Widget) -> str:
        """The fragment a widget sits in (its run reruns only that fragment); "" for the whole page.
        Widgets are looked up on full runs, so this is always the page (kept simple on purpose)."""
        return ""

    def find(self, kind: str | None = None, key: str | None = None, label: str | None = None) -> Widget:
        """The drawn widget whose id ends with ``-<key>`` (or whose label contains ``label``), of
        element type ``kind`` if given; StClientError names what is on the page otherwise."""
        for w in self.widgets.values():
            if kind is not None and w.kind != kind:
                continue
            if key is not None and not w.id.endswith(f"-{key}"):
                continue
            if label is not None and label not in w.label:
                continue
            return w
        raise StClientError(f"no {kind or 'widget'} with key {key!r} / label {label!r} on {self.page or 'home'}; "
                            f"there are: {sorted((w.kind, w.id[-40:]) for w in self.widgets.values())}")

    async def close(self) -> None:
        """Close the socket (the server ends the session) and stop reading."""
        if self.closed_reason is None:
            self.closed_reason = "closed by the client"
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: nothing left to report
                pass

    # -- receiving -------------------------------------------------------------------------------
    async def _read(self) -> None:
        """Read ForwardMsgs until the socket closes; a close ends the interaction in flight."""
        try:
            async for raw in self.ws:
                self._receive(raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.closed_reason is None:
                self.closed_reason = "disconnected"
            if self._run is not None and not self._run.done.done():
                self._run.done.set_result("disconnected")

    def _receive(self, raw: bytes) -> None:
        """Account for one ForwardMsg and update what the tab knows."""
        msg = ForwardMsg()
        msg.ParseFromString(raw)
        kind = msg.WhichOneof("type") or "?"
        run = self._run
        if kind == "delta":
            kind = self._delta(msg, run)
        elif kind == "new_session":
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            if msg.new_session.page_script_hash:
                self.page_hash = msg.new_session.page_script_hash
        elif kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
            self.page = next((u for u, h in self.pages.items() if h == self.page_hash), self.page)
        elif kind == "auto_rerun":
            self.fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
        elif kind == "page_not_found" and run is not None:
            run.exceptions.append(f"page not found: {msg.page_not_found.page_name}")
        elif kind == "script_finished" and run is not None and msg.script_finished in DONE:
            run.done.set_result(DONE[msg.script_finished]) if not run.done.done() else None
        self.msgs_by_kind[kind] += 1
        self.bytes_by_kind[kind] += len(raw)
        self.bytes_by_page[self.page][kind] += len(raw)
        if run is not None:
            run.messages += 1
            run.bytes += len(raw)

    def _delta(self, msg: ForwardMsg, run: _Run | None) -> str:
        """Record a delta's widget (by id) or exception; returns its kind for the byte counts."""
        delta = msg.delta
        which = delta.WhichOneof("type")
        if which != "new_element":
            return f"delta.{which}"
        el = delta.new_element
        etype = el.WhichOneof("type") or "?"
        proto = getattr(el, etype, None)
        if etype == "exception" and run is not None:
            run.exceptions.append(f"{proto.type}: {proto.message}"[:300])
        elif etype == "alert" and run is not None:
            run.alerts.append(proto.body[:300])
        elif etype == "markdown" and run is not None:
            run.texts.append(proto.body[:300])
        wid = getattr(proto, "id", "") if proto is not None else ""
        if wid and isinstance(wid, str):
            self.widgets[wid] = Widget(etype, wid, _element_label(etype, proto), _element_options(proto), proto)
        return f"element.{etype}"


def widget_state(widget_id: str, **value: Any) -> WidgetState:
    """A ``WidgetState`` for ``widget_id`` holding one value field (``trigger_value=True``,
    ``int_value=3``, ``json_value='{...}'``, ``string_array_value=['a']``, ``int_array_value=[1]`` ...)."""
    if len(value) != 1:
        raise ValueError(f"give exactly one value field, got {sorted(value)}")
    (name, v), = value.items()
    state = WidgetState(id=widget_id)
    if name in ("string_array_value", "int_array_value", "double_array_value"):
        getattr(state, name).data.extend(v)
    else:
        setattr(state, name, v)
    return state


def pen_drawing_state(canvas: Widget, image28: list[int], seq: int, mount: str = "stclient",
                      clear_token: int = 0) -> WidgetState:
    """What the pen canvas sends on pen-up (odenet/app/web/assets/pen_canvas.js ``send``): its
    component state, the flat mapping ``{"drawing": {...}}`` as the widget's JSON value, with the 28x28
    grey levels (784 ints, row-major), one stroke, and no in-browser prediction."""
    if len(image28) != 784:
        raise ValueError(f"image28 must hold 784 values, got {len(image28)}")
    drawing = {"seq": seq, "blank": not any(image28), "image28": list(image28),
               "strokes": [[[100, 60], [100, 220]]], "size": 280, "probs": None, "prediction": None,
               "wasm": True, "error": None, "mount": mount, "clear_token": clear_token}
    return widget_state(canvas.id, json_value=json.dumps({"drawing": drawing}))
