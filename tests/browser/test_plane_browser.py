"""Flows in the plane in chromium: train with the defaults, then play the flow in the browser
(frames change with no server round trip); the screenshot is the README's."""

import pytest

from tests.support.browser import no_exception, plays_in_the_browser, press_train, readme_shot, settle

pytestmark = [pytest.mark.browser]
expect = pytest.importorskip("playwright.sync_api").expect


def test_plane_page_trains_and_plays_the_flow_in_the_browser(server, page):
    sent = press_train(page, f"{server}/plane", "Flows in the plane")
    page.get_by_text("Trained in").wait_for(timeout=60_000)
    settle(page, 800)
    no_exception(page)
    flow = page.locator("[data-testid=stPlotlyChart]").filter(has_text="The flow")
    flow.scroll_into_view_if_needed()
    current = flow.locator(".slider-label").first  # plotly's current-value text of the slider
    expect(current).to_have_text("solver time t=0")
    plays_in_the_browser(flow, current, sent, "solver time t=1", 15_000)
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.get_by_text("Trained in").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    readme_shot(page, "plane")
