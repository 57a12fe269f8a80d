"""Which page's sessions leave memory behind in the server?  A probe for the soak's slow rise.

Starts the app's server (as `make run` does) on loopback with a short disconnected-session TTL
(``--ttl`` seconds, so a closed tab's session is dropped quickly), then for every page of
``odenet.app.nav.PAGES``: ``--warmup`` visits (fills the shared caches), then ``--batches`` batches of
``--visits`` fresh sessions (a new browser context, open the page, wait until Streamlit finished,
close).  After each batch it waits until the server reports no active session, then reads the
server's resident memory.  The slope over the batches (MiB per 100 sessions) names the page whose
sessions leave memory behind.  ``MALLOC_ARENA_MAX=16`` in the environment runs the server with glibc's
default arena count instead of the two ``odenet.app.serve`` sets (see ``odenet.utils.limit_malloc_arenas``).

    python benchmarks/app/session_memory.py                  # writes benchmarks/app/session_memory.json
    python benchmarks/app/session_memory.py --pages draw --visits 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.app.nav import PAGES  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, wait_rendered  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.server import server_usage, start_server  # noqa: E402


def active_sessions(url: str) -> int:
    """The server's own count of sessions it still holds (Streamlit's metrics endpoint)."""
    text = urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10).read().decode()
    m = re.search(r"^active_sessions\S*\s+([0-9.]+)", text, re.M)
    return int(float(m.group(1))) if m else -1


def settled_rss(pid: int, url: str, timeout_s: float = 60.0) -> tuple[float, int]:
    """Resident MiB once the server holds no session (or after ``timeout_s``), and the sessions left."""
    end = time.monotonic() + timeout_s
    while (n := active_sessions(url)) > 0 and time.monotonic() < end:
        time.sleep(0.5)
    time.sleep(1.0)  # let the last session's teardown finish
    return server_usage(pid)[0], n


def slope_per_100(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs, times 100."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", nargs="*", default=[p.url_path or "home" for p in PAGES])
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--visits", type=int, default=10)
    ap.add_argument("--ttl", type=int, default=2, help="server.disconnectedSessionTTL for this probe (s)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    os.environ["STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL"] = str(args.ttl)
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as runs, sync_playwright() as p:
        server = start_server(runs=runs)
        proc, url = server.proc, server.url
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def visit(path: str) -> None:
            ctx = browser.new_context(viewport={"width": 1300, "height": 950})
            page = ctx.new_page()
            page.goto(f"{url}/{path}")
            wait_rendered(page)
            page.wait_for_timeout(300)  # a late rerun (component mount, query sync) starts, then ends
            wait_rendered(page)
            ctx.close()

        try:
            for name in args.pages:
                path = "" if name == "home" else name
                for _ in range(args.warmup):
                    visit(path)
                rss0, _ = settled_rss(proc.pid, url)
                xs, ys, left = [0.0], [rss0], []
                for b in range(args.batches):
                    for _ in range(args.visits):
                        visit(path)
                    rss, n = settled_rss(proc.pid, url)
                    xs.append(float((b + 1) * args.visits))
                    ys.append(rss)
                    left.append(n)
                result[name] = {"rss_mib": [round(y, 1) for y in ys], "sessions_left": left,
                                "mib_per_100_sessions": round(slope_per_100(xs, ys), 1)}
                print(name, json.dumps(result[name]), flush=True)
        finally:
            browser.close()
            server.stop(timeout=30)
    out = {"cpu": cpu_name(), "ttl_s": args.ttl, "warmup": args.warmup, "batches": args.batches,
           "visits_per_batch": args.visits, "pages": result, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
