"""Turn a drawing or an uploaded picture into what the model saw in training.

MNIST's own recipe: grey levels, crop to the ink's bounding box, scale the longer side to
20 px keeping the aspect ratio, paste into 28x28 so the centre of mass sits at the
centre, then normalise with the training mean/std.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from odenet.data.mnist import normalize
from odenet.errors import OdenetError

__all__ = ["ImageError", "Prepared", "prepare_canvas", "prepare_grey", "load_upload", "MAX_UPLOAD_BYTES",
           "MAX_UPLOAD_PIXELS", "render_digit_on_canvas"]

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # decoded pixels; above this is refused before decoding
INK_THRESHOLD = 0.1  # grey level (0..1) counted as ink
MIN_INK_PIXELS = 12  # fewer ink pixels than this is a blank canvas


class ImageError(OdenetError, ValueError):
    """An uploaded file is not a usable image; the message says why."""


@dataclass
class Prepared:
    """``tensor``: (1, 1, 28, 28) normalised model input (None if blank); ``image28``: the
    28x28 grey picture (0..1) the model sees; ``blank``: no meaningful ink found."""

    tensor: torch.Tensor | None
    image28: np.ndarray
    blank: bool


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    # antialias keeps thin strokes visible when shrinking a 280 px canvas to 20 px
    out = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp(0, 1).numpy()


def prepare_grey(grey: np.ndarray) -> Prepared:
    """Light-on-dark grey image (H, W) in 0..1 -> MNIST-style 28x28 (see module docstring)."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or grey.size == 0:
        raise ImageError(f"expected a 2-D grey image, got shape {grey.shape}")
    ink = grey > INK_THRESHOLD
    if int(ink.sum()) < MIN_INK_PIXELS * max(1.0, grey.size / 78_400):
        return Prepared(None, np.zeros((28, 28), np.float32), True)
    rows, cols = np.where(ink)
    crop = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize(crop, nh, nw)
    canvas = np.zeros((28, 28), np.float32)
    top, left = (28 - nh) // 2, (28 - nw) // 2
    canvas[top:top + nh, left:left + nw] = small
    # shift so the centre of mass is at the image centre (as MNIST did)
    mass = canvas.sum()
    ys, xs = np.mgrid[0:28, 0:28]
    cy, cx = (ys * canvas).sum() / mass, (xs * canvas).sum() / mass
    dy, dx = int(round(14.0 - cy)), int(round(14.0 - cx))  # MNIST digits have their mass at (14, 14)
    dy = int(np.clip(dy, -top, 28 - (top + nh)))
    dx = int(np.clip(dx, -left, 28 - (left + nw)))
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))
    u8 = torch.from_numpy(np.rint(canvas * 255).astype(np.uint8))[None, None]
    return Prepared(normalize(u8), canvas, False)


def prepare_canvas(rgba: np.ndarray) -> Prepared:
    """Canvas image data (H, W, 4) uint8 or float, white ink on black/transparent -> model input."""
    arr = np.asarray(rgba)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected canvas data of shape (H, W, 4), got {arr.shape}")
    arr = arr.astype(np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    grey = arr[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.shape[2] == 4:
        grey = grey * arr[..., 3]  # transparent pixels carry no ink
    return prepare_grey(grey)


def _open_image(data: bytes) -> Image.Image:
    """Lazy open (header only); PIL's bomb warning is silenced because we check the size ourselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def load_upload(data: bytes) -> Prepared:
    """An uploaded PNG/JPEG (any size, dark-on-light or light-on-dark) -> model input.

    Refuses empty, oversized, non-image and decompression-bomb files with a clear message.
    """
    if not data:
        raise ImageError("the uploaded file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"the uploaded file is {len(data) / 2**20:.1f} MiB; the limit is "
                         f"{MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        with _open_image(data) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ImageError(f"the image is {w} x {h} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels")
            im.draft("L", (max(28, w // 8), max(28, h // 8)))  # JPEG: decode at reduced size
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                alpha = np.asarray(rgba)[..., 3]
                # transparent background: composite on the colour opposite to the ink
                ink_dark = np.asarray(rgba.convert("L"))[alpha > 127].mean() < 128 if (alpha > 127).any() else True
                if not ink_dark:
                    bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                grey_img = Image.alpha_composite(bg, rgba).convert("L")
            else:
                grey_img = im.convert("L")
            if max(grey_img.size) > 1024:
                grey_img.thumbnail((1024, 1024))
            grey = np.asarray(grey_img, dtype=np.float32) / 255.0
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the uploaded file is not a readable PNG/JPEG image ({type(exc).__name__})") from None
    # dark ink on a light background (paper, whiteboard) -> invert; decided by the border
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey, border = 1.0 - grey, 1.0 - border
    # lift a uniform background level (paper photos are never pure black after inversion) to 0
    bg = float(np.median(border))
    grey = np.clip((grey - bg) / max(1e-3, 1.0 - bg), 0.0, 1.0)
    return prepare_grey(grey)


def render_digit_on_canvas(image28: np.ndarray | torch.Tensor, size: int = 280, offset: tuple[int, int] = (0, 0),
                           scale: float = 1.0) -> np.ndarray:
    """Paint a 28x28 digit (0..255 or 0..1) as white ink on a black RGBA canvas of ``size``,
    optionally scaled and shifted: how the tests simulate drawing real MNIST digits."""
    img = torch.as_tensor(np.asarray(image28), dtype=torch.float32)
    if img.max() > 1:
        img = img / 255.0
    side = max(8, int(round(size * scale)))
    big = F.interpolate(img[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    canvas = torch.zeros(size, size)
    top = (size - side) // 2 + offset[0]
    left = (size - side) // 2 + offset[1]
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(size, top + side), min(size, left + side)
    canvas[t0:t1, l0:l1] = big[t0 - top:t1 - top, l0 - left:l1 - left]
    u8 = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = u8
    rgba[..., 3] = 255
    return rgba
