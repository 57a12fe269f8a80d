"""Calibrate ``odenet.analysis.ood_score`` on MNIST test digits vs noise uploads.

Every input goes through the app's own preprocessing (``prepare_grey`` for MNIST test images,
``load_upload`` for noise PNGs of four kinds: uniform RGB, binary, Gaussian, random squares).
Prints score quantiles and the rates at ``OOD_THRESHOLD``.

    python benchmarks/ood_calibration.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odenet.analysis import OOD_THRESHOLD, ood_score  # noqa: E402
from odenet.data import load_mnist  # noqa: E402
from odenet.preprocess import load_upload, prepare_grey  # noqa: E402

KINDS = ("uniform", "binary", "gaussian", "squares")


def noise_png(kind: str, rng: np.random.Generator) -> bytes:
    """A PNG of one kind of noise."""
    if kind == "uniform":
        a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    elif kind == "binary":
        a = (rng.random((100, 100, 3)) > 0.5).astype(np.uint8) * 255
    elif kind == "gaussian":
        a = np.clip(rng.normal(128, 60, (50, 80, 3)), 0, 255).astype(np.uint8)
    else:
        a = np.zeros((80, 80, 3), np.uint8)
        for _ in range(20):
            x0, y0 = rng.integers(0, 70, 2)
            a[y0:y0 + 10, x0:x0 + 10] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    _, test = load_mnist()
    mnist = np.array([ood_score(prepare_grey(test.images[i].float().numpy() / 255.0).image28)
                      for i in range(len(test))])
    q = np.quantile(mnist, [0, 0.5, 0.995, 1]).round(3).tolist()
    print(f"MNIST test ({len(mnist)}): quantiles 0/50/99.5/100% = {q}; "
          f"flagged {100 * (mnist > OOD_THRESHOLD).mean():.2f}%")
    rng = np.random.default_rng(0)
    for kind in KINDS:
        s = np.array([ood_score(load_upload(noise_png(kind, rng)).image28) for _ in range(100)])
        print(f"{kind:>8} noise (100): median {np.median(s):.3f}; flagged {100 * (s > OOD_THRESHOLD).mean():.0f}%")


if __name__ == "__main__":
    main()
