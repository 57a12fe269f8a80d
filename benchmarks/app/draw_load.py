"""How long a new visitor waits for in-browser prediction on the Draw page, this checkout against
an earlier revision, side by side: fresh chromium contexts, interleaved, on the local network
(no throttling) and on an emulated demo Wi-Fi (Chrome DevTools network emulation).

Measured from ``goto(/draw)`` until the pen canvas has its onnxruntime-web session (the model can
predict in the browser), the bytes of the runtime's wasm that went over the wire (the server
gzips responses on the fly when the file is not compressed already) and the server process's
CPU seconds per visit (what a shared demo server pays for each new visitor).

    python benchmarks/app/draw_load.py --baseline 5feaea9     # writes benchmarks/app/draw_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.app.load_test import alternating, baseline_and_this  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.pen import MODEL_READY  # noqa: E402

# (name, download bytes/s, upload bytes/s, latency ms): None = no emulation
NETWORKS = [("local", None, None, 0), ("wifi_20mbit", 20e6 / 8, 10e6 / 8, 20)]


def time_to_model(browser, url: str, network: tuple) -> tuple[float, int]:
    """Seconds from navigation to a ready in-browser session, and wasm bytes on the wire."""
    _, down, up, latency = network
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    if down is not None:
        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency,
                                                      "downloadThroughput": down, "uploadThroughput": up})
    t = time.perf_counter()
    page.goto(f"{url}/draw")
    page.wait_for_function(MODEL_READY, timeout=180_000, polling=50)
    seconds = time.perf_counter() - t
    wire = page.evaluate("() => performance.getEntriesByType('resource').filter(r => /\\.wasm(\\.gz)?$/"
                         ".test(new URL(r.name).pathname)).reduce((a, r) => a + r.encodedBodySize, 0)")
    ctx.close()
    return seconds, int(wire)


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with (checked out in a temp worktree)")
    ap.add_argument("--rounds", type=int, default=4, help="fresh visits per checkout and network (median reported)")
    args = ap.parse_args()
    times: dict[str, dict[str, list[float]]] = {k: {n[0]: [] for n in NETWORKS} for k in ("baseline", "this checkout")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    wasm_bytes: dict[str, int] = {}
    with baseline_and_this(args.baseline) as (base_rev, servers), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for rnd in range(args.rounds + 1):  # round 0 warms both servers' caches
                for net in NETWORKS:
                    for name, server in alternating(servers, rnd):
                        before = server.usage()[1]
                        s, nbytes = time_to_model(browser, server.url, net)
                        time.sleep(0.5)  # let the server finish the visit's rerun
                        if rnd:
                            times[name][net[0]].append(round(s, 2))
                            cpu[name].append(round(server.usage()[1] - before, 3))
                        wasm_bytes[name] = nbytes
        finally:
            browser.close()
    out = {"what": "Draw page: navigation to a ready in-browser model (onnxruntime-web session), fresh contexts",
           "cpu": cpu_name(), "cpus": os.cpu_count(), "baseline_rev": base_rev,
           "networks": {n[0]: {"down_mbit_s": n[1] and n[1] * 8 / 1e6, "latency_ms": n[3]} for n in NETWORKS},
           "wasm_bytes_on_the_wire": wasm_bytes,
           "server_cpu_s_per_visit_median": {k: statistics.median(v) for k, v in cpu.items()},
           "server_cpu_s_per_visit_all": cpu,
           "seconds_median": {k: {n: statistics.median(v) for n, v in d.items()} for k, d in times.items()},
           "seconds_all": times, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
