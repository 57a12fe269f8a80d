"""Density flows in chromium: train with the defaults (progress shown while it runs), then play the
density's animation in the browser (frames change with no server round trip); the screenshot is the
README's."""

import os
from pathlib import Path

import pytest

from tests.support.browser import no_exception, settle, shot

pytestmark = [pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
expect = pytest.importorskip("playwright.sync_api").expect


def test_density_page_trains_and_plays_the_density_in_the_browser(server, page):
    sent: list = []  # every websocket message the page sends to the server
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    page.goto(f"{server}/density")
    page.get_by_role("heading", name="Density flows").wait_for()
    settle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("iteration ", exact=False).first.wait_for(timeout=60_000)  # progress while it trains
    page.get_by_text("Trained in").wait_for(timeout=240_000)
    settle(page, 800)
    no_exception(page)
    anim = page.locator("[data-testid=stPlotlyChart]").filter(has_text="The flow carries the Gaussian")
    anim.wait_for(timeout=60_000)  # the pictures are computed after the curves
    anim.scroll_into_view_if_needed()
    current = anim.locator(".slider-group > text").first  # the slider's current value (Plotly draws it there)
    expect(current).to_have_text("time t=0.00")
    assert sent, "the page's websocket was not observed"
    sent.clear()
    anim.get_by_text("▶ Play").click()
    expect(current).to_have_text("time t=1.00", timeout=20_000)  # played to the end in the browser
    assert sent == []  # no message to the server while it played
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.get_by_role("button", name="Train", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.mouse.move(700, 300)
    page.mouse.wheel(0, -220)  # the settings with their labels too
    page.mouse.move(1395, 1300)  # off the charts and the sidebar: no hover labels or mode bar in the picture
    page.wait_for_timeout(800)
    shot(page, "density")
    if os.environ.get("ODENET_UPDATE_DOCS") == "1":
        (ROOT / "docs" / "screenshots").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "density.png"), full_page=True)
