"""Measure ``odenet.inspect.digitcheck.check_digit``: how often it warns on digits and on non-digits.

Every input is made here and goes through the app's own preprocessing:

* pen drawings (``render_strokes`` draws polylines like the Draw page's pen canvas: 280 px,
  pen 20 px, round caps and joins) -> ``prepare_canvas``:
  handwritten-style digits 0-9 from stroke templates with random jitter, slant, rotation,
  size, aspect, pen width and position; and non-digits: single dots, small dots (tiny strokes),
  scribbles (random walks), asterisks and stars, crossings ('#', X-hatching, many crossing
  lines) and filled blobs (a shape coloured in with back-and-forth strokes);
* uploads -> ``load_upload``: digits 0-9 typed in bold TrueType fonts (black-on-white PNGs,
  font sizes 16-160 px and, as their own category, tiny 10-15 px ones that preprocessing
  blows up into a blur) and noise pictures of four kinds (uniform, binary, gaussian, squares);
* MNIST digits -> ``prepare_grey``.

The check's thresholds (``odenet.inspect.digitcheck.THRESHOLDS``) were chosen from the ``--calibrate``
grid (seed 1, MNIST training images the check's statistics were not fitted on); the report uses
seed 2 and MNIST test images.  Rates for all three shipped models, the model's accuracy on each
digit category, the old ``ood_score`` check's rates, and check_digit's time per input.

    OMP_NUM_THREADS=1 python benchmarks/app/digit_check.py              # report -> benchmarks/app/digit_check.json
    OMP_NUM_THREADS=1 python benchmarks/app/digit_check.py --calibrate  # threshold grid -> same file, "calibration"
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from odenet import load_model  # noqa: E402
from odenet.data.mnist import load_mnist, normalize  # noqa: E402
from odenet.data.preprocess import load_upload, prepare_canvas, prepare_grey  # noqa: E402
from odenet.inspect.analysis import OOD_THRESHOLD, ood_score  # noqa: E402
from odenet.inspect.digitcheck import (
    THRESHOLDS,
    Thresholds,
    check_digit,
    decide,
    digit_distance,
    digit_stats,
    ink_stats,
    is_dot,
    render_strokes,
)
from tests.support.machine import cpu_name  # noqa: E402

Stroke = list[tuple[float, float]]
SIZE, PEN = 280, 20  # the Draw page's canvas: odenet.app.web.pen_canvas(size=280, pen_width=20)
FONTS = [f"/usr/share/fonts/truetype/{p}" for p in (
    "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSerif-Bold.ttf", "dejavu/DejaVuSansMono-Bold.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf", "liberation/LiberationSans-Bold.ttf",
    "liberation/LiberationSerif-Bold.ttf", "liberation/LiberationMono-Bold.ttf")]


# -- digit stroke templates (unit box: x right, y down, height 1) ------------------------------
def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> Stroke:
    """Points of an elliptic arc from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


def _eight(n: int = 60) -> Stroke:
    t = np.linspace(0, 2 * math.pi, n)
    return list(zip(0.5 + 0.32 * np.sin(2 * t) * np.where(np.cos(t) > 0, 0.8, 1.0), 0.5 - 0.5 * np.cos(t)))


TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [[_arc(0.5, 0.5, 0.3, 0.5, -90, 275, 40)], [_arc(0.5, 0.5, 0.34, 0.5, -100, 260, 40)]],
    1: [[[(0.5, 0.0), (0.5, 1.0)]], [[(0.3, 0.18), (0.5, 0.0), (0.5, 1.0)]],
        [[(0.3, 0.18), (0.5, 0.0), (0.5, 1.0)], [(0.3, 1.0), (0.7, 1.0)]]],
    2: [[_arc(0.5, 0.3, 0.3, 0.3, 190, 390, 20) + [(0.15, 1.0), (0.85, 1.0)]],
        [_arc(0.5, 0.28, 0.32, 0.28, 180, 380, 20) + [(0.2, 0.95)] + _arc(0.55, 0.95, 0.3, 0.08, 200, 340, 8)]],
    3: [[_arc(0.5, 0.26, 0.28, 0.26, 200, 450, 20) + _arc(0.5, 0.74, 0.3, 0.26, -90, 160, 20)],
        [[(0.2, 0.0), (0.8, 0.0), (0.45, 0.4)] + _arc(0.5, 0.7, 0.3, 0.3, -80, 160, 20)]],
    4: [[[(0.65, 0.0), (0.1, 0.68), (0.9, 0.68)], [(0.65, 0.3), (0.65, 1.0)]],
        [[(0.2, 0.0), (0.15, 0.55), (0.85, 0.55)], [(0.7, 0.05), (0.7, 1.0)]]],
    5: [[[(0.8, 0.0), (0.25, 0.0), (0.2, 0.42)] + _arc(0.5, 0.68, 0.32, 0.3, -140, 150, 22)],
        [[(0.22, 0.0), (0.2, 0.42)] + _arc(0.5, 0.68, 0.32, 0.3, -140, 150, 22), [(0.22, 0.0), (0.8, 0.0)]]],
    6: [[_arc(0.9, 0.6, 0.65, 0.6, -110, -180, 12) + _arc(0.5, 0.72, 0.28, 0.28, 180, 540, 30)]],
    7: [[[(0.1, 0.0), (0.9, 0.0), (0.4, 1.0)]], [[(0.1, 0.0), (0.9, 0.0), (0.4, 1.0)], [(0.35, 0.5), (0.85, 0.5)]]],
    8: [[_eight()], [_arc(0.5, 0.25, 0.22, 0.25, 90, 450, 28), _arc(0.5, 0.73, 0.28, 0.27, -90, 270, 28)]],
    9: [[_arc(0.5, 0.28, 0.28, 0.28, 0, 370, 28) + [(0.72, 0.6), (0.68, 1.0)]],
        [_arc(0.5, 0.28, 0.28, 0.28, -20, 360, 28) + [(0.78, 0.3), (0.5, 1.0)]]],
}


def _place(strokes: list[Stroke], rng: np.random.Generator, height: float, slant: float = 0.0,
           rotate: float = 0.0, aspect: float = 1.0, jitter: float = 0.0) -> list[Stroke]:
    """Template strokes -> canvas points: slant, rotate, jitter (smooth), scale to ``height`` px,
    place at a random position inside the canvas."""
    out = []
    c, s = math.cos(rotate), math.sin(rotate)
    for st in strokes:
        p = np.asarray(st, float)
        if len(p) > 1:  # densify so the jitter bends the strokes smoothly
            seg = np.linspace(0, len(p) - 1, max(len(p), 30))
            p = np.stack([np.interp(seg, np.arange(len(p)), p[:, k]) for k in (0, 1)], 1)
        p = p - 0.5
        p[:, 0] = p[:, 0] * aspect - slant * p[:, 1]
        p = p @ np.array([[c, s], [-s, c]])
        if jitter:
            noise = rng.normal(0, jitter, (len(p), 2)).cumsum(0) / math.sqrt(len(p))
            p = p + (noise - noise.mean(0)) + rng.normal(0, jitter / 3, 2)
        out.append(p * height)
    allp = np.concatenate(out)
    lo, hi = allp.min(0), allp.max(0)
    margin = PEN
    off = [rng.uniform(margin - lo[k], max(margin - lo[k], SIZE - margin - hi[k])) for k in (0, 1)]
    return [[(float(x + off[0]), float(y + off[1])) for x, y in p] for p in out]


def pen_digit(d: int, rng: np.random.Generator) -> list[Stroke]:
    """A handwritten-style digit ``d`` as canvas strokes."""
    tpl = TEMPLATES[d][rng.integers(len(TEMPLATES[d]))]
    return _place(tpl, rng, height=rng.uniform(90, 240), slant=rng.uniform(-0.15, 0.45),
                  rotate=math.radians(rng.normal(0, 6)), aspect=rng.uniform(0.75, 1.3), jitter=rng.uniform(0.01, 0.05))


# -- non-digit strokes ---------------------------------------------------------------------------
def _pt(rng: np.random.Generator, margin: float = 40) -> tuple[float, float]:
    return float(rng.uniform(margin, SIZE - margin)), float(rng.uniform(margin, SIZE - margin))


def single_dot(rng: np.random.Generator) -> list[Stroke]:
    """One click: the canvas paints a disc of the pen's width."""
    return [[_pt(rng)]]


def small_dot(rng: np.random.Generator) -> list[Stroke]:
    """A tiny stroke (a twitch of the pen, up to ~1.5 pen widths long) or a few clicks close together."""
    x, y = _pt(rng)
    if rng.random() < 0.7:
        n = int(rng.integers(2, 6))
        return [[(x + float(a), y + float(b)) for a, b in rng.normal(0, 6, (n, 2)).cumsum(0)]]
    return [[(x + float(a), y + float(b))] for a, b in rng.normal(0, 8, (int(rng.integers(2, 4)), 2))]


def scribble(rng: np.random.Generator) -> list[Stroke]:
    """A random walk with momentum pulled back to its centre: loops and back-and-forth lines."""
    n = int(rng.integers(30, 90))
    half = rng.uniform(45, 110)
    centre = np.array(_pt(rng, half + 15))
    p, v, pts = centre.copy(), rng.normal(0, 1, 2), []
    for _ in range(n):
        v = 0.85 * v + rng.normal(0, 0.6, 2) + 0.5 * (centre - p) / half
        v = v / (np.linalg.norm(v) + 1e-9)
        p = np.clip(p + v * rng.uniform(8, 16), centre - half, centre + half)
        pts.append((float(p[0]), float(p[1])))
    return [pts]


def asterisk(rng: np.random.Generator) -> list[Stroke]:
    """3-4 lines through one centre (an asterisk), or a five-pointed star outline."""
    cx, cy = _pt(rng, 110)
    r = rng.uniform(60, 110)
    if rng.random() < 0.7:
        k = int(rng.integers(3, 5))
        a0 = rng.uniform(0, math.pi)
        out = []
        for i in range(k):
            a = a0 + i * math.pi / k + rng.normal(0, 0.08)
            r1, r2 = r * rng.uniform(0.8, 1.1), r * rng.uniform(0.8, 1.1)
            out.append([(cx - r1 * math.cos(a), cy - r1 * math.sin(a)), (cx + r2 * math.cos(a), cy + r2 * math.sin(a))])
        return out
    a0 = rng.uniform(0, 2 * math.pi)
    return [[(cx + r * math.cos(a0 + i * 4 * math.pi / 5), cy + r * math.sin(a0 + i * 4 * math.pi / 5))
             for i in range(6)]]


def crossing(rng: np.random.Generator) -> list[Stroke]:
    """'#', X-hatching (parallel lines both ways) or many random crossing lines."""
    kind = rng.integers(3)
    cx, cy = _pt(rng, 110)
    r = rng.uniform(70, 110)
    rot = rng.normal(0, 0.15) + (math.pi / 4 if kind == 1 else 0.0)
    c, s = math.cos(rot), math.sin(rot)

    def line(a: tuple[float, float], b: tuple[float, float]) -> Stroke:
        return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in (a, b)]
    if kind == 0:  # '#'
        g = r * rng.uniform(0.3, 0.45)
        return [line((-r, o), (r, o)) for o in (-g, g)] + [line((o, -r), (o, r)) for o in (-g, g)]
    if kind == 1:  # hatching: 3-5 lines each way
        k = int(rng.integers(3, 6))
        offs = np.linspace(-r * 0.7, r * 0.7, k)
        return [line((-r, o), (r, o)) for o in offs] + [line((o, -r), (o, r)) for o in offs]
    return [[_pt(rng, 25), _pt(rng, 25)] for _ in range(int(rng.integers(5, 10)))]


def filled_blob(rng: np.random.Generator) -> list[Stroke]:
    """An ellipse or a square coloured in with back-and-forth strokes."""
    cx, cy = _pt(rng, 100)
    rx, ry = rng.uniform(30, 90, 2)
    square = rng.random() < 0.3
    pts = []
    ys = np.arange(-ry, ry + 1, rng.uniform(8, 16))
    for i, y in enumerate(ys):
        half = rx if square else rx * math.sqrt(max(0.0, 1 - (y / ry) ** 2))
        xs = (-half, half) if i % 2 == 0 else (half, -half)
        pts += [(cx + xs[0], cy + y), (cx + xs[1], cy + y)]
    return [pts]


# -- uploads ------------------------------------------------------------------------------------
def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def typed_digit(d: int, font_path: str, px: int, rng: np.random.Generator | None = None) -> bytes:
    """Digit ``d`` typed in a TrueType font at ``px`` pixels, black on white, as PNG bytes."""
    font = ImageFont.truetype(font_path, px)
    w, h = int(px * 1.2) + 20, int(px * 1.5) + 20
    img = Image.new("L", (w, h), 255)
    ImageDraw.Draw(img).text((w // 2, h // 2), str(d), fill=0, font=font, anchor="mm")
    return _png(img)


def noise_png(kind: str, rng: np.random.Generator) -> bytes:
    """A noise picture of one kind: uniform, binary, gaussian or squares (the old check's calibration set)."""
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
    return _png(Image.fromarray(a))


NON_DIGITS: dict[str, Callable[[np.random.Generator], list[Stroke]]] = {
    "single dot": single_dot, "small dot": small_dot, "scribble": scribble, "asterisk/star": asterisk,
    "crossings": crossing, "filled blob": filled_blob,
}


def pen(strokes: list[Stroke], rng: np.random.Generator) -> tuple[np.ndarray, bool | None]:
    """Preprocessed 28x28 of canvas strokes (pen width 16-24 px, mostly the page's 20) and
    whether the strokes are a dot (:func:`odenet.inspect.digitcheck.is_dot`)."""
    width = PEN if rng.random() < 0.6 else float(rng.uniform(16, 24))
    return prepare_canvas(render_strokes(strokes, SIZE, width)).image28, is_dot(strokes, width)


@dataclass
class Category:
    """One set of inputs: preprocessed (28, 28) pictures, whether each is a dot
    (:func:`odenet.inspect.digitcheck.is_dot`, None: not a drawing) and the digit labels (None: not digits)."""

    is_digit: bool
    images: list[np.ndarray]
    dots: list[bool | None]
    labels: list[int] | None = None


def _drawn(pairs: list[tuple[np.ndarray, bool | None]], is_digit: bool, labels: list[int] | None = None) -> Category:
    return Category(is_digit, [p for p, _ in pairs], [d for _, d in pairs], labels)


def _typed(rng: np.random.Generator, lo: int, hi: int, per_digit: int) -> Category:
    """Bold typed digits, font sizes log-uniform in [lo, hi] px, as uploads."""
    items = [(load_upload(typed_digit(d, font, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))).image28, d)
             for font in FONTS if Path(font).exists() for d in range(10) for _ in range(per_digit)]
    return Category(True, [im for im, _ in items], [None] * len(items), [d for _, d in items])


def build_sets(seed: int, n_pen: int = 500, n_each: int = 100, n_mnist: int = 2000,
               mnist_split: str = "test") -> dict[str, Category]:
    """All categories, made with ``seed``.  MNIST train pictures avoid the images
    :func:`odenet.inspect.digitcheck.digit_stats` fits on."""
    from odenet.inspect.digitcheck import FIT_IMAGES, HELD_OUT_IMAGES

    rng = np.random.default_rng(seed)
    sets: dict[str, Category] = {}
    digits = [i % 10 for i in range(n_pen)]
    sets["pen digits"] = _drawn([pen(pen_digit(d, rng), rng) for d in digits], True, digits)
    train, test = load_mnist()
    if mnist_split == "test":
        split, pool = test, np.arange(len(test))
    else:
        used = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:FIT_IMAGES + HELD_OUT_IMAGES]
        split, pool = train, np.setdiff1d(np.arange(len(train)), used.numpy())
    idx = rng.choice(pool, n_mnist, replace=False)
    sets[f"MNIST {mnist_split}"] = Category(
        True, [prepare_grey(split.images[i].float().numpy() / 255.0).image28 for i in idx], [None] * n_mnist,
        [int(split.labels[i]) for i in idx])
    sets["typed digits 16-160 px (upload)"] = _typed(rng, 16, 160, 2)
    sets["tiny typed digits 10-15 px (upload)"] = _typed(rng, 10, 15, 1)
    for name, fn in NON_DIGITS.items():
        sets[name] = _drawn([pen(fn(rng), rng) for _ in range(n_each)], False)
    noise = [load_upload(noise_png(k, rng)).image28 for k in ("uniform", "binary", "gaussian", "squares")
             for _ in range(15)]
    sets["noise (upload)"] = Category(False, noise, [None] * len(noise))
    return sets


# -- evaluation ---------------------------------------------------------------------------------
MODELS = ("rk4_1step", "euler_1step", "rk4_kinetic")


def _u8(images: list[np.ndarray]) -> torch.Tensor:
    """list of (28, 28) 0..1 -> normalised (N, 1, 28, 28) model input, as prepare_grey makes it."""
    return normalize(torch.from_numpy(np.rint(np.stack(images) * 255).astype(np.uint8)))


def before(sets: dict[str, Category]) -> dict[str, float]:
    """Per category: the fraction the old check (``ood_score > OOD_THRESHOLD``) warned on."""
    return {name: round(float(np.mean([ood_score(im) > OOD_THRESHOLD for im in c.images])), 4)
            for name, c in sets.items()}


@torch.no_grad()
def score_sets(sets: dict[str, Category], models: dict[str, torch.nn.Module]) -> dict:
    """category -> dict(category, inks: ink stats, dist: {model: distances (N,)}, acc: {model: accuracy})."""
    out = {}
    for name, c in sets.items():
        inks = [ink_stats(im) for im in c.images]
        dist, acc = {}, {}
        for m, mod in models.items():
            dist[m] = np.concatenate([digit_distance(mod, _u8(c.images[i:i + 500]))
                                      for i in range(0, len(c.images), 500)])
            if c.labels is not None:
                pred = torch.cat([mod(_u8(c.images[i:i + 500])).argmax(-1) for i in range(0, len(c.images), 500)])
                acc[m] = round(float((pred == torch.tensor(c.labels)).double().mean()), 4)
        out[name] = dict(category=c, inks=inks, dist=dist, acc=acc)
    return out


def rates(scored: dict, model: str, t: Thresholds = THRESHOLDS) -> dict:
    """Per category: inputs, warned fraction, reasons given, the model's accuracy on digits; plus
    the pooled rates on non-digits and on digits."""
    table, pooled = {}, {True: [], False: []}
    for name, sc in scored.items():
        c = sc["category"]
        verdicts = [decide(ink, float(d), t, dot) for ink, d, dot in zip(sc["inks"], sc["dist"][model], c.dots)]
        warned = [not ok for ok, _ in verdicts]
        reasons: dict[str, int] = {}
        for ok, why in verdicts:
            if not ok:
                reasons[why] = reasons.get(why, 0) + 1
        table[name] = dict(digit=c.is_digit, n=len(warned), warned=round(float(np.mean(warned)), 4),
                           reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])))
        if model in sc["acc"]:
            table[name]["model_accuracy"] = sc["acc"][model]
        pooled[c.is_digit] += warned
    return dict(categories=table, non_digits_warned=round(float(np.mean(pooled[False])), 4),
                digits_warned=round(float(np.mean(pooled[True])), 4))


def timing(model: torch.nn.Module, images: list[np.ndarray]) -> dict:
    """Milliseconds per check_digit call on single inputs (one thread, stats already fitted)."""
    for im in images[:5]:
        check_digit(model, im)
    ms = []
    for im in images:
        t0 = time.perf_counter()
        check_digit(model, im)
        ms.append(1000 * (time.perf_counter() - t0))
    return dict(n=len(ms), median_ms=round(float(np.median(ms)), 2), p95_ms=round(float(np.quantile(ms, 0.95)), 2),
                max_ms=round(float(np.max(ms)), 2), load_average_1min=round(os.getloadavg()[0], 2))


def print_table(name: str, r: dict) -> None:
    print(f"\n{name}: non-digits warned {100 * r['non_digits_warned']:.1f}%, digits warned "
          f"{100 * r['digits_warned']:.1f}%")
    for cat, row in r["categories"].items():
        top = ", ".join(f"{k} {v}" for k, v in list(row["reasons"].items())[:3])
        acc = f" (model accuracy {100 * row['model_accuracy']:.1f}%)" if "model_accuracy" in row else ""
        print(f"  {'digit' if row['digit'] else 'other'} {cat:36} n={row['n']:5d} warned {100 * row['warned']:5.1f}%"
              f"{acc}  {top}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", action="store_true", help="seed 1 + MNIST train: print a threshold grid")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    models = {m: load_model(m) for m in MODELS}
    fit = {m: round(digit_stats(mod).fit_seconds, 2) for m, mod in models.items()}
    seed, split = (1, "train") if args.calibrate else (2, "test")
    sets = build_sets(seed, mnist_split=split)
    scored = score_sets(sets, models)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if args.calibrate:
        grid = []
        for far, near, gate in itertools.product((1.2, 1.3, 1.4), (0.9, 0.95, 1.0, 1.05), (0.75, 0.85)):
            row: dict = dict(far=far, near=near, gate=gate)
            line = f"far={far} near={near} gate={gate}:"
            for m in MODELS:
                r = rates(scored, m, replace(THRESHOLDS, far=far, near=near, gate=gate))
                c = r["categories"]
                row[m] = dict(non_digits=r["non_digits_warned"], **{k: c[k]["warned"] for k in (
                    "MNIST train", "pen digits", "typed digits 16-160 px (upload)",
                    "tiny typed digits 10-15 px (upload)", "scribble")})
                line += f" | {m}: " + " ".join(f"{k.split()[0]} {100 * v:.1f}%" for k, v in row[m].items())
            grid.append(row)
            print(line)
        previous["calibration"] = dict(command="OMP_NUM_THREADS=1 python benchmarks/app/digit_check.py --calibrate",
                                       seed=seed, mnist_split=split, grid=grid)
        out.write_text(json.dumps(previous, indent=1) + "\n")
        print(f"wrote the grid into {out}")
        return
    results = {m: rates(scored, m) for m in MODELS}
    old = before(sets)
    for m in MODELS:
        print_table(m, results[m])
    print("\nthe old check (ood_score > OOD_THRESHOLD): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in old.items()))
    probe = [im for c in sets.values() for im in c.images[:12]]
    tm = timing(models["rk4_1step"], probe)
    print(f"\ncheck_digit on one input (rk4_1step, 1 thread): {tm}; stats fitted in {fit} s")
    report = dict(
        command="OMP_NUM_THREADS=1 python benchmarks/app/digit_check.py",
        seed=seed, mnist_split=split, thresholds=asdict(THRESHOLDS), results=results, before_ood_score=old,
        timing_rk4_1step=tm, stats_fit_seconds=fit,
        machine=dict(cpu=cpu_name(), cores=os.cpu_count(), torch_threads=1, python=platform.python_version(),
                     torch=torch.__version__),
        seconds=round(time.perf_counter() - start, 1))
    if "calibration" in previous:
        report["calibration"] = previous["calibration"]
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
