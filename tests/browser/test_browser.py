"""Browser tests: a real Streamlit server (started as `make run` does: `python -m odenet.app.serve`)
driven by Playwright in Debian's chromium.

Screenshots of every page are saved to ``$ODENET_SCREENSHOTS`` (default ``artifacts/screenshots``)
and copied into docs/screenshots for the README.
"""

import contextlib
from pathlib import Path

import pytest

from tests.support.browser import SHOTS, no_exception, settle, shot
from tests.support.pen import (
    CANVAS,
    IS_BLANK,
    IS_PREDICTION,
    MODEL_READY,
    MOUNTS,
    PEN_CLEAR,
    PEN_NOTICE,
    PENS,
    draw_digit,
)
from tests.support.server import odenet_app

ROOT = Path(__file__).resolve().parents[2]
expect = pytest.importorskip("playwright.sync_api").expect


@contextlib.contextmanager
def shared_demo(tmp_path_factory, browser, token: str, runs: Path | None = None, width: int = 1280,
                height: int = 720, timeout_ms: int = 90_000):
    """A shared-demo server (ODENET_SHARED=1, as behind a reverse proxy) whose presenter token is
    ``token``, and two visitors on it (two contexts: two cookies): yields (url, page, other page)."""
    env = {"ODENET_SHARED": "1", "ODENET_PRESENTER_TOKEN": token}
    with odenet_app(tmp_path_factory.mktemp("log") / "server.log", runs or tmp_path_factory.mktemp("runs"),
                    env) as server:
        contexts = [browser.new_context(viewport={"width": width, "height": height}) for _ in range(2)]
        try:
            pages = [ctx.new_page() for ctx in contexts]
            for pg in pages:
                pg.set_default_timeout(timeout_ms)
            yield server.url, *pages
        finally:
            for ctx in contexts:
                ctx.close()


def enter_presenter_token(pg, token: str) -> None:
    """Type the token into the sidebar's Presenter box; Start is enabled afterwards."""
    pg.get_by_text("Presenter").first.click()
    field = pg.get_by_role("textbox", name="Presenter token")
    field.fill(token)
    field.press("Enter")
    expect(pg.get_by_role("button", name="▶ Start")).to_be_enabled()


@pytest.mark.parametrize("path, name, text", [
    ("integrators", "integrators", "Convergence"),  # first request of a fresh server: a page URL
    ("", "home", "a Neural ODE lab"),
    ("trajectories", "trajectories", "Hidden-state trajectories"),
])
def test_pages_load(server, page, path, name, text):
    page.goto(f"{server}/{path}")
    page.get_by_text(text).first.wait_for()
    settle(page, 800)
    no_exception(page)
    # app.py's navigation (page titles), not Streamlit's legacy file list ("robustness")
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Solver robustness" in nav and "Draw a digit" in nav, nav
    if name == "trajectories":
        page.locator(".js-plotly-plot").first.wait_for()
    shot(page, name)


def test_train_page_live_run(server, page):
    page.goto(f"{server}/train")
    settle(page)
    epochs = page.get_by_label("Epochs")
    epochs.fill("5")
    epochs.press("Enter")
    settle(page)
    page.get_by_role("button", name="▶ Start").click()
    progress = page.locator("[data-testid='stProgress']").first
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stProgress\"]')]"
                           ".some(e => e.innerText.includes('img/s'))", timeout=90_000)
    first = progress.inner_text()
    page.locator(".js-plotly-plot").nth(1).wait_for()
    page.wait_for_function(f"() => document.querySelector('[data-testid=\"stProgress\"]').innerText !== {first!r}",
                           timeout=30_000)  # the live view updates by itself
    # the loss curve grows as the fragment polls (no reload, no click)
    page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                           " return p && p.querySelectorAll('.scatterlayer .trace .points path').length >= 4; }",
                           timeout=60_000)
    no_exception(page)
    shot(page, "train")
    page.get_by_role("button", name="■ Stop").click()
    # a short stopped run shows its last accuracy (as a warning when it is near chance)
    page.get_by_text(__import__("re").compile(r"stopped; (best|last) test accuracy")).wait_for(timeout=60_000)
    page.reload()
    settle(page, 1000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)  # the run list
    no_exception(page)


def test_draw_page_prediction_and_steps(server, page):
    page.goto(f"{server}/draw")
    page.locator(CANVAS).wait_for()
    page.get_by_text("Predictions run in your browser").wait_for(timeout=60_000)
    page.wait_for_function(MODEL_READY, timeout=90_000)
    draw_digit(page, 1)  # a "7" drawn with real mouse strokes
    try:
        page.wait_for_function(IS_PREDICTION, timeout=60_000)  # in the browser, before the pen lifts
    finally:
        shot(page, "draw-stroke")
    page.mouse.up()
    page.get_by_text("Watch it think: class probabilities").first.wait_for(timeout=60_000)  # server got the 28x28
    settle(page, 800)
    no_exception(page)
    assert page.locator(".js-plotly-plot").count() == 1  # the server's "watch it think"; the rest is the component
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")  # drawing centred the canvas
    shot(page, "draw")


def test_gradients_page_measures_every_method(server, page):
    """A link with small settings, then Measure: the four panels and a row per method and step count."""
    page.goto(f"{server}/gradients?steps=1,4,16&batch=8")
    settle(page)
    page.get_by_role("button", name="Measure (12 forward + backward passes)").click()
    page.get_by_text("memory saved for backward (MiB)").first.wait_for(timeout=120_000)
    settle(page, 800)
    no_exception(page)
    grid = page.locator("[data-testid=stDataFrame]")
    assert grid.count() == 1
    legend = page.locator(".legendtext").all_text_contents()  # SVG text: no innerText
    assert {"backprop", "adjoint", "discrete_adjoint", "checkpoint"} <= set(legend), legend
    page.get_by_text("Gradient methods").first.scroll_into_view_if_needed()  # the charts, for the README
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollBy(0, 250)")
    settle(page, 300)
    shot(page, "gradients")


def test_robustness_small_grid(server, page):
    page.goto(f"{server}/robustness")
    settle(page)
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("Home")  # smallest test subset (200 images)
    settle(page)
    page.get_by_role("button", name="Run the grid").click()
    page.get_by_text("Test accuracy (%) by integrator").first.wait_for(timeout=120_000)
    settle(page, 800)
    no_exception(page)
    shot(page, "robustness")


def test_blank_upload_says_no_digit_found(server, page, tmp_path):
    import numpy as np
    from PIL import Image

    blank = tmp_path / "white.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(blank)
    page.goto(f"{server}/draw")
    settle(page)
    page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(blank))
    page.get_by_text("No digit found in white.png").wait_for(timeout=60_000)
    no_exception(page)


def test_latest_input_wins_upload_then_drawing_then_clear(server, page, tmp_path):
    """Issue #12: a drawing made after an upload is what gets classified, and Clear removes both."""
    import numpy as np
    from PIL import Image

    from odenet.data.mnist import load_mnist

    _, test = load_mnist()
    idx = int((test.labels == 0).nonzero()[0])  # a 0: neither of the shapes draw_digit makes
    digit = tmp_path / "zero.png"
    Image.fromarray(255 - test.images[idx].numpy().astype(np.uint8)).resize((112, 112)).save(digit)
    page.goto(f"{server}/draw")
    page.locator(CANVAS).wait_for()
    page.wait_for_function(MODEL_READY, timeout=90_000)
    draw_digit(page, 0)  # a 1 drawn first ...
    page.mouse.up()
    page.wait_for_function(IS_PREDICTION, timeout=60_000)
    settle(page)
    page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(digit))
    page.get_by_text("Input: upload zero.png").wait_for(timeout=60_000)
    settle(page)
    # ... the upload replaces it: one prediction, in the panel beside the canvas, for the upload
    expect(page.locator("[data-testid=pen-source]")).to_have_text("upload zero.png", timeout=60_000)
    expect(page.locator("[data-testid=pen-prediction]")).to_have_text("Prediction: 0", timeout=60_000)
    assert page.evaluate(f"() => {PENS}[0].strokes.length") == 0  # the drawing is gone
    draw_digit(page, 1)  # a 7 drawn after the upload: the drawing is what gets classified now
    page.mouse.up()
    page.wait_for_function(IS_PREDICTION, timeout=60_000)  # the pen canvas predicts it in the browser
    expect(page.get_by_text("Input: upload zero.png")).to_have_count(0, timeout=60_000)  # the server agrees
    expect(page.locator("[data-testid='stFileUploader'] [data-testid='stFileUploaderFile']")).to_have_count(0)
    expect(page.locator("[data-testid=pen-source]")).to_be_hidden()
    expect(page.get_by_text("Predictions run in your browser")).to_be_visible(timeout=60_000)
    settle(page)
    no_exception(page)
    page.locator(PEN_CLEAR).click()
    page.wait_for_function(IS_BLANK, timeout=60_000)
    expect(page.get_by_text("Input: upload")).to_have_count(0, timeout=60_000)
    expect(page.locator("[data-testid='stFileUploader'] [data-testid='stFileUploaderFile']")).to_have_count(0)
    page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(digit))
    expect(page.locator("[data-testid=pen-source]")).to_have_text("upload zero.png", timeout=60_000)
    settle(page)
    assert page.get_by_role("button", name="Clear", exact=True).count() == 1  # one Clear: drawing and upload
    page.locator(PEN_CLEAR).click()  # ... and it clears an upload too
    expect(page.locator("[data-testid='stFileUploader'] [data-testid='stFileUploaderFile']")).to_have_count(
        0, timeout=60_000)
    page.wait_for_function(IS_BLANK, timeout=60_000)
    expect(page.get_by_text("Input: upload")).to_have_count(0, timeout=60_000)
    settle(page)
    no_exception(page)


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


@pytest.mark.parametrize("width, height, name", [(1280, 720, "draw-projector"), (1400, 1000, None),
                                                 (390, 844, "draw-phone")])
def test_draw_page_fits_a_projector(server, browser, width, height, name):
    """Issue #26: at 1280x720 (a projector) the canvas, the predicted digit and the ten bars are all
    on screen together without scrolling, while drawing and after; at 1400x1000 too; on a phone in
    portrait the panel stacks under the canvas, within the screen's width."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = ctx.new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{server}/draw")
        page.locator(CANVAS).wait_for()
        page.wait_for_function(MODEL_READY, timeout=90_000)
        settle(page)
        page.evaluate("document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
        draw_digit(page, 1)
        page.wait_for_function(IS_PREDICTION, timeout=60_000)  # while the pen is still down
        page.mouse.up()
        settle(page, 800)
        if width >= 1000:
            page.evaluate("document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
            page.wait_for_timeout(300)
        canvas, pred, bars = _box(page, CANVAS), _box(page, "[data-testid=pen-prediction]"), \
            _box(page, "[data-testid=pen-bars]")
        conf = page.locator("[data-testid=pen-confidence]").first
        assert conf.evaluate("e => e.scrollWidth <= e.clientWidth")  # the confidence text is never cut
        if width >= 1000:
            for what, b in (("canvas", canvas), ("prediction", pred), ("bars", bars)):
                assert b["y"] >= 0 and b["y"] + b["height"] <= height and b["x"] + b["width"] <= width, (what, b)
            assert pred["x"] > canvas["x"] + canvas["width"] - 1  # beside the canvas, not below it
        else:
            assert pred["y"] >= canvas["y"] + canvas["height"] - 1  # stacked under the canvas
            for b in (canvas, pred, bars):
                assert b["x"] >= 0 and b["x"] + b["width"] <= width + 1, b
        no_exception(page)
        if name:
            page.screenshot(path=str(SHOTS / f"{name}.png"))
    finally:
        ctx.close()


def test_a_dot_and_a_scribble_get_the_not_a_digit_notice_and_a_digit_does_not(server, page):
    """Issue #26: the check runs on the pen-up 28x28 (odenet.inspect.digitcheck) and its words appear in the
    panel beside the canvas, for the drawing on screen only."""
    page.goto(f"{server}/draw")
    page.locator(CANVAS).wait_for()
    page.wait_for_function(MODEL_READY, timeout=90_000)
    canvas = page.locator(CANVAS)
    canvas.evaluate("e => e.scrollIntoView({block: 'center', behavior: 'instant'})")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 140, box["y"] + 140)  # a single dot
    notice = page.locator(PEN_NOTICE)
    expect(notice).to_contain_text("does not look like a digit", timeout=60_000)
    page.locator(PEN_CLEAR).click()
    expect(notice).to_be_hidden(timeout=60_000)
    draw_digit(page, 1)  # a 7
    page.mouse.up()
    page.wait_for_function(IS_PREDICTION, timeout=60_000)
    settle(page, 1500)
    expect(notice).to_be_hidden()
    no_exception(page)


def test_clear_during_the_pen_up_rerun_loses_no_stroke(server, page):
    """Issue #14: Clear pressed the moment the browser shows its prediction (the server still busy
    with that pen-up) wipes the same canvas in place, and the next drawing is answered by the
    browser and by the server; the cleared drawing does not come back."""
    page.goto(f"{server}/draw")
    page.locator(CANVAS).wait_for()
    page.wait_for_function(MODEL_READY, timeout=90_000)
    mount = page.evaluate(MOUNTS)
    assert mount and "," not in mount
    for k in range(3):
        draw_digit(page, k)
        page.mouse.up()
        page.wait_for_function(IS_PREDICTION, timeout=60_000)
        page.locator(PEN_CLEAR).click()  # no wait for the server
        page.wait_for_function(IS_BLANK, timeout=60_000)
        assert page.evaluate(MOUNTS) == mount  # wiped in place, not a new canvas
    settle(page)
    expect(page.get_by_text("Watch it think: class probabilities")).to_have_count(0)  # the cleared one stays gone
    draw_digit(page, 1)
    page.mouse.up()
    page.wait_for_function(IS_PREDICTION, timeout=60_000)
    page.get_by_text("Watch it think: class probabilities").first.wait_for(timeout=60_000)
    settle(page)
    # the drawing answered by both is still the one on screen, on one canvas.  (Known: in 1 of ~10 full
    # runs the canvas was mounted afresh during this pen-up's rerun, its strokes restored from the
    # session; cause not found yet, see the closing note of 2026-12-03. The wipe in place is asserted above.)
    assert "," not in page.evaluate(MOUNTS) and page.evaluate(f"() => {PENS}[0].strokes.length") > 0
    page.wait_for_function(IS_PREDICTION, timeout=60_000)
    no_exception(page)


def test_settings_stay_and_nothing_leaves_localhost(server, page):
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        (server, "http://localhost", "http://127.0.0.1", "ws://localhost", "data:", "blob:")) else None)
    page.goto(f"{server}/integrators")
    settle(page)
    steps = page.locator("[data-testid=stNumberInput] input").first
    steps.fill("23")
    steps.press("Enter")
    settle(page)
    page.locator(f"[data-testid=stSidebarNav] a[href='{server}/train']").click()
    page.get_by_text("Train RKNet live").wait_for()
    settle(page)
    page.locator(f"[data-testid=stSidebarNav] a[href='{server}/integrators']").click()
    page.get_by_text("Cost and accuracy at 23 steps").wait_for(timeout=120_000)  # kept across pages
    assert page.locator("[data-testid=stNumberInput] input").first.input_value() == "23"
    for path in ("", "train", "draw", "trajectories", "robustness", "gradients"):
        page.goto(f"{server}/{path}")
        settle(page)
    assert outside == []  # nothing is fetched from outside the server (no font CDN, no model CDN)


def console_errors(pg) -> list[str]:
    """Collect the page's console errors and uncaught exceptions from now on.  Streamlit's own
    probe of a page path as a base URL (``/draw/_stcore/health``, 404, then ``/_stcore/health``)
    is not an error of the app and is left out."""
    errors: list[str] = []

    def on_console(m) -> None:
        where = m.location.get("url", "")
        if m.type == "error" and "/_stcore/" not in where:
            errors.append(f"{m.text} ({where})")

    pg.on("console", on_console)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_link_opens_the_configured_view_in_a_fresh_context(server, page):
    errors = console_errors(page)
    page.goto(f"{server}/draw?model=euler_1step&integrator=midpoint&steps=3")
    page.get_by_text("midpoint x3").first.wait_for(timeout=60_000)
    settle(page, 800)
    no_exception(page)
    solver = page.get_by_text("Inference solver:").first.inner_text()  # the solver popover's label
    assert "midpoint x3" in solver and "as trained" not in solver, solver
    assert page.get_by_role("combobox", name="Model").input_value().startswith("euler_1step")
    assert "model=euler_1step" in page.url and "steps=3" in page.url
    shot(page, "draw-link")
    # the "Copy link" box is built when opened (one rerun) and carries this view and its lesson form
    assert page.locator("[data-testid=stCode]").count() == 0
    page.get_by_text("Copy link to this view").first.click()
    codes = page.locator("[data-testid=stCode]")
    expect(codes).to_have_count(2, timeout=30_000)
    assert codes.nth(0).inner_text().strip().endswith("/draw?model=euler_1step&integrator=midpoint&steps=3")
    assert codes.nth(1).inner_text().strip().endswith("steps=3&lesson=1")
    # lesson link: the view stays, the controls do not
    page.goto(f"{server}/draw?model=euler_1step&integrator=midpoint&steps=3&lesson=1")
    page.get_by_text("Lesson view").first.wait_for(timeout=60_000)
    settle(page, 500)
    said = page.locator("[data-testid=stCaptionContainer]").filter(has_text="inference solver: midpoint x3")
    assert said.first.is_visible() and "euler_1step" in said.first.inner_text()  # the view says what it shows
    assert not page.locator(".st-key-odenet_locked").first.is_visible()
    assert errors == [], errors


@pytest.mark.parametrize("path, name, ready", [
    ("trajectories?model=rk4_1step&n=30&seed=3", "trajectories-animation", "The solve played step by step"),
    ("integrators?problem=harmonic&methods=euler,midpoint,rk4&steps=8", "integrators-stages", "One step of"),
])
def test_animations_render_without_console_errors(server, page, path, name, ready):
    errors = console_errors(page)
    page.goto(f"{server}/{path}")
    settle(page, 500)
    if name == "trajectories-animation":
        page.get_by_text("2-D animated").click()
        settle(page, 500)
    page.get_by_text(ready).first.wait_for(timeout=90_000)
    settle(page, 800)
    no_exception(page)
    if name == "trajectories-animation":
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        assert page.evaluate("() => document.querySelector('.js-plotly-plot')._transitionData._frames.length") == 17
        plot.locator(".updatemenu-button").first.dispatch_event("click")  # Plotly's play button: frames advance
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active > 2",
                               timeout=20_000)
        page.wait_for_timeout(1500)
        assert "n=30" in page.url and "seed=3" in page.url
    else:
        page.get_by_text("One step of").first.scroll_into_view_if_needed()
        assert "methods=euler%2Cmidpoint%2Crk4" in page.url or "methods=euler,midpoint,rk4" in page.url
    shot(page, name)
    assert errors == [], errors


def test_presenter_token_in_the_browser(tmp_path_factory, browser):
    """Issue #14 end to end: on a shared server (ODENET_SHARED=1, as behind a reverse proxy) a
    visitor cannot start training; a wrong token is refused; the right one unlocks Start for
    that session only, and the token never appears in the URL."""
    token = "browser-test-token-42"
    with shared_demo(tmp_path_factory, browser, token, width=1400, height=1000, timeout_ms=60_000) as (url, pg, other):
        pg.goto(f"{url}/train")
        settle(pg)
        start = pg.get_by_role("button", name="▶ Start")
        assert start.is_disabled()
        pg.get_by_text("Presenter").first.click()
        field = pg.get_by_role("textbox", name="Presenter token")
        field.fill("not-the-token")
        field.press("Enter")
        pg.get_by_text("That is not the presenter token.").wait_for()
        field.fill(token)
        field.press("Enter")
        expect(pg.get_by_role("button", name="▶ Start")).to_be_enabled(timeout=60_000)
        settle(pg)
        assert token not in pg.url
        other.goto(f"{url}/train")
        settle(other)
        assert other.get_by_role("button", name="▶ Start").is_disabled()
        no_exception(pg)
        no_exception(other)


def test_teacher_flow_reload_keeps_control_and_watchers_see_the_end(tmp_path_factory, browser):
    """Issue #26 end to end: the teacher starts a run, reloads, and still has Stop (no "another
    visitor's job"); a second browser (another context: another cookie) has to confirm first; the
    watcher sees the run's final verdict and the new run in the list without reloading; on a shared
    server the presenter token survives a reload in the same browser, not in another."""
    token = "room-test-token-7"
    with shared_demo(tmp_path_factory, browser, token) as (url, pg, other):
        pg.goto(f"{url}/train?train_size=60000")  # long enough to still run after the reload
        settle(pg)
        enter_presenter_token(pg, token)
        assert any(c["name"] == "odenet_browser" for c in pg.context.cookies())
        pg.get_by_role("button", name="▶ Start").click()
        pg.get_by_text("img/s").first.wait_for(timeout=120_000)
        pg.reload()
        settle(pg)
        expect(pg.get_by_role("button", name="▶ Start")).to_be_enabled()  # still the presenter
        expect(pg.get_by_role("button", name="■ Stop")).to_be_enabled()  # still the owner
        assert pg.get_by_text("Stop another visitor's job").count() == 0
        other.goto(f"{url}/train")
        settle(other)
        other.get_by_text("img/s").first.wait_for()  # watching the teacher's job
        expect(other.get_by_role("button", name="▶ Start")).to_be_disabled()
        expect(other.get_by_role("button", name="■ Stop")).to_be_disabled()
        pg.get_by_role("button", name="■ Stop").click()
        ended = other.get_by_text("It is now selectable on the other pages.")
        ended.first.wait_for(timeout=120_000)  # the watcher sees how it ended, without a reload
        assert "stopped" in ended.first.inner_text()
        expect(other.get_by_text("No training job is running")).to_have_count(0)
        other.get_by_text("Finished and stopped runs will appear here.").wait_for(state="detached")
        no_exception(pg)
        no_exception(other)


def test_teacher_flow_gallery_and_new_class(tmp_path_factory, browser):
    """Issue #26 end to end, the rest of the teacher's flow: the teacher (presenter token) trains a
    tiny run; a student shares a drawing from Draw a digit and it appears on the teacher's Class
    gallery by itself (live refresh); the student sees an explanation, not the gallery's controls;
    "New class" names the one run it deletes, and once confirmed the wall is empty and the Train
    page no longer lists the run."""
    import re

    token = "gallery-test-token-3"
    runs_dir = tmp_path_factory.mktemp("runs")
    with shared_demo(tmp_path_factory, browser, token, runs=runs_dir) as (url, pg, other):
        pg.goto(f"{url}/train?train_size=1000&epochs=1")  # the server's first page: no run exists yet
        settle(pg)
        enter_presenter_token(pg, token)
        pg.get_by_role("button", name="▶ Start").click()
        pg.get_by_text("It is now selectable on the other pages.").first.wait_for(timeout=180_000)
        settle(pg)
        run_names = [p.name for p in runs_dir.iterdir() if p.is_dir()]
        assert len(run_names) == 1, run_names
        expect(pg.locator("[data-testid='stDataFrame']").first).to_be_visible(timeout=60_000)

        # the teacher puts the gallery on the projector before anyone shared
        pg.goto(f"{url}/gallery")
        settle(pg)
        expect(pg.get_by_role("button", name="Clear gallery")).to_be_visible()  # still the presenter
        pg.get_by_text("No drawings shared yet.").wait_for()
        captions = pg.locator("[data-testid=stImageCaption]")

        # the student shares a drawing from the Draw page
        other.goto(f"{url}/draw")
        other.locator(CANVAS).wait_for()
        other.wait_for_function(MODEL_READY, timeout=90_000)
        settle(other)
        share = other.get_by_role("switch", name="Share my drawings with the room")
        other.get_by_text("Share my drawings with the room").click()
        expect(share).to_be_checked(timeout=30_000)
        settle(other)
        draw_digit(other, 1)  # a 7
        other.mouse.up()
        other.wait_for_function(IS_PREDICTION, timeout=60_000)
        settle(other, 1000)  # the server received the 28x28 and shared it

        # ... and it appears on the teacher's wall without a reload (the wall refreshes every 3 s)
        expect(captions).to_have_count(1, timeout=60_000)
        assert re.search(r"\d · \d+%", captions.first.inner_text()), captions.first.inner_text()
        expect(pg.locator("[data-testid=stImage] img")).to_have_count(1)
        expect(pg.get_by_text(re.compile(r"1\s*drawing ·"))).to_be_visible()
        draw_digit(other, 0)  # more strokes on the same drawing replace its share: still one tile
        other.mouse.up()
        settle(other, 1000)
        pg.wait_for_timeout(4000)  # at least one refresh of the wall
        expect(captions).to_have_count(1)
        settle(pg)
        shot(pg, "gallery")

        # a student opening the gallery gets an explanation, not the controls
        other.goto(f"{url}/gallery")
        settle(other)
        other.get_by_text("This is the presenter's view").wait_for()
        assert other.get_by_role("button", name="Clear gallery").count() == 0
        assert other.get_by_role("button", name="New class").count() == 0
        assert other.locator("[data-testid=stImageCaption]").count() == 0

        # New class: the confirmation names the one run; confirmed, the wall and the run list are empty
        new_class = pg.get_by_role("button", name="New class")
        expect(new_class).to_be_disabled()
        sure = pg.get_by_text(re.compile(r"^Yes, delete 1 run made since the server started"))
        expect(sure).to_contain_text("clear 1 shared drawing")
        sure.click()
        expect(new_class).to_be_enabled(timeout=30_000)
        new_class.click()
        pg.get_by_text("New class: deleted 1 run and cleared 1 drawing.").wait_for(timeout=60_000)
        pg.get_by_text("No drawings shared yet.").wait_for(timeout=60_000)
        expect(captions).to_have_count(0)
        expect(pg.get_by_text(re.compile(r"^Yes, delete 0 runs"))).to_be_visible()
        assert [p.name for p in runs_dir.iterdir() if p.is_dir()] == []
        pg.goto(f"{url}/train")
        settle(pg, 800)
        pg.get_by_text("Finished and stopped runs will appear here.").wait_for(timeout=60_000)
        assert pg.locator("[data-testid='stDataFrame']").count() == 0
        assert pg.get_by_text(run_names[0]).count() == 0
        no_exception(pg)
        no_exception(other)
