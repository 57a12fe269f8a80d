"""Load test against a real `streamlit run` server on loopback (bounded in time and count).

One browser context starts a training job on the Train page; N other contexts draw digits
on the Draw page and wait for each prediction, all at once.  Reports prediction latency
(mouse-up to prediction shown) p50/p95 under load and with the server idle, errors, and
whether every prediction was answered.

    python benchmarks/app/load_test.py --users 5 --draws 6     # writes benchmarks/app/load_test.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.pen import (  # noqa: E402
    CANVAS,
    CENTRE,
    IS_BLANK,
    IS_PREDICTION,
    MODEL_READY,
    MOUNTS,
    PEN_CLEAR,
    PENS,
    stroke_points,
)
from tests.support.server import Server, start_server  # noqa: E402

# what each pen canvas on the page sits in: Streamlit's element containers up to the app, through
# the component's shadow root, with their stale flag and key classes (to find why two exist)
CANVAS_CHAIN = """els => els.map(e => { const chain = []; let n = e;
  while (n) {
    if (n.nodeType === 11) { n = n.host; continue; }
    const tid = n.dataset && n.dataset.testid;
    if (tid) chain.push(tid + (n.dataset.stale === 'true' ? '[stale]' : '')
                        + [...n.classList].filter(c => c.startsWith('st-key-')).map(c => '.' + c).join(''));
    n = n.parentNode;
  }
  const r = e.getBoundingClientRect();
  return {chain: chain.slice(0, 10), box: [Math.round(r.x), Math.round(r.y), Math.round(r.width)],
          connected: e.isConnected}; })"""
TWO_CANVASES: list[dict] = []  # every moment a drawer saw more than one pen canvas (the soak reports them)


async def _single_canvas_async(page, canvas) -> None:
    """Wait until the page shows exactly one pen canvas in two polls 100 ms apart (it may still be
    rendering it, or a rerun may briefly show two); a second canvas is recorded in TWO_CANVASES with
    where each one sits.  Raises TimeoutError after 60 s."""
    deadline, seen, ones = time.monotonic() + 60, None, 0
    while ones < 2:
        n = await canvas.count()
        if n > 1 and seen is None:
            seen = {"t": time.time(), "count": n, "mounts": await page.evaluate(MOUNTS),
                    "canvases": await canvas.evaluate_all(CANVAS_CHAIN)}
            TWO_CANVASES.append(seen)
        ones = ones + 1 if n == 1 else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} pen canvases on the page after 60 s; first extra one: {seen}")
        await page.wait_for_timeout(100)
    if seen is not None:
        seen["resolved_after_s"] = round(time.time() - seen["t"], 2)


async def draw_digit_async(page, k: int) -> None:
    """Draw a 1 (k even) or a 7 (k odd) with the mouse; the caller releases the button."""
    canvas = page.locator(CANVAS)
    for attempt in range(3):
        await _single_canvas_async(page, canvas)
        try:
            # a click on Clear below may have scrolled the canvas away, or under Streamlit's top bar
            await canvas.evaluate(CENTRE)
            box = None
            while box != (box := await canvas.bounding_box()):  # until the scroll has settled
                await page.wait_for_timeout(50)
            break
        except Exception as exc:  # a second canvas came between the count and the scroll: wait again
            if "strict mode violation" not in str(exc) or attempt == 2:
                raise
            TWO_CANVASES.append({"t": time.time(), "between_count_and_scroll": True,
                                 "mounts": await page.evaluate(MOUNTS),
                                 "canvases": await canvas.evaluate_all(CANVAS_CHAIN)})
    x0, y0 = box["x"], box["y"]
    pts = stroke_points(k)
    await page.mouse.move(x0 + pts[0][0], y0 + pts[0][1])
    await page.mouse.down()
    for x, y in pts[1:]:
        await page.mouse.move(x0 + x, y0 + y, steps=2)


async def open_draw_page(browser, url: str):
    """A fresh context on the Draw page with the in-browser model loaded: (context, page)."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await ctx.new_page()
    page.set_default_timeout(90_000)
    await page.goto(f"{url}/draw")
    await page.locator(CANVAS).wait_for()
    await page.wait_for_function(MODEL_READY, timeout=90_000)
    return ctx, page


PEN_STATE = ("() => JSON.stringify(" + PENS + ".map(i => ({pred: i.pred.textContent, wasm: i.wasm, "
             "session: !!i.session, strokes: i.strokes.length, busy: i.busy, error: i.error, "
             "connected: i.canvas.isConnected, version: i.version, done: i.doneVersion})))")


async def draw_and_wait(page, k: int) -> float:
    """Draw digit ``k``, lift the pen and wait for the browser's prediction: milliseconds from
    mouse-up to the prediction on screen.  A timeout says what the canvas instances were doing."""
    await draw_digit_async(page, k)
    t = time.perf_counter()
    await page.mouse.up()
    try:
        await page.wait_for_function(IS_PREDICTION, timeout=60_000)
    except Exception as exc:
        state = await page.evaluate(PEN_STATE)
        raise TimeoutError(f"no prediction 60 s after pen-up; pen canvases: {state}") from exc
    return 1000 * (time.perf_counter() - t)


async def user(browser, url: str, draws: int, out: list, errors: list, server: list) -> None:
    """One browser context on the Draw page: draw, wait for the prediction (in the browser) and
    for the server's rerun (the "watch it think" chart), clear; ``draws`` times.  A prediction
    that never comes is an error."""
    ctx = None
    try:
        ctx, page = await open_draw_page(browser, url)
        for k in range(draws):
            ms = await draw_and_wait(page, k)  # mouse-up -> prediction on screen (browser path)
            t_up = time.perf_counter() - ms / 1000
            out.append(ms)
            await page.get_by_text("Watch it think: class probabilities").first.wait_for(timeout=60_000)
            server.append(1000 * (time.perf_counter() - t_up))  # mouse-up -> the server's rerun rendered
            if await page.locator("[data-testid='stException']").count():
                errors.append(await page.locator("[data-testid='stException']").first.inner_text())
            await page.locator(PEN_CLEAR).click()
            await page.wait_for_function(IS_BLANK, timeout=60_000)
            await page.wait_for_timeout(500)
    except Exception as exc:  # recorded, the run reports it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if ctx is not None:
            await ctx.close()


async def browse_round(page, url: str, k: int, out: list, errors: list, pause_ms: int = 0) -> None:
    """Open Trajectories (seed ``k``) and the Train page in ``page``; append each visit's time
    until Streamlit finished running to ``out`` and any exception box to ``errors``."""
    done = "() => !document.querySelector('[data-testid=stStatusWidget]')"
    for path, text in ((f"trajectories?seed={k}&n=30", "Hidden-state trajectories"), ("train", "Train RKNet live")):
        t = time.perf_counter()
        await page.goto(f"{url}/{path}")
        await page.get_by_text(text).first.wait_for()
        await page.wait_for_timeout(300)
        await page.wait_for_function(done, timeout=180_000)
        out.append(1000 * (time.perf_counter() - t))
        if await page.locator("[data-testid='stException']").count():
            errors.append(f"{path}: " + await page.locator("[data-testid='stException']").first.inner_text())
        if pause_ms:
            await page.wait_for_timeout(pause_ms)


async def browser_user(browser, url: str, rounds: int, out: list, errors: list) -> None:
    """A visitor who browses instead of drawing: Trajectories (a new seed each time) and the Train
    page's live view; records each page interaction's time until Streamlit finished running."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await ctx.new_page()
    page.set_default_timeout(120_000)
    try:
        for k in range(rounds):
            await browse_round(page, url, k, out, errors)
    except Exception as exc:  # recorded, the run reports it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        await ctx.close()


def run_users(url: str, users: int, draws: int, browsers: int = 0) -> tuple[list[float], list[str], list[float],
                                                                              list[float]]:
    """``users`` contexts drawing and ``browsers`` contexts browsing, at once, in one chromium (asyncio)."""
    import asyncio

    from playwright.async_api import async_playwright

    lat: list[float] = []
    errors: list[str] = []
    server: list[float] = []
    pages: list[float] = []

    async def main() -> None:
        async with async_playwright() as p:
            b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            await asyncio.gather(*(user(b, url, draws, lat, errors, server) for _ in range(users)),
                                 *(browser_user(b, url, max(1, draws // 2), pages, errors) for _ in range(browsers)))
            await b.close()

    # in a thread of its own: the trainer page's sync Playwright already owns this thread's loop
    worker = threading.Thread(target=lambda: asyncio.run(main()))
    worker.start()
    worker.join()
    return lat, errors, server, pages


@contextlib.contextmanager
def baseline_and_this(baseline: str) -> Iterator[tuple[str, dict[str, Server]]]:
    """Two servers at once, for side-by-side comparisons: ``baseline`` (a git revision, checked out
    in a temporary worktree) and this checkout, each with its own empty runs directory.  Yields
    (the revision's short hash, {"baseline": server, "this checkout": server});
    both servers and the worktree are removed afterwards, also when a start fails."""
    rev = subprocess.check_output(["git", "rev-parse", "--short", baseline], cwd=ROOT, text=True).strip()
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_dir), rev], cwd=ROOT, check=True)
        try:
            servers["baseline"] = start_server(runs=tempfile.mkdtemp(dir=tmp), cwd=base_dir)
            servers["this checkout"] = start_server(runs=tempfile.mkdtemp(dir=tmp))
            yield rev, servers
        finally:
            for server in servers.values():
                server.stop(timeout=30)
            subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=ROOT, check=False)


def alternating(servers: dict, rnd: int) -> list:
    """``servers.items()`` in round ``rnd``'s order: reversed every other round, so neither side
    is always visited first."""
    items = list(servers.items())
    return items if rnd % 2 == 0 else items[::-1]


def stats(lat: list[float]) -> dict:
    s = sorted(lat)
    return {"n": len(s), "p50_ms": statistics.median(s) if s else None,
            "p95_ms": s[max(0, int(0.95 * len(s)) - 1)] if s else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--browsers", type=int, default=0, help="extra contexts browsing Trajectories and Train")
    ap.add_argument("--epochs", type=int, default=3, help="of the training job (long enough to outlast the test)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as runs:
        server = start_server(runs=runs)
        url = server.url
        try:
            warm, _, _, _ = run_users(url, 1, 1)  # first visit: imports, model export and load
            rss0, cpu0 = server.usage()
            idle, idle_err, idle_server, _ = run_users(url, 1, args.draws)
            rss1, cpu1 = server.usage()
            per_user = {"server_rss_growth_mib_per_drawing_session": round(rss1 - rss0, 1),
                        "server_cpu_ms_per_drawing": round(1000 * (cpu1 - cpu0) / max(1, args.draws), 1),
                        "server_rss_mib": round(rss1, 1)}
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                trainer = b.new_page()
                trainer.goto(f"{url}/train")
                trainer.get_by_label("Epochs").fill(str(args.epochs))
                trainer.get_by_label("Epochs").press("Enter")
                time.sleep(1)
                trainer.get_by_role("button", name="▶ Start").click()
                trainer.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stProgress\"]')]"
                                          ".some(e => e.innerText.includes('img/s'))", timeout=120_000)
                loaded, load_err, load_server, pages = run_users(url, args.users, args.draws, args.browsers)
                still_training = "img/s" in trainer.locator("[data-testid='stProgress']").first.inner_text()
                trainer.get_by_role("button", name="■ Stop").click()
                b.close()
        finally:
            server.stop(timeout=30)
    expected = args.users * args.draws
    res = {**per_user, "users": args.users, "browsing_users": args.browsers,
           "page_interactions_under_load": stats(pages),
           "draws_per_user": args.draws, "idle": stats(idle), "under_load": stats(loaded),
           "answered": f"{len(loaded)}/{expected}", "errors": idle_err + load_err,
           "server_rerun_rendered_idle": stats(idle_server), "server_rerun_rendered_under_load": stats(load_server),
           "training_running_throughout": still_training}
    print(json.dumps(res, indent=2))
    Path(args.out).write_text(json.dumps(res, indent=2))
    if load_err or idle_err or len(loaded) != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()
