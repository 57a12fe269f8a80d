"""Draw-page latency in a real chromium: the pen canvas predicting in the browser (onnxruntime-web, wasm).

Starts ``tests/apps/pen_canvas_app.py`` with ``streamlit run`` (or uses ``--url``), draws digits
with Playwright's mouse at ~60 moves/s and reads the component's own timings (``performance.now()``
in the page):

- mouse-up -> prediction for the final drawing on screen (p50/p95; 0 when the last pen move's
  prediction was already shown: the prediction follows the pen);
- canvas change -> its prediction on screen, for every update during strokes (p50/p95);
- prediction updates per second during a stroke;
- mouse-up -> the server has the drawing (Python round trip, informative).

Targets: mouse-up p50 <= 100 ms, p95 <= 250 ms; >= 10 updates/s.  Writes benchmarks/draw_latency.json.

    python -m benchmarks.app.draw_latency [--drawings 30] [--url http://localhost:8501]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "support" / "pen_canvas_app.py"
OUT = Path(__file__).resolve().parent / "draw_latency.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TARGETS = {"mouse_up_p50_ms": 100, "mouse_up_p95_ms": 250, "updates_per_s": 10}

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(app: Path = APP, log_path: Path | None = None, timeout: float = 90.0) -> Iterator[str]:
    """``streamlit run app`` on a free port; yields its URL once ``/_stcore/health`` says ok."""
    port = free_port()
    log = open(log_path, "w+") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {proc.poll()}); log: {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()


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
    box = page.locator("canvas[data-testid=pen-canvas]").bounding_box()
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
    page.locator("canvas[data-testid=pen-canvas]").wait_for(timeout=timeout_ms)
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


def pct(values: list[float], q: float) -> float | None:
    return None if not values else float(np.percentile(np.asarray(values, float), q))


def run(url: str, drawings: int, seed: int = 0) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rng = random.Random(seed)
    server_ms: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_default_timeout(60_000)
        t = time.perf_counter()
        page.goto(url)
        state = wait_ready(page)
        ready_s = time.perf_counter() - t
        if state != "true":
            raise RuntimeError(f"browser inference unavailable: {instance_state(page)['error']}")
        for k in range(drawings):
            strokes = digit_strokes(k % 10, rng)
            for stroke in strokes[:-1]:
                seq = instance_state(page)["seq"]
                draw_stroke(page, stroke)
                wait_settled(page, seq + 1)
            seq = instance_state(page)["seq"]
            draw_stroke(page, strokes[-1], release=False)
            t_up = time.perf_counter()
            page.mouse.up()
            server_seq_shown(page, seq + 1)
            server_ms.append((time.perf_counter() - t_up) * 1000)
            wait_settled(page, seq + 1)
            page.get_by_test_id("pen-clear").click()
            wait_settled(page, seq + 2)
        st = instance_state(page)["stats"]
        version = browser.version
        browser.close()
    ups = st["latencies"]
    return {
        "what": "pen canvas in chromium: onnxruntime-web (wasm, 1 thread) runs the exported rk4 x1 RKNet",
        "chromium": version,
        "cpus": os.cpu_count(),
        "load_avg_before": None,
        "drawings": drawings,
        "page_ready_s": round(ready_s, 2),
        "model_load_ms": round(st["loadMs"], 1) if st["loadMs"] else None,
        "mouse_up_to_prediction_ms": {"p50": pct(ups, 50), "p95": pct(ups, 95), "max": max(ups) if ups else None,
                                      "n": len(ups)},
        "change_to_shown_ms": {"p50": pct(st["changeToShownMs"], 50), "p95": pct(st["changeToShownMs"], 95),
                               "n": len(st["changeToShownMs"])},
        "updates_per_s_during_stroke": {"mean": float(np.mean(st["strokeUpdates"])) if st["strokeUpdates"] else None,
                                        "min": min(st["strokeUpdates"]) if st["strokeUpdates"] else None,
                                        "n": len(st["strokeUpdates"])},
        "inference_ms": {"p50": pct(st["inferMs"], 50), "p95": pct(st["inferMs"], 95), "n": len(st["inferMs"])},
        "mouse_up_to_server_ms": {"p50": pct(server_ms, 50), "p95": pct(server_ms, 95)},
        "targets": TARGETS,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drawings", type=int, default=30)
    ap.add_argument("--url", help="an already running pen-canvas app (default: start tests/apps/pen_canvas_app.py)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    if args.url:
        result = run(args.url, args.drawings)
    else:
        with streamlit_server() as url:
            result = run(url, args.drawings)
    result["load_avg_before"] = round(load_before, 2)
    ok = (result["mouse_up_to_prediction_ms"]["p50"] <= TARGETS["mouse_up_p50_ms"]
          and result["mouse_up_to_prediction_ms"]["p95"] <= TARGETS["mouse_up_p95_ms"]
          and result["updates_per_s_during_stroke"]["min"] >= TARGETS["updates_per_s"])
    result["meets_targets"] = bool(ok)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
