"""One page's first render, this checkout against an earlier revision, side by side: both servers
run at once (started as `make run` starts them) and fresh chromium contexts visit them in turn,
in alternating order, so drift of this shared VM hits both alike.  A first render ends as in ``page_times.py``: the
script run is over and the page's heading is shown.

    python benchmarks/app/page_ab.py --baseline 3deccf5 --page integrators   # writes benchmarks/app/page_ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.app.load_test import alternating, baseline_and_this  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, wait_rendered  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with (checked out in a temp worktree)")
    ap.add_argument("--page", default="integrators", help="url path of the page ('' for Home)")
    ap.add_argument("--rounds", type=int, default=8, help="fresh visits per checkout (after one warm-up round)")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"baseline": [], "this checkout": []}
    with baseline_and_this(args.baseline) as (base_rev, servers), sync_playwright() as p:
        time.sleep(5)  # let both finish their start-up page warm-up
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for rnd in range(args.rounds + 1):  # round 0 fills both servers' caches
                for name, server in alternating(servers, rnd):
                    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = ctx.new_page()
                    t = time.perf_counter()
                    page.goto(f"{server.url}/{args.page}")
                    wait_rendered(page)
                    if rnd:
                        times[name].append(round(time.perf_counter() - t, 2))
                    ctx.close()
        finally:
            browser.close()
    out = {"what": f"first render of /{args.page} in fresh chromium contexts, two servers side by side",
           "cpu": cpu_name(), "baseline_rev": base_rev, "page": args.page,
           "median_s": {k: statistics.median(v) for k, v in times.items()},
           "worst_s": {k: max(v) for k, v in times.items()}, "all_s": times,
           "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
