"""Does an input look like a handwritten digit?  The Draw page's one check, for pen drawings and uploads.

``check_digit(model, image)`` looks at the preprocessed 28x28 the model sees (the pen canvas's
pen-up ``image28`` or an upload's :class:`~odenet.data.preprocess.Prepared`) in two ways:

* **Ink statistics** of the picture (white ink > 0.5 on black; the digit fills a 20 px box):
  ``stroke_radius``, the largest distance from an ink pixel to the background (MNIST strokes:
  1-3 px; a dot scaled up into a filled disc: ~9); ``thick_fraction``, the share of ink at
  least 2.5 px from the background; ``ends`` (stroke ends of the one-pixel skeleton: an
  asterisk has 6-8, digits 0-4); ``holes`` (closed background regions: digits 0-2,
  '#'-hatching many); ``components``; ``grey`` (inked pixels that are neither background nor
  full ink, as :func:`odenet.inspect.analysis.ood_score`).
* **The model's own view**: the Mahalanobis distance of the pooled final hidden state h(t1)
  (C,) to the nearest class mean (class means and one shared covariance fitted once per model
  on MNIST training images, cached), divided by that distance's 99th percentile on other
  training images: ``distance`` 1.0 means "as far as the 1 % most unusual training digits".

A picture is flagged (:func:`decide`, thresholds in :class:`Thresholds`) when

1. its ink is a filled disc or blob (stroke radius >= 4 px and 30 % of the ink that thick),
   whatever the model says; or
2. ``distance`` >= 0.75 and the ink is thick, or has 6+ stroke ends, or 3+ holes; or
3. ``distance`` >= 1.0 and it has 4+ stroke ends or 2+ holes; or
4. ``distance`` >= 1.4, whatever the shape.

The shape statistics alone misfire on unusual digits (bold MNIST strokes, a '4' with
overshoots); the distance alone misses a dot with rk4_1step and euler_1step (distance ~0.9-1.0)
and puts some typed '1's with a foot beyond 1.4 with rk4_kinetic: each needs
the other.  Thresholds were calibrated and the rates
measured by ``benchmarks/app/digit_check.py`` (``docs/digit_check.md``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from odenet.errors import OdenetError

__all__ = ["DigitCheck", "DigitCheckError", "DigitStats", "InkStats", "Thresholds", "THRESHOLDS", "check_digit",
           "decide", "digit_distance", "digit_stats", "ink_stats", "is_dot", "render_strokes", "warm_digit_stats"]

_N8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
INK = 0.5  # grey level counted as ink for the shape statistics


class DigitCheckError(OdenetError, ValueError):
    """The input of :func:`check_digit` is not a 28x28 picture; the message says what it got."""


@dataclass(frozen=True)
class Thresholds:
    """When :func:`decide` warns.  ``distance`` is in units of the 99th percentile of training
    digits (see :func:`digit_distance`); radii in pixels of the 28x28 picture."""

    blob_radius: float = 4.0  # stroke_radius >= this: ink 8+ px wide in a 20 px digit ...
    blob_fraction: float = 0.3  # ... and this share of the ink that thick: a filled dot or blob
    far: float = 1.4  # distance >= far: unlike any digit, whatever the shape
    near: float = 1.0  # distance >= near together with one of the shape reasons below
    gate: float = 0.75  # distance >= gate for the shape-only reasons (thick ink, 6+ ends, 3+ holes)
    many_ends: int = 6  # asterisk: 6+ stroke ends
    many_holes: int = 3  # hatching, '#' drawn large, a star: 3+ enclosed background regions
    some_ends: int = 4  # with distance >= near
    some_holes: int = 2  # with distance >= near


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class InkStats:
    """Shape statistics of a preprocessed 28x28 picture (see the module docstring)."""

    ink: float  # ink pixels / 400 (the 20x20 box the digit is scaled into)
    stroke_radius: float  # px
    thick_fraction: float
    ends: int
    holes: int
    components: int
    grey: float
    roundness: float  # ink / area of the ellipse inscribed in the ink's bounding box (a disc: ~1)


@dataclass(frozen=True)
class DigitCheck:
    """The verdict: ``looks_like_digit``; ``reason`` in plain words ("" for a digit, else e.g.
    "a single dot", "a filled blob", "a scribble", "an asterisk or star", "crossing lines");
    ``scores``: the numbers it was decided on (``distance`` and the :class:`InkStats` fields)."""

    looks_like_digit: bool
    reason: str
    scores: dict[str, float]

    @property
    def message(self) -> str:
        """One sentence for the page ("" when the input looks like a digit)."""
        if self.looks_like_digit:
            return ""
        return (f"This does not look like a digit: it looks like {self.reason}. The model answers anyway; "
                "do not trust its confidence.")


# -- drawing strokes like the pen canvas ---------------------------------------------------------
def render_strokes(strokes: list, size: int = 280, pen_width: float = 20, supersample: int = 4) -> np.ndarray:
    """Polylines (lists of (x, y) canvas points) -> (size, size, 4) uint8 RGBA, white ink on black,
    drawn as odenet/app/web/assets/pen_canvas.js draws (round caps and joins; a lone point is a disc
    of the pen's width), antialiased by drawing ``supersample`` times larger and averaging."""
    s = supersample
    img = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(img)
    r = pen_width * s / 2
    for stroke in strokes:
        pts = [(float(x) * s, float(y) * s) for x, y in stroke]
        if len(pts) > 1:
            draw.line(pts, fill=255, width=max(1, round(pen_width * s)))
        for x, y in pts:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    grey = np.asarray(img.resize((size, size), Image.Resampling.BOX))  # (size, size)
    rgba = np.empty((size, size, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    return rgba


# -- ink statistics ----------------------------------------------------------------------------
def _shifted(b: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours N, NE, E, SE, S, SW, W, NW of every pixel of (H, W) ``b`` (zero outside)."""
    p = np.pad(b, 1)
    h, w = b.shape
    return [p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
            for dr, dc in ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: boolean (H, W) -> its one-pixel-wide skeleton (H, W)."""
    b = mask.astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = _shifted(b)
            count = sum(n)
            trans = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0) if step == 0 else \
                (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            kill = (b == 1) & (count >= 2) & (count <= 6) & (trans == 1) & side
            if kill.any():
                b[kill] = 0
                changed = True
    return b.astype(bool)


def _count_components(mask: np.ndarray, min_size: int = 1) -> int:
    """8-connected components of a boolean (H, W) mask with at least ``min_size`` pixels."""
    h, w = mask.shape
    seen = ~mask.copy()
    count = 0
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        q, size = deque([(int(r0), int(c0))]), 0
        while q:
            r, c = q.popleft()
            size += 1
            for dr, dc in _N8:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and not seen[rr, cc]:
                    seen[rr, cc] = True
                    q.append((rr, cc))
        count += size >= min_size
    return count


def _enclosed(ink: np.ndarray) -> np.ndarray:
    """Background pixels (H, W) not 4-connected to the border: the insides of loops."""
    bg = ~ink
    outside = np.zeros_like(bg)
    outside[0, :], outside[-1, :], outside[:, 0], outside[:, -1] = bg[0, :], bg[-1, :], bg[:, 0], bg[:, -1]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= bg
        if (grown == outside).all():
            return bg & ~outside
        outside = grown


def _radius(ink: np.ndarray) -> np.ndarray:
    """Euclidean distance (H, W) of each ink pixel to the nearest background pixel (outside counts)."""
    pad = np.pad(ink, 1)
    fg = np.argwhere(pad).astype(np.float32)  # (I, 2)
    bg = np.argwhere(~pad).astype(np.float32)  # (B, 2)
    out = np.zeros(ink.shape, np.float32)
    if len(fg):
        d2 = ((fg[:, None, :] - bg[None, :, :]) ** 2).sum(-1).min(1)  # (I,)
        out[fg[:, 0].astype(int) - 1, fg[:, 1].astype(int) - 1] = np.sqrt(d2)
    return out


def ink_stats(image28: np.ndarray) -> InkStats:
    """:class:`InkStats` of a preprocessed (28, 28) picture in 0..1, white ink on black."""
    img = np.asarray(image28, np.float32)
    ink = img > INK
    n = int(ink.sum())
    inked = img > 0.1
    grey = float((inked & (img < 0.9)).sum()) / max(1, int(inked.sum()))
    if n == 0:
        return InkStats(0.0, 0.0, 0.0, 0, 0, 0, grey, 0.0)
    radius = _radius(ink)
    skel = _thin(ink)
    nbrs = sum(s.astype(np.int8) for s in _shifted(skel))
    ends = int((skel & (nbrs == 1)).sum())
    holes = _count_components(_enclosed(ink), min_size=2)
    rows, cols = np.nonzero(ink)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return InkStats(ink=n / 400.0, stroke_radius=float(radius.max()), thick_fraction=float((radius >= 2.5).sum()) / n,
                    ends=ends, holes=holes, components=_count_components(img > 0.3, min_size=4), grey=grey,
                    roundness=float(n / (np.pi / 4 * box)))


# -- the model's view --------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitStats:
    """Pooled-state statistics of one model: class means (K, C), the shared covariance's inverse
    (C, C), and ``scale``, the 99th percentile of the distance on held-out training digits."""

    means: torch.Tensor
    precision: torch.Tensor
    scale: float
    fit_seconds: float


_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()
FIT_IMAGES, HELD_OUT_IMAGES = 3000, 1000


@torch.no_grad()
def _pooled(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) normalised -> (N, C) final hidden state h(t1), averaged over space (float64)."""
    h = model.solve(model.features(x.to(next(model.parameters()).device))).y  # (N, C, 6, 6), training solver
    return h.mean((2, 3)).double().cpu()


def _raw_distance(means: torch.Tensor, precision: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance (N,) of pooled states z (N, C) to the nearest class mean (means: (K, C))."""
    d = z[:, None, :] - means[None]  # (N, K, C)
    return torch.einsum("nkc,cd,nkd->nk", d, precision, d).min(1).values.clamp_min(0).sqrt()


@torch.no_grad()
def _fit(model: torch.nn.Module) -> DigitStats:
    import time

    from odenet.data.mnist import load_mnist, normalize

    start = time.perf_counter()
    train, _ = load_mnist()
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:FIT_IMAGES + HELD_OUT_IMAGES]
    z = torch.cat([_pooled(model, normalize(train.images[idx[i:i + 500]])) for i in range(0, len(idx), 500)])
    y = train.labels[idx]
    zf, yf = z[:FIT_IMAGES], y[:FIT_IMAGES]  # (F, C), (F,)
    classes = int(yf.max()) + 1
    means = torch.stack([zf[yf == k].mean(0) for k in range(classes)])  # (K, C)
    centred = zf - means[yf]
    cov = centred.T @ centred / len(zf) + 1e-6 * torch.eye(z.shape[1], dtype=z.dtype)
    precision = torch.linalg.inv(cov)
    scale = float(torch.quantile(_raw_distance(means, precision, z[FIT_IMAGES:]), 0.99))
    return DigitStats(means, precision, scale, time.perf_counter() - start)


def digit_stats(model: torch.nn.Module) -> DigitStats:
    """The model's :class:`DigitStats`, fitted on first use (3,000 + 1,000 MNIST training images,
    a few seconds on a CPU) and cached for the life of the model object (thread-safe).  Call it
    where the model is loaded to keep the cost off the first check."""
    with _STATS_LOCK:
        st = _STATS.get(model)
        if st is None:
            st = _STATS[model] = _fit(model)
        return st


_WARMING: dict[int, threading.Thread] = {}  # id(model) -> its fitting thread (one per model, while it runs)


def warm_digit_stats(model: torch.nn.Module) -> threading.Thread:
    """Fit :func:`digit_stats` in a background thread (one per model at a time), so the first
    check after a page shows the model does not wait for it.

    The thread is not a daemon (said explicitly: a thread inherits a daemon creator's flag, and
    Streamlit runs pages in daemon threads): an interpreter that exits meanwhile waits the few seconds for it
    instead of tearing torch down under a running fit (which aborts the process, exit 134)."""
    with _STATS_LOCK:
        th = _WARMING.get(id(model))
        if th is not None and th.is_alive():
            return th
        th = threading.Thread(target=digit_stats, args=(model,), name="odenet-digit-stats", daemon=False)
        _WARMING[id(model)] = th
        th.start()
        return th


@torch.no_grad()
def digit_distance(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) normalised inputs -> (N,) distance to the nearest digit class in the model's
    pooled final state, in units of its 99th percentile on training digits."""
    st = digit_stats(model)
    return (_raw_distance(st.means, st.precision, _pooled(model, x)) / st.scale).numpy()


# -- the decision ----------------------------------------------------------------------------
def _describe(ink: InkStats, dot: bool | None, t: Thresholds) -> str:
    """Plain words for what a flagged picture looks like instead (``dot``: the raw ink was at most
    two pen widths across; None: unknown)."""
    if ink.ink == 0 or ink.grey >= 0.85:
        return "noise or a grey blur"
    if ink.stroke_radius >= t.blob_radius and ink.thick_fraction >= t.blob_fraction:
        if ink.components >= 2:
            return "a few dots or blobs"
        if dot:
            return "a single dot"
        return "a dot or a filled blob" if dot is None and ink.roundness >= 0.85 else "a filled blob"
    if ink.components >= 3:
        return "scattered marks"
    if ink.ends >= t.some_ends and ink.holes == 0:
        return "an asterisk or star"
    if ink.ends >= t.some_ends or ink.holes >= t.some_holes:
        return "crossing lines"
    if ink.stroke_radius >= t.blob_radius:
        return "a scribble"
    return "a shape unlike the digits the model learned"


def decide(ink: InkStats, distance: float, t: Thresholds = THRESHOLDS, dot: bool | None = None) -> tuple[bool, str]:
    """(looks like a digit, reason) from the ink statistics and the model distance (a pure function;
    ``dot`` as in :func:`_describe`, for the wording only)."""
    thick = ink.stroke_radius >= t.blob_radius
    flagged = (
        (thick and ink.thick_fraction >= t.blob_fraction)  # a filled disc or blob, whatever the model says
        or (distance >= t.gate and (thick or ink.ends >= t.many_ends or ink.holes >= t.many_holes))
        or (distance >= t.near and (ink.ends >= t.some_ends or ink.holes >= t.some_holes))
        or distance >= t.far
    )
    return (False, _describe(ink, dot, t)) if flagged else (True, "")


def _as_picture(image: object) -> tuple[np.ndarray, torch.Tensor | None]:
    """A Prepared, or a (28, 28) / (1, 28, 28) / (1, 1, 28, 28) array or tensor (0..1 floats or
    0..255) -> the picture (28, 28) float32 in 0..1 and the Prepared's model input if there is one."""
    tensor = getattr(image, "tensor", None)
    if hasattr(image, "image28"):
        image = image.image28
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    try:
        arr = np.asarray(image)
    except Exception as exc:  # noqa: BLE001 - ragged lists and the like
        raise DigitCheckError(f"expected a 28x28 picture or a Prepared, got {type(image).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DigitCheckError(f"expected a 28x28 picture of numbers, got dtype {arr.dtype}")
    if arr.size != 784 or arr.shape[-2:] != (28, 28) or any(s != 1 for s in arr.shape[:-2]):
        raise DigitCheckError(f"expected a 28x28 picture (the preprocessed input), got shape {arr.shape}")
    pic = arr.reshape(28, 28).astype(np.float32)
    if not np.isfinite(pic).all():
        raise DigitCheckError("the picture holds NaN or infinite values")
    if pic.min() < 0 or pic.max() > 255:
        raise DigitCheckError(f"picture values must lie in 0..1 (or 0..255), got {pic.min():g}..{pic.max():g}")
    if arr.dtype == np.uint8 or pic.max() > 1.0:
        pic = pic / 255.0
    return pic, tensor


def is_dot(strokes: list | None, pen_width: float = 20.0) -> bool | None:
    """Whether pen-canvas ``strokes`` (lists of (x, y) points) cover at most two pen widths across:
    a click or a twitch, which preprocessing scales up into a filled disc.  None without strokes."""
    pts = [p for s in strokes or [] for p in s]
    if not pts:
        return None
    try:
        xy = np.asarray(pts, dtype=np.float64)  # (P, 2)
    except (TypeError, ValueError) as exc:
        raise DigitCheckError("strokes must be lists of (x, y) points") from exc
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise DigitCheckError(f"strokes must be lists of (x, y) points, got points of shape {xy.shape[1:]}")
    return float((xy.max(0) - xy.min(0)).max()) + pen_width <= 2 * pen_width


def _scores(distance: float, ink: InkStats) -> dict[str, float]:
    return {"distance": float(distance), **{k: float(v) for k, v in asdict(ink).items()}}


def check_digit(model: torch.nn.Module, image: object, *, strokes: list | None = None, pen_width: float = 20.0,
                thresholds: Thresholds = THRESHOLDS, threads: int | None = 1) -> DigitCheck:
    """Does ``image`` look like a handwritten digit to ``model``?

    ``image``: an upload's / canvas's :class:`~odenet.data.preprocess.Prepared`, or the preprocessed
    28x28 picture (uint8 0..255 as the pen canvas sends it, or floats 0..1).  ``strokes`` and
    ``pen_width`` (the pen canvas's, optional) only sharpen the wording: with them a click reads
    "a single dot" rather than "a dot or a filled blob".  A blank picture does not look like a
    digit (reason "an empty picture").  ``threads=1`` as in :func:`odenet.inspect.analysis.predict` (None
    keeps torch's setting).  Raises :class:`DigitCheckError` for anything that is not a 28x28
    picture.
    """
    from odenet.data.mnist import normalize
    from odenet.utils import torch_threads

    if model.training:
        raise DigitCheckError("check_digit needs the model in eval mode (as odenet.load_model returns it)")
    pic, x = _as_picture(image)
    dot = is_dot(strokes, pen_width)
    ink = ink_stats(pic)
    if not (pic > 0.1).any():
        return DigitCheck(False, "an empty picture", _scores(0.0, ink))
    stats = digit_stats(model)  # fitted once per model, with all threads
    if x is None:
        x = normalize(torch.from_numpy(np.rint(pic * 255).astype(np.uint8))[None])  # as prepare_grey does
    with torch_threads(threads) if threads else contextlib.nullcontext():
        z = _pooled(model, x)  # (1, C)
    distance = float(_raw_distance(stats.means, stats.precision, z)[0]) / stats.scale
    ok, reason = decide(ink, distance, thresholds, dot=dot)
    return DigitCheck(ok, reason, _scores(distance, ink))
