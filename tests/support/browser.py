"""Debian's chromium for Playwright, as the browser tests and the app benchmarks launch it; waiting
for a Streamlit page to finish rendering; checking it showed no exception; screenshots."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# screenshots of the pages, as the browser tests take them (the README's come from here)
SHOTS = Path(os.environ.get("ODENET_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))
# Streamlit has finished running the page's script
DONE = "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"


def chromium_installed() -> bool:
    """Whether the chromium the tests drive is on this machine (apt-get install chromium)."""
    return Path(CHROMIUM).exists()


def open_page(browser: Any, width: int = 1400, height: int = 1000, timeout_ms: int = 60_000) -> Any:
    """A page in a new context of ``browser`` (sync Playwright); ``page.requests`` collects every URL it
    requests and ``page.errors`` every uncaught page error.  Close it with ``page.context.close()``."""
    pg = browser.new_context(viewport={"width": width, "height": height}).new_page()
    pg.set_default_timeout(timeout_ms)
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    return pg


def wait_rendered(page: Any, heading: str | None = None, timeout_ms: int = 120_000) -> str:
    """Block until the script run is over and (if given) ``heading`` is the page's h1; returns the h1."""
    want = json.dumps(heading)
    page.wait_for_function(
        f"() => {{ const h = document.querySelector('[data-testid=stMain] h1');"
        f" return {DONE} && h !== null && ({want} === null || h.innerText.trim() === {want}); }}",
        timeout=timeout_ms, polling=50)
    return page.locator("[data-testid=stMain] h1").first.inner_text().strip()


def settle(pg: Any, extra_ms: int = 300) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone), then ``extra_ms``."""
    pg.wait_for_selector("[data-testid='stApp']")
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)
    pg.wait_for_timeout(extra_ms)


def no_exception(pg: Any) -> None:
    """Fail if the page shows a Streamlit exception box (with its text)."""
    exc = pg.locator("[data-testid='stException']")
    assert exc.count() == 0, exc.first.inner_text()


def shot(pg: Any, name: str) -> None:
    """Save a full-page screenshot as ``SHOTS/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def readme_shot(pg: Any, name: str) -> None:
    """:func:`shot`, and with ``ODENET_UPDATE_DOCS=1`` also the README's ``docs/screenshots/<name>.png``."""
    shot(pg, name)
    if os.environ.get("ODENET_UPDATE_DOCS") == "1":
        docs = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        docs.mkdir(exist_ok=True)
        pg.screenshot(path=str(docs / f"{name}.png"), full_page=True)


def press_train(pg: Any, url: str, heading: str) -> list:
    """Open ``url``, wait for ``heading``, press the page's Train button; returns the (live) list of
    every websocket frame the page sends from then on, to show that something happens in the browser alone."""
    sent: list = []
    pg.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    pg.goto(url)
    pg.get_by_role("heading", name=heading).wait_for()
    settle(pg)
    pg.get_by_role("button", name="Train", exact=True).click()
    return sent


def plays_in_the_browser(chart: Any, current: Any, sent: list, end: str, timeout_ms: int = 20_000) -> None:
    """Press a Plotly animation's Play in ``chart`` and wait until its slider text ``current`` reads
    ``end``; fails if the page sent the server any message meanwhile (the frames are the browser's)."""
    from playwright.sync_api import expect

    assert sent, "the page's websocket was not observed"
    sent.clear()
    chart.get_by_text("▶ Play").click()
    expect(current).to_have_text(end, timeout=timeout_ms)
    assert sent == [], f"the page sent {len(sent)} messages to the server while the animation played"
