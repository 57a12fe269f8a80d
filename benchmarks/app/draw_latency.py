"""Draw-page latency in a real chromium: the pen canvas predicting in the browser (onnxruntime-web, wasm).

Starts ``tests/support/pen_canvas_app.py`` with ``streamlit run`` (or uses ``--url``), draws digits
with Playwright's mouse at ~60 moves/s and reads the component's own timings (``performance.now()``
in the page):

- mouse-up -> prediction for the final drawing on screen (p50/p95; 0 when the last pen move's
  prediction was already shown: the prediction follows the pen);
- canvas change -> its prediction on screen, for every update during strokes (p50/p95);
- prediction updates per second during a stroke;
- mouse-up -> the server has the drawing (Python round trip, informative).

Targets: mouse-up p50 <= 100 ms, p95 <= 250 ms; >= 10 updates/s.  Writes benchmarks/app/draw_latency.json.

    python -m benchmarks.app.draw_latency [--drawings 30] [--url http://localhost:8501]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import pen  # noqa: E402  (drives the canvas: strokes, waits, its state)
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.server import start_server  # noqa: E402

APP = ROOT / "tests" / "support" / "pen_canvas_app.py"
OUT = Path(__file__).resolve().parent / "draw_latency.json"
TARGETS = {"mouse_up_p50_ms": 100, "mouse_up_p95_ms": 250, "updates_per_s": 10}


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
        state = pen.wait_ready(page)
        ready_s = time.perf_counter() - t
        if state != "true":
            raise RuntimeError(f"browser inference unavailable: {pen.instance_state(page)['error']}")
        for k in range(drawings):
            strokes = pen.digit_strokes(k % 10, rng)
            for stroke in strokes[:-1]:
                seq = pen.instance_state(page)["seq"]
                pen.draw_stroke(page, stroke)
                pen.wait_settled(page, seq + 1)
            seq = pen.instance_state(page)["seq"]
            pen.draw_stroke(page, strokes[-1], release=False)
            t_up = time.perf_counter()
            page.mouse.up()
            pen.server_seq_shown(page, seq + 1)
            server_ms.append((time.perf_counter() - t_up) * 1000)
            pen.wait_settled(page, seq + 1)
            page.get_by_test_id("pen-clear").click()
            pen.wait_settled(page, seq + 2)
        st = pen.instance_state(page)["stats"]
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
    ap.add_argument("--url", help="an already running pen-canvas app (default: start tests/support/pen_canvas_app.py)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    if args.url:
        result = run(args.url, args.drawings)
    else:
        with start_server(APP) as server:
            result = run(server.url, args.drawings)
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
