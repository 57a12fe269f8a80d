"""The pen canvas's browser assets (odenet.app.web) without a browser: preprocess.js computes what
prepare_canvas does (run in node), the drawing helpers, and the vendored onnxruntime-web files
are the pinned release's.  The real-browser tests are tests/browser/test_web_component.py."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from odenet.app.web import ASSET_DIR, drawing_image, drawing_tensor
from odenet.data.preprocess import render_digit_on_canvas
from tests.support.reference import python_u8

NODE = shutil.which("node")

NODE_HARNESS = """
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [mod, inPath, outPath, w, h] = process.argv.slice(2);
const { prepareCanvas } = await import(pathToFileURL(mod).href);
const W = +w, H = +h, buf = readFileSync(inPath), n = buf.length / (W * H * 4), out = new Uint8Array(n * 785);
for (let i = 0; i < n; i++) {
  const r = prepareCanvas(buf.subarray(i * W * H * 4, (i + 1) * W * H * 4), W, H, {});
  out[i * 785] = r.blank ? 1 : 0;
  out.set(r.u8, i * 785 + 1);
}
writeFileSync(outPath, out);
"""


def torch_width1_bug(rgba: np.ndarray) -> bool:
    """torch 2.14's antialiased bilinear resize returns row 0 everywhere when the output is 1 px wide;
    the JS port computes the real filter, so such (needle-thin) crops are left out of the comparison."""
    arr = rgba.astype(np.float32) / 255
    grey = (arr[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)) * arr[..., 3]
    rows, cols = np.where(grey > 0.1)
    if rows.size == 0:
        return False
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    return max(1, round(w * 20.0 / max(h, w))) == 1 and h > 1


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_preprocess_matches_prepare_canvas(tmp_path):
    """preprocess.js == prepare_canvas to the grey level on MNIST digits painted at many sizes and
    places, random pen strokes (PIL), transparent and coloured ink."""
    from PIL import Image, ImageDraw

    from odenet.data.mnist import load_mnist

    _, test = load_mnist()
    rng = np.random.default_rng(0)
    canvases = []
    for i in range(40):
        canvases.append(render_digit_on_canvas(test.images[i].numpy(), 280, offset=tuple(rng.integers(-60, 60, 2)),
                                               scale=float(rng.uniform(0.3, 1.2))))
    for _ in range(40):
        im = Image.new("RGBA", (280, 280), (0, 0, 0, int(rng.choice([0, 255]))))
        pts = [tuple(rng.integers(0, 280, 2).tolist()) for _ in range(int(rng.integers(1, 8)))]
        colour = (255, 255, 255, 255) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(60, 256, 4))
        ImageDraw.Draw(im).line(pts, fill=colour, width=int(rng.integers(2, 30)), joint="curve")
        canvases.append(np.asarray(im))
    canvases.append(np.zeros((280, 280, 4), np.uint8))  # blank
    canvases = [c for c in canvases if not torch_width1_bug(c)]
    batch = tmp_path / "canvases.bin"
    np.stack(canvases).astype(np.uint8).tofile(batch)
    (tmp_path / "harness.mjs").write_text(NODE_HARNESS)
    subprocess.run([NODE, str(tmp_path / "harness.mjs"), str(ASSET_DIR / "preprocess.js"), str(batch),
                    str(tmp_path / "out.bin"), "280", "280"], check=True, timeout=60)
    out = np.fromfile(tmp_path / "out.bin", np.uint8).reshape(len(canvases), 785)
    for i, rgba in enumerate(canvases):
        blank, ref = python_u8(rgba)
        assert bool(out[i, 0]) == blank, i
        if not blank:
            assert np.abs(out[i, 1:].astype(np.int64) - ref.ravel()).max() == 0, i


def test_drawing_helpers():
    assert drawing_image(None) is None
    assert drawing_image({"blank": True, "image28": [0] * 784}) is None
    img = np.zeros((28, 28), np.uint8)
    img[10:18, 12:15] = 255
    t = drawing_tensor({"blank": False, "image28": img.ravel().tolist()})
    assert t.shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="784"):
        drawing_image({"blank": False, "image28": [1, 2, 3]})


def test_vendored_runtime_matches_its_manifest():
    """The shipped files hash to vendor/VERSION.json, and the gzip-compressed wasm inflates to the
    pinned onnxruntime-web release's wasm (its sha256 before compression), a wasm module."""
    import gzip
    import hashlib

    vendor = ASSET_DIR / "vendor"
    manifest = json.loads((vendor / "VERSION.json").read_text())
    assert set(manifest["files"]) == {"ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm.gz"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    packed = (vendor / "ort-wasm-simd-threaded.wasm.gz").read_bytes()
    wasm = gzip.decompress(packed)
    assert wasm[:4] == b"\0asm"
    # onnxruntime-web 1.30.0's own ort-wasm-simd-threaded.wasm (npm), not just what the build wrote down
    release = "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2"
    assert hashlib.sha256(wasm).hexdigest() == manifest["uncompressed"]["ort-wasm-simd-threaded.wasm"] == release
    assert len(packed) < 0.3 * len(wasm)  # what the compression is for: 3.7 of 14.2 MB per visitor
