import io

import numpy as np
import pytest
from PIL import Image

from odenet.data.mnist import load_mnist
from odenet.data.preprocess import (
    MAX_UPLOAD_BYTES,
    ImageError,
    load_upload,
    prepare_canvas,
    prepare_grey,
    render_digit_on_canvas,
)


def stroke_seven(size=280, scale=1.0, off=(0, 0), width=18):
    """A synthetic '7' drawn with thick strokes on a black RGBA canvas."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    cx, cy = size / 2 + off[1], size / 2 + off[0]
    s = 100 * scale
    pts = [(cx - s * 0.6, cy - s), (cx + s * 0.6, cy - s), (cx - s * 0.1, cy + s)]
    d.line(pts, fill=(255, 255, 255, 255), width=max(2, int(width * scale)), joint="curve")
    return np.asarray(img)


def com(img):
    ys, xs = np.mgrid[0:28, 0:28]
    return (ys * img).sum() / img.sum(), (xs * img).sum() / img.sum()


def test_same_digit_offcentre_small_large_gives_same_input():
    ref = prepare_canvas(stroke_seven()).image28
    for kw in (dict(off=(-25, 60)), dict(off=(20, -65)), dict(scale=0.45), dict(scale=1.2),
               dict(scale=0.45, off=(80, -80))):
        got = prepare_canvas(stroke_seven(**kw)).image28
        assert np.abs(got - ref).mean() < 0.05, kw
        assert max(abs(a - b) for a, b in zip(com(got), com(ref))) < 1.0


def test_box_and_centre_of_mass_like_mnist():
    p = prepare_canvas(stroke_seven(scale=0.5, off=(90, 90)))
    rows, cols = np.where(p.image28 > 0.1)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # fits the 20x20 box
    cy, cx = com(p.image28)
    assert abs(cy - 14.0) < 1 and abs(cx - 14.0) < 1
    assert p.tensor.shape == (1, 1, 28, 28)
    assert p.tensor.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_thin_and_thick_strokes_both_recognisable():
    thin = prepare_canvas(stroke_seven(width=6)).image28
    thick = prepare_canvas(stroke_seven(width=30)).image28
    assert thin.max() > 0.5 and thick.max() > 0.9
    assert np.corrcoef(thin.ravel(), thick.ravel())[0, 1] > 0.6


def test_blank_and_nearly_blank_detected():
    assert prepare_canvas(np.zeros((280, 280, 4), np.uint8)).blank
    speck = np.zeros((280, 280, 4), np.uint8)
    speck[100:102, 100:103] = 255
    assert prepare_canvas(speck).blank
    transparent_white = np.full((280, 280, 4), 255, np.uint8)
    transparent_white[..., 3] = 0  # white pixels but fully transparent: no ink
    assert prepare_canvas(transparent_white).blank


def _png(arr, mode=None):
    buf = io.BytesIO()
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_dark_on_light_and_light_on_dark_agree():
    _, test = load_mnist()
    digit = test.images[0].numpy()
    big = np.asarray(Image.fromarray(digit).resize((600, 600)))
    light_on_dark = load_upload(_png(big)).image28
    dark_on_light = load_upload(_png(255 - big)).image28
    assert np.abs(light_on_dark - dark_on_light).mean() < 0.02
    jpg = io.BytesIO()
    Image.fromarray(255 - big).save(jpg, format="JPEG", quality=85)
    assert np.abs(load_upload(jpg.getvalue()).image28 - light_on_dark).mean() < 0.05


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "RGB", "1"])
def test_upload_modes(mode):
    arr = stroke_seven()[..., :3]
    p = load_upload(_png(arr, mode))
    assert not p.blank and p.tensor.shape == (1, 1, 28, 28)


def test_upload_bad_inputs_have_clear_messages():
    with pytest.raises(ImageError, match="empty"):
        load_upload(b"")
    with pytest.raises(ImageError, match="not a readable PNG/JPEG"):
        load_upload(b"%PDF-1.4 definitely not an image")
    with pytest.raises(ImageError, match="limit is 5 MiB"):
        load_upload(b"\x89PNG" + b"0" * MAX_UPLOAD_BYTES)
    tiny = load_upload(_png(np.full((1, 1), 255, np.uint8)))
    assert tiny.blank


def test_decompression_bomb_refused():
    # a 10,000 x 10,000 PNG compresses to a few kB but would decode to 100 MP
    buf = io.BytesIO()
    Image.new("L", (10_000, 10_000), 0).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < MAX_UPLOAD_BYTES
    with pytest.raises(ImageError, match="10000 x 10000 pixels; the limit is"):
        load_upload(buf.getvalue())


def test_prepare_grey_rejects_bad_shapes():
    with pytest.raises(ImageError, match="2-D grey image"):
        prepare_grey(np.zeros((3, 3, 3)))


def test_rendered_mnist_digits_survive_the_pipeline():
    """Real test digits painted on a 280 px canvas come back close to the original 28x28."""
    _, test = load_mnist()
    corr = []
    for i in range(50):
        orig = test.images[i].numpy() / 255.0
        got = prepare_canvas(render_digit_on_canvas(test.images[i].numpy(), scale=0.7, offset=(20, -30))).image28
        corr.append(np.corrcoef(got.ravel(), orig.ravel())[0, 1])
    assert np.median(corr) > 0.9 and min(corr) > 0.6, (np.median(corr), min(corr))
