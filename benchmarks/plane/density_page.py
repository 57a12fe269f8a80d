"""Density flows as a visitor meets them: the page's default training in chromium, and the lesson.

    python benchmarks/plane/density_page.py            # -> benchmarks/plane/density_page.json

1. A real server (`python -m odenet.app.serve` on 127.0.0.1) and Debian's chromium: open
   /density, press Train with the defaults, and time (from the click) the first progress report
   shown, "Trained in" shown (the training is over), and the animation drawn (the pictures are
   computed after the training).  ``--repeats`` fresh page loads; the seconds the job itself reports
   ("Trained in N s") are kept beside the wall clock.
2. The regulariser lesson exactly as the page runs it (odenet.app.density_view.regulariser_lesson,
   once for everyone): its seconds and, for both flows, the last test NLL and the evaluations the
   reference solve needed.

The machine's load (``/proc/loadavg``) is recorded before and after: 2-core machines are often shared.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, open_page, settle  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.server import start_server  # noqa: E402


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def page_runs(repeats: int) -> list[dict[str, float]]:
    """Press Train on a fresh /density page ``repeats`` times; seconds from the click to each milestone."""
    from playwright.sync_api import sync_playwright

    out = []
    with tempfile.TemporaryDirectory() as tmp, \
            start_server(runs=Path(tmp) / "runs", env={"ODENET_SPEED_PROBE": "0"}) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            pg = open_page(browser, 1400, 1000, timeout_ms=300_000)
            pg.goto(f"{server.url}/density")
            pg.get_by_role("heading", name="Density flows").wait_for()
            settle(pg)
            t0 = time.perf_counter()
            pg.get_by_role("button", name="Train", exact=True).click()
            pg.get_by_text("iteration ", exact=False).first.wait_for()
            first = time.perf_counter() - t0
            pg.get_by_text("Trained in").wait_for()
            trained = time.perf_counter() - t0
            said = pg.get_by_text("Trained in").first.inner_text()
            pg.locator("[data-testid=stPlotlyChart]").filter(has_text="The flow carries the Gaussian").wait_for()
            pictures = time.perf_counter() - t0
            job_s = float(re.search(r"Trained in ([0-9.]+) s", said).group(1))
            nll = float(re.search(r"test NLL ([0-9.]+)", said).group(1))
            out.append({"first_progress_s": round(first, 2), "trained_shown_s": round(trained, 2),
                        "job_reported_s": job_s, "pictures_shown_s": round(pictures, 2), "test_nll": nll})
            print(out[-1], flush=True)
            pg.context.close()
        browser.close()
    return out


def lesson() -> dict[str, object]:
    """The page's regulariser lesson, timed, with each flow's last reported test NLL and reference NFE."""
    from odenet.app.density_view import LESSON_ITERATIONS, regulariser_lesson

    t0 = time.perf_counter()
    runs = regulariser_lesson()
    seconds = time.perf_counter() - t0
    flows = {r.label: {"test_nll": round(r.run.test_nll, 3), "reference_nfe": r.history["probe_nfe"].iloc[-1].item(),
                       "seconds": round(r.run.seconds, 1)} for r in runs}
    return {"iterations": LESSON_ITERATIONS, "seconds": round(seconds, 1), "flows": flows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args()
    load_before = _load()
    runs = page_runs(args.repeats)
    lesson_result = lesson()
    print(lesson_result, flush=True)
    result = {
        "machine": cpu_name(), "load_before": load_before, "load_after": _load(),
        "page_default_training": {
            "runs": runs,
            "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "max": {k: max(r[k] for r in runs) for k in runs[0]},
        },
        "lesson": lesson_result,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
