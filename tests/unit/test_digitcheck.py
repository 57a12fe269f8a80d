"""odenet.inspect.digitcheck: the Draw page's "does not look like a digit" check.

Inputs go through the app's own preprocessing: pen strokes drawn like the canvas
(``render_strokes``: 280 px, pen 20 px, round caps) -> ``prepare_canvas``; uploads -> ``load_upload``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from benchmarks.app.digit_check import pen_digit
from odenet import load_model
from odenet.data.mnist import load_mnist
from odenet.data.preprocess import load_upload, prepare_canvas, prepare_grey
from odenet.errors import OdenetError
from odenet.inspect.digitcheck import (
    THRESHOLDS,
    DigitCheck,
    DigitCheckError,
    InkStats,
    check_digit,
    decide,
    digit_stats,
    ink_stats,
    is_dot,
    render_strokes,
)

BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("rk4_1step")


def drawn(strokes: list) -> np.ndarray:
    """The uint8 (28, 28) the pen canvas sends on pen-up for these strokes (280 px canvas, pen 20)."""
    return np.rint(prepare_canvas(render_strokes(strokes)).image28 * 255).astype(np.uint8)


DOT = [[(140.0, 150.0)]]
ASTERISK = [[(140 + 90 * np.cos(a), 140 + 90 * np.sin(a)), (140 - 90 * np.cos(a), 140 - 90 * np.sin(a))]
            for a in np.radians([0, 45, 90, 135])]
HASH = [[(50, 105), (230, 105)], [(50, 175), (230, 175)], [(105, 50), (105, 230)], [(175, 50), (175, 230)]]
BLOB = [[(x, y) for y in range(80, 201, 12) for x in ((80, 200) if y % 24 == 8 else (200, 80))]]
SEVEN = [[(80, 50), (200, 50), (120, 240)]]
ONE = [[(110, 80), (150, 40), (150, 240)]]
ZERO = [[(140 + 60 * np.sin(a), 140 - 100 * np.cos(a)) for a in np.linspace(0, 2.1 * np.pi, 40)]]


def test_a_single_dot_is_flagged_in_plain_words(model):
    verdict = check_digit(model, drawn(DOT), strokes=DOT, pen_width=20)
    assert isinstance(verdict, DigitCheck)
    assert not verdict.looks_like_digit and verdict.reason == "a single dot"
    assert "does not look like a digit" in verdict.message and "a single dot" in verdict.message
    assert verdict.scores["stroke_radius"] >= THRESHOLDS.blob_radius
    # without the strokes the 28x28 alone (a filled disc) still warns; only the wording is vaguer
    alone = check_digit(model, drawn(DOT))
    assert not alone.looks_like_digit and alone.reason == "a dot or a filled blob"


def test_a_filled_blob_an_asterisk_and_a_hash_are_flagged(model):
    blob = check_digit(model, drawn(BLOB), strokes=BLOB)
    assert not blob.looks_like_digit and blob.reason == "a filled blob"
    star = check_digit(model, drawn(ASTERISK), strokes=ASTERISK)
    assert not star.looks_like_digit and star.reason == "an asterisk or star"
    assert star.scores["ends"] >= 6
    crossing = check_digit(model, drawn(HASH), strokes=HASH)
    assert not crossing.looks_like_digit and crossing.reason == "crossing lines", crossing.scores


@pytest.mark.parametrize("name", ["euler_1step", "rk4_kinetic"])
def test_the_other_shipped_models_agree_on_the_clear_cases(name):
    other = load_model(name)  # statistics are fitted per model (a few seconds, once)
    for strokes, reason in ((DOT, "a single dot"), (BLOB, "a filled blob"), (ASTERISK, "an asterisk or star"),
                            (HASH, "crossing lines"), (SEVEN, ""), (ONE, ""), (ZERO, "")):
        assert check_digit(other, drawn(strokes), strokes=strokes).reason == reason, (name, reason)


def test_drawn_digits_pass(model):
    for strokes in (SEVEN, ONE, ZERO):
        verdict = check_digit(model, drawn(strokes), strokes=strokes)
        assert verdict.looks_like_digit, (verdict.reason, verdict.scores)
        assert verdict.reason == "" and verdict.message == ""
    rng = np.random.default_rng(123)  # the benchmark's stroke templates: jitter, slant, size, pen width
    flagged = [d for d in range(10) for _ in range(3)
               if not check_digit(model, drawn(strokes := pen_digit(d, rng)), strokes=strokes).looks_like_digit]
    assert len(flagged) <= 1, flagged  # benchmark: 0-0.2% of 500


def test_mnist_test_digits_are_rarely_flagged(model):
    _, test = load_mnist()
    verdicts = [check_digit(model, prepare_grey(test.images[i].numpy() / 255.0)) for i in range(200)]
    flagged = [(i, v.reason) for i, v in enumerate(verdicts) if not v.looks_like_digit]
    assert len(flagged) <= 4, flagged  # <= 2 %; benchmark: 0.8-1.2 % of 2,000


def _typed(digit: int, px: int) -> bytes:
    font = ImageFont.truetype(str(BOLD), px)
    img = Image.new("L", (int(px * 1.2) + 20, int(px * 1.5) + 20), 255)
    ImageDraw.Draw(img).text((img.width // 2, img.height // 2), str(digit), fill=0, font=font, anchor="mm")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(not BOLD.exists(), reason="DejaVu Sans Bold is not installed")
def test_a_bold_typed_five_upload_is_not_flagged(model):
    for px in (16, 40, 120, 400):
        prepared = load_upload(_typed(5, px))
        verdict = check_digit(model, prepared)
        assert verdict.looks_like_digit, (px, verdict.reason, verdict.scores)
        # the same picture as the page would pass it after a pen-up (uint8) or as floats: same verdict
        same = check_digit(model, np.rint(prepared.image28 * 255).astype(np.uint8))
        assert same.looks_like_digit and abs(same.scores["distance"] - verdict.scores["distance"]) < 1e-6


def test_an_empty_picture_is_not_a_digit(model):
    verdict = check_digit(model, np.zeros((28, 28), np.uint8))
    assert not verdict.looks_like_digit and verdict.reason == "an empty picture"


@pytest.mark.parametrize("bad, words", [
    (np.zeros((27, 28)), "28x28"),
    (np.zeros((2, 28, 28)), "28x28"),
    (np.zeros(784), "28x28"),
    (np.zeros((280, 280, 4), np.uint8), "28x28"),
    (np.full((28, 28), np.nan), "NaN"),
    (np.full((28, 28), 300.0), "0..1"),
    (-np.ones((28, 28)), "0..1"),
    ([[1, 2], [3]], "28x28"),
    ("digit", "numbers"),
])
def test_wrong_inputs_raise_clear_errors(model, bad, words):
    with pytest.raises(DigitCheckError, match=words) as info:
        check_digit(model, bad)
    assert isinstance(info.value, OdenetError) and isinstance(info.value, ValueError)


def test_accepted_shapes_and_bad_strokes(model):
    img = drawn(SEVEN)
    flat = check_digit(model, img).scores["distance"]
    for shaped in (img[None], img[None, None], torch.from_numpy(img), img.astype(np.float32) / 255):
        assert check_digit(model, shaped).scores["distance"] == pytest.approx(flat, abs=1e-6)
    with pytest.raises(DigitCheckError, match="strokes"):
        check_digit(model, img, strokes=[[(1, 2, 3)]])
    with pytest.raises(DigitCheckError, match="strokes"):
        check_digit(model, img, strokes=[[(1, 2), (3,)]])
    assert is_dot(None) is None and is_dot([[(5, 5)]]) is True and is_dot([[(0, 0), (100, 0)]]) is False


def test_training_mode_model_is_refused():
    m = load_model("rk4_1step").train()
    with pytest.raises(DigitCheckError, match="eval mode"):
        check_digit(m, drawn(SEVEN))


def test_stats_are_fitted_once_per_model(model):
    first = digit_stats(model)
    assert digit_stats(model) is first
    assert first.means.shape == (10, model.config.channels) and first.scale > 0


def test_decide_is_a_pure_function_of_the_scores():
    thin = InkStats(ink=0.3, stroke_radius=2.0, thick_fraction=0.0, ends=2, holes=0, components=1, grey=0.5,
                    roundness=0.5)
    assert decide(thin, 0.5) == (True, "")
    assert decide(thin, 1.5) == (False, "a shape unlike the digits the model learned")
    disc = InkStats(ink=0.7, stroke_radius=9.0, thick_fraction=0.6, ends=0, holes=0, components=1, grey=0.2,
                    roundness=0.95)
    assert decide(disc, 0.0, dot=True) == (False, "a single dot")  # the model's view does not rescue a dot
    star = InkStats(ink=0.3, stroke_radius=2.2, thick_fraction=0.0, ends=8, holes=0, components=1, grey=0.6,
                    roundness=0.4)
    assert decide(star, 0.5) == (True, "")  # a '4' with overshoots can have many ends; the model decides
    assert decide(star, 0.8) == (False, "an asterisk or star")


def test_ink_stats_of_simple_shapes():
    ring = np.zeros((28, 28), np.float32)
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot(yy - 14, xx - 14)
    ring[(r > 6) & (r < 9)] = 1.0
    stats = ink_stats(ring)
    assert stats.holes == 1 and stats.ends == 0 and stats.components == 1
    disc = (r < 10).astype(np.float32)
    assert ink_stats(disc).stroke_radius >= 9 and ink_stats(disc).roundness > 0.9


def test_warm_up_thread_is_never_a_daemon(monkeypatch):
    """Started from a daemon thread (Streamlit runs pages in one), the fitting thread still must not
    be a daemon: an exit during the fit otherwise tears torch down under it (exit 134)."""
    import threading

    import odenet.inspect.digitcheck as dc

    started = threading.Event()
    monkeypatch.setattr(dc, "digit_stats", lambda model: started.set())
    out = {}

    def page_run():
        out["thread"] = dc.warm_digit_stats(object())

    runner = threading.Thread(target=page_run, daemon=True)
    runner.start()
    runner.join(10)
    out["thread"].join(10)
    assert started.is_set() and out["thread"].daemon is False
