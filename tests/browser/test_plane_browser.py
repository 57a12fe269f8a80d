"""Flows in the plane in chromium: train with the defaults, then play the flow in the browser
(frames change with no server round trip); the screenshot is the README's."""

import os
from pathlib import Path

import pytest

from tests.support.browser import no_exception, settle, shot

pytestmark = [pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
expect = pytest.importorskip("playwright.sync_api").expect


def test_plane_page_trains_and_plays_the_flow_in_the_browser(server, page):
    sent: list = []  # every websocket message the page sends to the server
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    page.goto(f"{server}/plane")
    page.get_by_role("heading", name="Flows in the plane").wait_for()
    settle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Trained in").wait_for(timeout=60_000)
    settle(page, 800)
    no_exception(page)
    flow = page.locator("[data-testid=stPlotlyChart]").filter(has_text="The flow")
    flow.scroll_into_view_if_needed()
    current = flow.locator(".slider-label").first  # plotly's current-value text of the slider
    expect(current).to_have_text("solver time t=0")
    assert sent, "the page's websocket was not observed"
    sent.clear()
    flow.get_by_text("▶ Play").click()
    expect(current).to_have_text("solver time t=1", timeout=15_000)  # played to the end in the browser
    assert sent == []  # no message to the server while it played
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.get_by_text("Trained in").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    shot(page, "plane")
    if os.environ.get("ODENET_UPDATE_DOCS") == "1":
        (ROOT / "docs" / "screenshots").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "plane.png"), full_page=True)
