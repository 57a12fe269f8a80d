"""The in-browser pen canvas (odenet.app.web) in a real `streamlit run` app driven by Playwright in
Debian's chromium: browser 28x28 and probabilities equal Python's, live prediction during the
stroke, undo/clear, the wasm-failure report, sessions and stats kept bounded, nothing fetched
off-host.  Without a browser: tests/unit/test_web_assets.py."""

import json
import random
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

from odenet.app.web import assets_available
from odenet.data.preprocess import prepare_canvas
from odenet.ode.integrators import get_method
from odenet.train.checkpoints import load_model
from tests.support.pen import (
    JS_INSTANCE,
    digit_strokes,
    draw_stroke,
    instance_state,
    rgba_array,
    server_seq_shown,
    wait_ready,
    wait_settled,
)
from tests.support.reference import python_u8, torch_step_probs
from tests.support.server import serving

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "support" / "pen_canvas_app.py"
VIEWPORT = (1300, 950)
pytestmark = pytest.mark.skipif(not assets_available(), reason="odenet/app/web assets not built "
                                "(cd odenet/app/web && npm ci && npm run build)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("log") / "server.log", app=APP) as srv:
        yield srv.url


def assert_local_only(pg) -> None:
    outside = [u for u in pg.requests
               if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in ("localhost", "127.0.0.1")]
    assert outside == [], outside
    assert pg.errors == []


def live_prediction(pg) -> str:
    return pg.get_by_test_id("pen-prediction").inner_text()


@pytest.fixture(scope="module")
def rk4_model():
    return load_model("rk4_1step")


def test_browser_parity_20_drawings(server, page, rk4_model):
    """20 drawn digits: the browser's 28x28 equals prepare_canvas of the same canvas pixels, its
    per-step probabilities equal PyTorch's within 1e-3 with the same argmax; 'Prediction: D' is in
    the aria-live region before the pen is lifted; the server receives every drawing."""
    page.goto(server)
    assert wait_ready(page) == "true"
    live = page.locator("[data-testid=pen-prediction][aria-live=polite]")
    assert live.count() == 1
    rng = random.Random(1)
    worst_grey, worst_prob = 0, 0.0
    seen_during = []
    for k in range(20):
        strokes = digit_strokes(k % 10, rng)
        for j, stroke in enumerate(strokes):
            seq = instance_state(page)["seq"]
            last = j == len(strokes) - 1

            def during(pg):
                pg.wait_for_function("() => /^Prediction: \\d$/.test(document.querySelector("
                                     "'[data-testid=stBidiComponentIsolated]').shadowRoot.querySelector("
                                     "'[data-testid=pen-prediction]').textContent)", timeout=10_000)
                seen_during.append(live.inner_text())

            draw_stroke(page, stroke, during=during if last else None)
            wait_settled(page, seq + 1)
        server_seq_shown(page, seq + 1)
        st = instance_state(page, pixels=True)
        rgba = rgba_array(st)
        blank, ref_u8 = python_u8(rgba)
        assert not blank and st["blank"] is False
        got_u8 = np.asarray(st["u8"], np.int64).reshape(28, 28)
        worst_grey = max(worst_grey, int(np.abs(got_u8 - ref_u8).max()))
        x = prepare_canvas(rgba).tensor
        with torch.no_grad():
            ref = rk4_model.trajectory(x).logits.softmax(-1)[:, 0].numpy()  # (steps + 1, 10)
        got = np.asarray(st["probs"], np.float64)
        assert got.shape == ref.shape
        worst_prob = max(worst_prob, float(np.abs(got - ref).max()))
        assert got[-1].argmax() == ref[-1].argmax()
        page.get_by_test_id("pen-clear").click()
        wait_settled(page, seq + 2)
        assert live.inner_text() == "Draw a digit"
    print(f"browser parity, 20 drawings: max grey-level diff {worst_grey}, max prob diff {worst_prob:.2e}")
    assert worst_grey <= 1, worst_grey
    assert worst_prob <= 1e-3, worst_prob
    assert len(seen_during) == 20
    confidences = page.get_by_test_id("pen-bars").inner_text() + page.get_by_test_id("pen-confidence").inner_text()
    assert "100.0%" not in confidences
    # the runtime came compressed, once; ort fetched no wasm of its own
    wasm_requests = [u for u in page.requests if urlparse(u).path.endswith((".wasm", ".wasm.gz"))]
    assert len(wasm_requests) == 1, wasm_requests
    assert wasm_requests[0].endswith("/vendor/ort-wasm-simd-threaded.wasm.gz"), wasm_requests
    assert_local_only(page)


def test_undo_clear_and_server_copy(server, page):
    """Undo removes the last stroke and clear empties the canvas; each sends the new state to Python."""
    page.goto(server)
    assert wait_ready(page) == "true"
    rng = random.Random(5)
    for stroke in digit_strokes(4, rng):  # two strokes
        seq = instance_state(page)["seq"]
        draw_stroke(page, stroke)
        wait_settled(page, seq + 1)
    server_seq_shown(page, seq + 1)
    assert instance_state(page)["strokes"] == 2
    page.get_by_test_id("pen-undo").click()
    wait_settled(page, seq + 2)
    server_seq_shown(page, seq + 2)
    assert instance_state(page)["strokes"] == 1
    server_text = page.get_by_text("server:").inner_text()
    summary = json.loads(server_text.split("server:", 1)[1])
    assert summary["wasm"] is True and summary["blank"] is False and summary["prediction"] in range(10)
    page.get_by_test_id("pen-clear").click()
    wait_settled(page, seq + 3)
    server_seq_shown(page, seq + 3)
    st = instance_state(page)
    assert st["strokes"] == 0 and st["blank"] is True
    assert json.loads(page.get_by_text("server:").inner_text().split("server:", 1)[1])["blank"] is True
    # the toolbar is above the drawing area, never over it
    canvas = page.get_by_test_id("pen-canvas").bounding_box()
    for btn in ("pen-undo", "pen-clear"):
        b = page.get_by_test_id(btn).bounding_box()
        assert b["y"] + b["height"] <= canvas["y"]
    assert_local_only(page)


def test_multi_step_chart_matches_pytorch(server, page, rk4_model):
    """An Euler x4 export: five rows of probabilities, each equal to PyTorch's at its step time."""
    page.goto(f"{server}/?steps=4")
    assert wait_ready(page) == "true"
    seq = instance_state(page)["seq"]
    draw_stroke(page, digit_strokes(7, random.Random(3))[0])
    wait_settled(page, seq + 1)
    st = instance_state(page, pixels=True)
    ref = torch_step_probs(rk4_model, get_method("euler"), 4, prepare_canvas(rgba_array(st)).tensor)[:, 0]
    got = np.asarray(st["probs"])
    assert got.shape == (5, 10)
    assert np.abs(got - ref).max() <= 1e-3
    assert page.locator("[data-testid=pen-steps] polyline").count() == 10
    assert_local_only(page)


def test_wasm_failure_is_reported_and_drawing_still_sent(server, page):
    """A model the browser cannot load: the server hears wasm=False (before anything is drawn) and
    still gets the 28x28, so the page can predict server-side."""
    page.goto(f"{server}/?model=broken")
    assert wait_ready(page) == "false"
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stText]')].some("
                           "e => e.textContent.includes('\"wasm\": false'))")
    assert "unavailable" in page.get_by_test_id("pen-status").inner_text()
    seq = instance_state(page)["seq"]
    draw_stroke(page, digit_strokes(1, random.Random(0))[0])
    wait_settled(page, seq + 1)
    server_seq_shown(page, seq + 1)
    st = instance_state(page)
    assert st["probs"] is None and sum(st["u8"]) > 0
    summary = json.loads(page.get_by_text("server:").inner_text().split("server:", 1)[1])
    assert summary["wasm"] is False and summary["error"] and summary["blank"] is False
    assert_local_only(page)


REMOUNT = """async () => {
  const url = performance.getEntriesByType('resource').map((e) => e.name).find((n) => /pen_canvas\\.js/.test(n));
  const mod = await import(url);  // the module Streamlit loaded: same registry, same instances map
  const host = document.createElement('div');
  document.body.appendChild(host);
  const sent = [];
  const comp = { parentElement: host, data: { size: 280, strokes: [[[10, 10], [200, 200]]] },
                 setStateValue: (k, v) => sent.push(k) };
  const count = () => host.querySelectorAll('canvas[data-testid=pen-canvas]').length;
  const cleanup = mod.default(comp);
  const before = count();
  cleanup();
  const afterCleanup = count();
  mod.default(comp);  // Streamlit mounts the component again into the same element
  const after = count();
  const drawn = host.querySelector('canvas[data-testid=pen-canvas]').getContext('2d')
    .getImageData(0, 0, 280, 280).data.some((v, i) => i % 4 === 3 && v > 0);
  host.remove();
  return { before, afterCleanup, after, drawn };
}"""


def test_cleanup_then_remount_into_the_same_element_leaves_one_canvas(server, page):
    """The soak saw two pen canvases in one element container (one dead: not in the registry):
    Streamlit ran the component's cleanup and mounted it again into the same element, and the
    cleanup had left its DOM behind.  Now the cleanup removes it, and the remount redraws the
    strokes it is given."""
    page.goto(server)
    assert wait_ready(page) == "true"
    res = page.evaluate(REMOUNT)
    assert res == {"before": 1, "afterCleanup": 0, "after": 1, "drawn": True}, res
    assert page.errors == []


ORT_COUNTER = """async () => {
  // count onnxruntime's own sessions, whatever the component says: wrap create and release of the
  // module instance the component imported (the same URL, so the same module)
  const url = performance.getEntriesByType('resource').map((e) => e.name).find((n) => /ort\\.wasm\\.bundle/.test(n));
  const S = (await import(url)).InferenceSession;
  const c = globalThis.ortCount = { created: 0, released: 0, before: 1, tracked: new Set(), peak: 1 };
  const live = () => c.before + c.tracked.size;  // one session was created before this ran
  const create = S.create.bind(S);
  S.create = async (...args) => {
    const s = await create(...args);
    c.created++; c.tracked.add(s); c.peak = Math.max(c.peak, live());
    return s;
  };
  const release = S.prototype.release;
  S.prototype.release = function () {
    c.released++;
    if (!c.tracked.delete(this)) c.before--;
    return release.call(this);
  };
}"""
SESSIONS = ("() => ({created: ortCount.created, released: ortCount.released, peak: ortCount.peak,"
            " live: ortCount.before + ortCount.tracked.size, counted: globalThis.odenetPenCanvas.sessions})")


def test_switching_models_and_remounting_keeps_at_most_two_sessions_and_bounded_stats(server, page):
    """Three models, each picked twice, and two unmount/mount cycles: onnxruntime never holds more
    than the current session plus the one loading (it used to keep every session it ever made), and
    after many strokes every stats array holds only its window (it grew for the page's lifetime)."""
    page.goto(f"{server}/?lab=1")
    assert wait_ready(page) == "true"
    page.evaluate(ORT_COUNTER)
    page.evaluate("() => { globalThis.odenetPenCanvas.statsWindow = 8; }")
    rng = random.Random(7)

    def draw(digit: int) -> None:
        seq = instance_state(page)["seq"]
        draw_stroke(page, digit_strokes(digit, rng)[0])
        wait_settled(page, seq + 1)

    for _ in range(2):
        for digit, label in enumerate(("euler x2", "euler x3", "own solver")):
            before = page.evaluate(f"() => ({JS_INSTANCE})('pen').sessionUrl")
            page.locator("[data-testid=stRadio]").get_by_text(label, exact=True).click()
            page.wait_for_function(f"(u) => {{ const i = ({JS_INSTANCE})('pen'); "
                                   "return i && i.sessionUrl !== u && i.wasm === true; }", arg=before)
            draw(digit)
        page.get_by_text("hide canvas").click()  # unmount ...
        page.locator("canvas[data-testid=pen-canvas]").wait_for(state="detached")
        page.get_by_text("hide canvas").click()  # ... and mount again
        assert wait_ready(page) == "true"
        draw(3)
    for k in range(10):
        draw(k)
    seq = instance_state(page)["seq"]
    page.get_by_test_id("pen-clear").click()
    wait_settled(page, seq + 1)
    count = page.evaluate(SESSIONS)
    assert count["peak"] <= 2 and count["live"] == 1, count
    assert count["created"] >= 4, count  # the models really were loaded again and again
    assert count["counted"] == {"created": count["created"] + 1, "released": count["released"], "live": 1}, count
    stats = instance_state(page)["stats"]
    assert stats["updates"] > 8 and len(stats["latencies"]) == 8 and len(stats["changeToShownMs"]) == 8, stats
    for name in ("inferMs", "latencies", "editLatencies", "changeToShownMs", "strokeUpdates"):
        assert len(stats[name]) <= 8, (name, stats[name])
    assert page.evaluate("() => globalThis.odenetPenCanvas.instances.size") == 1
    assert_local_only(page)
