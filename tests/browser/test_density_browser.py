"""Density flows in chromium: train with the defaults (progress shown while it runs), then play the
density's animation in the browser (frames change with no server round trip); the screenshot is the
README's."""


import pytest

from tests.support.browser import no_exception, plays_in_the_browser, press_train, readme_shot, settle

pytestmark = [pytest.mark.browser]
expect = pytest.importorskip("playwright.sync_api").expect


def test_density_page_trains_and_plays_the_density_in_the_browser(server, page):
    sent = press_train(page, f"{server}/density", "Density flows")
    page.get_by_text("iteration ", exact=False).first.wait_for(timeout=60_000)  # progress while it trains
    page.get_by_text("Trained in").wait_for(timeout=240_000)
    settle(page, 800)
    no_exception(page)
    anim = page.locator("[data-testid=stPlotlyChart]").filter(has_text="The flow carries the Gaussian")
    anim.wait_for(timeout=60_000)  # the pictures are computed after the curves
    anim.scroll_into_view_if_needed()
    current = anim.locator(".slider-group > text").first  # the slider's current value (Plotly draws it there)
    expect(current).to_have_text("time t=0.00")
    plays_in_the_browser(anim, current, sent, "time t=1.00")
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.get_by_role("button", name="Train", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.mouse.move(700, 300)
    page.mouse.wheel(0, -220)  # the settings with their labels too
    page.mouse.move(1395, 1300)  # off the charts and the sidebar: no hover labels or mode bar in the picture
    page.wait_for_timeout(800)
    readme_shot(page, "density")
