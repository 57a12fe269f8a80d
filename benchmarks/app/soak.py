"""Soak test: the app's server (started as `make run` does) on loopback for a fixed time (one hour).

A presenter context starts short training jobs one after another on the Train page (the app's
defaults: 30,000 images, one epoch; 20,000 in the run reported in docs/reliability.md), while
``--drawers`` contexts draw digits on the Draw page and ``--browsers`` contexts browse
Trajectories and Train, each with a pause between actions (bounded loops, loopback only).  Every
30 s it samples the server's resident memory, thread count, open file descriptors and CPU time.
Reports errors, jobs finished, drawings answered, and whether memory and threads stayed flat (the
last quarter of the run against the second quarter).

    python benchmarks/app/soak.py --minutes 60          # writes benchmarks/app/soak.json
    python benchmarks/app/soak.py --minutes 3           # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.app.load_test import TWO_CANVASES, browse_round, draw_and_wait, open_draw_page, stats  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.pen import IS_BLANK, PEN_CLEAR  # noqa: E402
from tests.support.server import server_usage, start_server  # noqa: E402

DONE = "() => !document.querySelector('[data-testid=stStatusWidget]')"  # Streamlit finished running


async def _exception(page) -> str | None:
    loc = page.locator("[data-testid='stException']")
    return await loc.first.inner_text() if await loc.count() else None


async def presenter(browser, url: str, deadline: float, res: dict) -> None:
    """Start a job, wait until the page says it finished, start the next; until the deadline."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    try:
        await page.goto(f"{url}/train")
        result = page.get_by_text("It is now selectable on the other pages.")  # a job's end message
        while time.monotonic() < deadline - 30:
            t = time.perf_counter()
            await page.get_by_role("button", name="▶ Start").click()
            # the previous job's end message goes once the new job shows; then wait for the new one's
            await result.first.wait_for(state="detached", timeout=120_000)
            await result.first.wait_for(timeout=1_800_000)  # a job on 2 shared cores: 6-17 min seen
            res["job_seconds"].append(time.perf_counter() - t)
            text = await result.first.inner_text()
            res["jobs"].append("finished" if " finished;" in text else text[:120])
            if (exc := await _exception(page)) is not None:
                res["errors"].append(f"train page: {exc}")
            await page.wait_for_function(DONE, timeout=120_000)
            await page.wait_for_timeout(2000)
    except Exception as exc:  # recorded, the run reports it
        res["errors"].append(f"presenter: {type(exc).__name__}: {exc}")
    finally:
        await ctx.close()


async def drawer(browser, url: str, deadline: float, res: dict, k0: int) -> None:
    """Draw, wait for the prediction, clear, pause; a fresh page every 10 drawings."""
    k = k0
    while time.monotonic() < deadline:
        ctx = None
        try:
            ctx, page = await open_draw_page(browser, url)
            for _ in range(10):
                if time.monotonic() >= deadline:
                    break
                res["draws"] += 1
                res["draw_ms"].append(await draw_and_wait(page, k))
                res["answered"] += 1
                if (exc := await _exception(page)) is not None:
                    res["errors"].append(f"draw page: {exc}")
                await page.locator(PEN_CLEAR).click()
                await page.wait_for_function(IS_BLANK, timeout=60_000)
                await page.wait_for_timeout(3000)
                k += 1
        except Exception as exc:  # recorded, the run reports it
            res["errors"].append(f"drawer: {type(exc).__name__}: {exc}")
        finally:
            if ctx is not None:
                await ctx.close()


async def visitor(browser, url: str, deadline: float, res: dict) -> None:
    """Browse Trajectories (a new seed each time) and the Train page's live view, with pauses."""
    k = 0
    ctx = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await ctx.new_page()
    page.set_default_timeout(180_000)
    try:
        while time.monotonic() < deadline:
            await browse_round(page, url, k, res["page_ms"], res["errors"], pause_ms=5000)
            k += 1
    except Exception as exc:  # recorded, the run reports it
        res["errors"].append(f"visitor: {type(exc).__name__}: {exc}")
    finally:
        await ctx.close()


def _threads_fds(pid: int) -> tuple[int, int]:
    threads = int(next(ln.split()[1] for ln in open(f"/proc/{pid}/status") if ln.startswith("Threads")))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


async def sampler(pid: int, start: float, deadline: float, samples: list, res: dict) -> None:
    while time.monotonic() < deadline:
        try:
            rss, cpu = server_usage(pid)
            threads, fds = _threads_fds(pid)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            res["errors"].append(f"server process {pid} is gone after {time.monotonic() - start:.0f} s")
            return
        samples.append({"t_s": round(time.monotonic() - start), "rss_mib": round(rss, 1), "threads": threads,
                        "fds": fds, "cpu_s": round(cpu, 1)})
        await asyncio.sleep(30)


def _quarter(samples: list[dict], key: str, q: int) -> float:
    n = len(samples)
    part = samples[q * n // 4:(q + 1) * n // 4] or samples[-1:]
    return statistics.mean(s[key] for s in part)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--drawers", type=int, default=2)
    ap.add_argument("--browsers", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    from playwright.async_api import async_playwright

    res: dict = {"jobs": [], "job_seconds": [], "draws": 0, "answered": 0, "draw_ms": [], "page_ms": [],
                 "errors": []}
    samples: list[dict] = []
    with tempfile.TemporaryDirectory() as runs:
        server = start_server(runs=runs)
        proc, url = server.proc, server.url
        start = time.monotonic()
        deadline = start + 60 * args.minutes

        async def run() -> None:
            async with async_playwright() as p:
                b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                await asyncio.gather(sampler(proc.pid, start, deadline, samples, res),
                                     presenter(b, url, deadline, res),
                                     *(drawer(b, url, deadline, res, i) for i in range(args.drawers)),
                                     *(visitor(b, url, deadline, res) for _ in range(args.browsers)),
                                     return_exceptions=True)
                await b.close()

        try:
            asyncio.run(run())
            alive = proc.poll() is None
        finally:
            server.stop(timeout=60)
        n_runs = len(list(Path(runs).iterdir()))
        server_jobs = []  # the server's own account of each run: status and duration
        for run in sorted(Path(runs).iterdir()):
            try:
                st = json.loads((run / "status.json").read_text())
                server_jobs.append({"status": st.get("status"), "duration_s": round(st.get("duration") or 0, 1),
                                    "test_acc": st.get("final_test_acc")})
            except (OSError, ValueError):
                server_jobs.append({"status": "no status.json"})
    out = {
        "cpu": cpu_name(), "minutes": args.minutes, "drawers": args.drawers, "browsers": args.browsers,
        "server_alive_at_end": alive, "errors": res["errors"],
        "two_canvases": TWO_CANVASES,  # moments a drawer saw two pen canvases (waited out, with where each sat)
        "jobs_finished": res["jobs"].count("finished"), "jobs_other": [j for j in res["jobs"] if j != "finished"],
        "run_dirs": n_runs, "server_jobs": server_jobs, "job_seconds": stats([1000 * s for s in res["job_seconds"]]),
        "drawings": res["draws"], "answered": res["answered"], "draw_latency": stats(res["draw_ms"]),
        "page_interactions": stats(res["page_ms"]),
        "rss_mib_q2_q4": [round(_quarter(samples, "rss_mib", 1), 1), round(_quarter(samples, "rss_mib", 3), 1)],
        "threads_q2_q4": [round(_quarter(samples, "threads", 1), 1), round(_quarter(samples, "threads", 3), 1)],
        "fds_q2_q4": [round(_quarter(samples, "fds", 1), 1), round(_quarter(samples, "fds", 3), 1)],
        "threads_min_max": [min(s["threads"] for s in samples), max(s["threads"] for s in samples)],
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    ok = not res["errors"] and alive and res["answered"] == res["draws"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
