"""Load test against a real `streamlit run` server on loopback (bounded in time and count).

One browser context starts a training job on the Train page; N other contexts draw digits
on the Draw page and wait for each prediction, all at once.  Reports prediction latency
(mouse-up to prediction shown) p50/p95 under load and with the server idle, errors, and
whether every prediction was answered.

    python benchmarks/load_test.py --users 5 --draws 6     # writes benchmarks/load_test.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def start_server(runs: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT,
                            env={**os.environ, "ODENET_RUNS": runs}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def draw_digit(page, k: int) -> None:
    """Draw a 1 (k even) or a 7 (k odd) with the mouse; the caller releases the button."""
    canvas = page.locator("[data-testid=stBidiComponentIsolated] canvas.upper-canvas")
    deadline = time.monotonic() + 60
    while canvas.count() != 1 and time.monotonic() < deadline:  # a cleared canvas is replaced by a new one
        page.wait_for_timeout(100)
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    if k % 2 == 0:  # a 1
        page.mouse.move(x0 + 140, y0 + 50)
        page.mouse.down()
        for i in range(1, 12):
            page.mouse.move(x0 + 140 - i, y0 + 50 + 16 * i, steps=2)
    else:  # a 7
        page.mouse.move(x0 + 80, y0 + 60)
        page.mouse.down()
        for i in range(1, 11):
            page.mouse.move(x0 + 80 + 12 * i, y0 + 60, steps=2)
        for i in range(1, 16):
            page.mouse.move(x0 + 200 - 6 * i, y0 + 60 + 12 * i, steps=2)


def user(browser, url: str, draws: int, out: list, errors: list) -> None:
    ctx = browser.new_context(viewport={"width": 1300, "height": 950})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{url}/draw")
        page.get_by_text("Draw a digit on the canvas").wait_for()
        page.wait_for_timeout(1000)  # let the canvas component finish mounting
        for k in range(draws):
            draw_digit(page, k)
            t = time.perf_counter()
            page.mouse.up()
            page.get_by_text("function evaluations").first.wait_for(timeout=60_000)
            out.append(1000 * (time.perf_counter() - t))
            if page.locator("[data-testid='stException']").count():
                errors.append(page.locator("[data-testid='stException']").first.inner_text())
            page.get_by_role("button", name="Clear canvas").click()
            page.get_by_text("Draw a digit on the canvas").wait_for()
            page.wait_for_timeout(500)  # the new canvas mounts
    except Exception as exc:  # recorded, the test reports it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        ctx.close()


def run_users(browser, url: str, users: int, draws: int) -> tuple[list[float], list[str]]:
    lat: list[float] = []
    errors: list[str] = []
    # Playwright's sync API is not thread-safe across one browser: one browser per user thread
    from playwright.sync_api import sync_playwright

    def one():
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            user(b, url, draws, lat, errors)
            b.close()

    threads = [threading.Thread(target=one) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    return lat, errors


def stats(lat: list[float]) -> dict:
    s = sorted(lat)
    return {"n": len(s), "p50_ms": statistics.median(s) if s else None,
            "p95_ms": s[max(0, int(0.95 * len(s)) - 1)] if s else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--draws", type=int, default=6)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as runs:
        proc, url = start_server(runs)
        try:
            idle, idle_err = run_users(None, url, 1, args.draws)
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                trainer = b.new_page()
                trainer.goto(f"{url}/train")
                trainer.get_by_label("Epochs").fill("3")
                trainer.get_by_label("Epochs").press("Enter")
                time.sleep(1)
                trainer.get_by_role("button", name="▶ Start").click()
                trainer.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stProgress\"]')]"
                                          ".some(e => e.innerText.includes('img/s'))", timeout=120_000)
                loaded, load_err = run_users(None, url, args.users, args.draws)
                still_training = "img/s" in trainer.locator("[data-testid='stProgress']").first.inner_text()
                trainer.get_by_role("button", name="■ Stop").click()
                b.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    expected = args.users * args.draws
    res = {"users": args.users, "draws_per_user": args.draws, "idle": stats(idle), "under_load": stats(loaded),
           "answered": f"{len(loaded)}/{expected}", "errors": idle_err + load_err,
           "training_running_throughout": still_training}
    print(json.dumps(res, indent=2))
    (ROOT / "benchmarks" / "load_test.json").write_text(json.dumps(res, indent=2))
    if load_err or idle_err or len(loaded) != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()
