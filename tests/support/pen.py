"""Driving odenet's pen canvas (odenet.app.web) in Playwright, for the browser tests and the Draw-page
benchmarks: selectors and page-side probes, digits drawn with the mouse, and waits on the
component's own state (``globalThis.odenetPenCanvas``, which pen_canvas.js keeps for tests).

The component renders in a shadow root, where ``document.querySelector`` cannot see it; Playwright's
locators pierce it, and the probes here read the component instances instead.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np

CANVAS = "canvas[data-testid=pen-canvas]"  # odenet.app.web.pen_canvas
PREDICTION = "[data-testid=pen-prediction]"  # its aria-live "Prediction: D"
PEN_CLEAR = "[data-testid=pen-clear]"  # the one Clear on the Draw page (drawing and upload)
PEN_NOTICE = "[data-testid=pen-notice]"  # the panel's "does not look like a digit" notice
MODEL_READY = ("() => globalThis.odenetPenCanvas && [...globalThis.odenetPenCanvas.instances.values()]"
               ".some(i => i.wasm !== null)")
# the component renders in a shadow root (document.querySelector cannot see it): read its instances
PENS = "[...((globalThis.odenetPenCanvas || {}).instances || new Map()).values()]"
IS_BLANK = f"() => {PENS}.length === 1 && {PENS}.every(i => /Draw a digit/.test(i.pred.textContent))"
IS_PREDICTION = f"() => {PENS}.some(i => /Prediction:\\s*\\d/.test(i.pred.textContent))"
CENTRE = "e => e.scrollIntoView({block: 'center', behavior: 'instant'})"
MOUNTS = f"() => {PENS}.map(i => i.mount).join(',')"  # ids of the canvas instances on the page


# Digit shapes as strokes of points in a unit box (x right, y down): what a person draws, roughly.
_T = [i / 16 for i in range(17)]
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5 + 0.32 * math.sin(2 * math.pi * s), 0.5 - 0.45 * math.cos(2 * math.pi * s)) for s in _T]],
    1: [[(0.55, 0.05), (0.5, 0.5), (0.45, 0.95)]],
    2: [[(0.15, 0.25), (0.3, 0.08), (0.6, 0.05), (0.8, 0.2), (0.75, 0.45), (0.15, 0.95), (0.9, 0.95)]],
    3: [[(0.15, 0.1), (0.7, 0.05), (0.8, 0.25), (0.45, 0.45), (0.85, 0.65), (0.75, 0.9), (0.15, 0.92)]],
    4: [[(0.6, 0.05), (0.1, 0.65), (0.9, 0.65)], [(0.65, 0.3), (0.65, 0.98)]],
    5: [[(0.8, 0.05), (0.25, 0.05), (0.2, 0.45), (0.6, 0.4), (0.85, 0.65), (0.7, 0.92), (0.15, 0.9)]],
    6: [[(0.7, 0.05), (0.3, 0.4), (0.2, 0.75), (0.4, 0.95), (0.75, 0.85), (0.75, 0.6), (0.45, 0.5), (0.22, 0.7)]],
    7: [[(0.1, 0.08), (0.9, 0.08), (0.4, 0.95)]],
    8: [[(0.5 + 0.28 * math.sin(4 * math.pi * s), 0.5 - 0.45 * math.cos(2 * math.pi * s)) for s in _T + [1.0]]],
    9: [[(0.75, 0.3)] + [(0.5 + 0.25 * math.cos(2 * math.pi * s), 0.3 - 0.22 * math.sin(2 * math.pi * s))
                         for s in _T] + [(0.75, 0.3), (0.7, 0.95)]],
}


def stroke_points(k: int) -> list[tuple[int, int]]:
    """Canvas-pixel points of one stroke: a 1 (k even) or a 7 (k odd)."""
    return ([(140 - i, 50 + 16 * i) for i in range(12)] if k % 2 == 0 else
            [(80 + 12 * i, 60) for i in range(11)] + [(200 - 6 * i, 60 + 12 * i) for i in range(1, 16)])


def draw_digit(page, k: int) -> None:
    """Draw a 1 (k even) or a 7 (k odd) with the mouse (sync Playwright); the caller releases the button."""
    canvas = page.locator(CANVAS)
    deadline = time.monotonic() + 60
    while canvas.count() != 1 and time.monotonic() < deadline:  # the page may still be rendering it
        page.wait_for_timeout(100)
    canvas.evaluate(CENTRE)
    box = None
    while box != (box := canvas.bounding_box()):
        page.wait_for_timeout(50)
    x0, y0 = box["x"], box["y"]
    pts = stroke_points(k)
    page.mouse.move(x0 + pts[0][0], y0 + pts[0][1])
    page.mouse.down()
    for x, y in pts[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=2)


def digit_strokes(digit: int, rng: random.Random, size: int = 280) -> list[list[tuple[float, float]]]:
    """Canvas-pixel strokes for ``digit``: random size (45-75% of the canvas), place and jitter."""
    box = rng.uniform(0.45, 0.75) * size
    aspect = rng.uniform(0.75, 1.05)
    x0 = rng.uniform(0.08 * size, size - 0.08 * size - box * aspect)
    y0 = rng.uniform(0.08 * size, size - 0.08 * size - box)
    slant = rng.uniform(-0.15, 0.15)
    out = []
    for stroke in DIGIT_STROKES[digit]:
        pts = []
        for u, v in stroke:
            x = x0 + (u + slant * (0.5 - v)) * box * aspect + rng.gauss(0, 2)
            y = y0 + v * box + rng.gauss(0, 2)
            pts.append((min(size - 3.0, max(3.0, x)), min(size - 3.0, max(3.0, y))))
        out.append(pts)
    return out


def densify(points: list[tuple[float, float]], step_px: float = 6.0) -> list[tuple[float, float]]:
    """Points every ~``step_px`` along the polyline (a mouse reports every few pixels)."""
    out = [points[0]]
    for (xa, ya), (xb, yb) in zip(points[:-1], points[1:]):
        n = max(1, int(math.hypot(xb - xa, yb - ya) / step_px))
        out += [(xa + (xb - xa) * k / n, ya + (yb - ya) * k / n) for k in range(1, n + 1)]
    return out


def canvas_origin(page: Any) -> tuple[float, float]:
    """Page coordinates of the pen canvas's top-left corner."""
    box = page.locator(CANVAS).bounding_box()
    return box["x"], box["y"]


def draw_stroke(page: Any, points: list[tuple[float, float]], hz: float = 60.0, release: bool = True,
                during: Any = None) -> None:
    """Press, move through ``points`` (canvas pixels) at ~``hz`` moves per second, then release.

    ``during(page)`` runs before the release (e.g. to check the live prediction mid-stroke).
    """
    ox, oy = canvas_origin(page)
    pts = densify(points)
    page.mouse.move(ox + pts[0][0], oy + pts[0][1])
    page.mouse.down()
    t_next = time.perf_counter()
    for x, y in pts[1:]:
        t_next += 1.0 / hz
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        page.mouse.move(ox + x, oy + y)
    if during is not None:
        during(page)
    if release:
        page.mouse.up()


JS_INSTANCE = "(key) => globalThis.odenetPenCanvas && globalThis.odenetPenCanvas.instances.get(key)"


def wait_ready(page: Any, key: str = "pen", timeout_ms: int = 60_000) -> str:
    """Wait until the component has loaded its model (or failed to); returns its wasm state."""
    page.locator(CANVAS).wait_for(timeout=timeout_ms)
    page.wait_for_function(f"(key) => {{ const i = ({JS_INSTANCE})(key); return i && i.wasm !== null; }}", arg=key,
                           timeout=timeout_ms)
    return page.evaluate(f"(key) => String(({JS_INSTANCE})(key).wasm)", key)


def instance_state(page: Any, key: str = "pen", pixels: bool = False) -> dict[str, Any]:
    """The component's last result (u8, probs), stats, seq, and optionally the canvas RGBA (base64)."""
    return page.evaluate(
        """([key, pixels]) => {
            const i = globalThis.odenetPenCanvas.instances.get(key);
            const out = {seq: i.seq, version: i.version, done: i.doneVersion, stats: i.stats, wasm: i.wasm,
                         error: i.error, strokes: i.strokes.length, busy: i.busy,
                         u8: i.last ? Array.from(i.last.u8) : null, probs: i.last ? i.last.probs : null,
                         blank: i.last ? i.last.blank : null};
            if (pixels) {
                const d = i.ctx.getImageData(0, 0, i.canvas.width, i.canvas.height).data;
                let s = '';
                for (let k = 0; k < d.length; k += 0x8000) {
                    s += String.fromCharCode.apply(null, d.subarray(k, k + 0x8000));
                }
                out.rgba = btoa(s);
                out.size = [i.canvas.height, i.canvas.width];
            }
            return out;
        }""",
        [key, pixels],
    )


def rgba_array(state: dict[str, Any]) -> np.ndarray:
    import base64

    h, w = state["size"]
    return np.frombuffer(base64.b64decode(state["rgba"]), np.uint8).reshape(h, w, 4)


def wait_settled(page: Any, seq: int, key: str = "pen", timeout_ms: int = 30_000) -> None:
    """Wait until the component has sent drawing number ``seq`` to Python and has nothing pending."""
    page.wait_for_function(
        f"([key, seq]) => {{ const i = ({JS_INSTANCE})(key); return i.seq >= seq && !i.busy && "
        "i.doneVersion === i.version && !i.sendPending; }", arg=[key, seq], timeout=timeout_ms)


def server_seq_shown(page: Any, seq: int, timeout_ms: int = 30_000) -> None:
    """Wait until the app's Python side printed ``"seq": seq`` (the drawing reached the server)."""
    page.wait_for_function(
        "(seq) => [...document.querySelectorAll('[data-testid=stText]')].some("
        "e => e.textContent.includes('\"seq\": ' + seq + ','))", arg=seq, timeout=timeout_ms)
