"""Labelled points in the plane: the classic 2-D teaching datasets and your own points from CSV.

Every dataset is generated here with a seeded ``torch.Generator`` (no scikit-learn), so the
CLI, the page, the tests and the benchmarks draw the same points for the same ``(name, n,
noise, seed)``.  Coordinates are of order 1 (roughly within [-2, 2]) so one vector field
width and one learning rate suit them all.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from odenet.errors import OdenetError

__all__ = ["DATASETS", "MAX_CLASSES", "MAX_ROWS", "DataError", "PointSet", "make_dataset", "split", "load_csv",
           "to_csv", "train_test_points"]

MAX_CLASSES = 10
MAX_ROWS = 100_000
MAX_POINTS = 20_000  # generated datasets: enough for a picture, small enough to train in seconds


class DataError(OdenetError, ValueError):
    """Points that cannot be used (a bad CSV, an unknown dataset); the message says which and why."""


@dataclass(frozen=True)
class PointSet:
    """Labelled points: ``x`` (n, 2) float32 and ``y`` (n,) int64 with labels ``0..classes-1``."""

    x: torch.Tensor  # (n, 2)
    y: torch.Tensor  # (n,)
    classes: int
    name: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def bounds(self, margin: float = 0.15) -> tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the points, widened by ``margin`` of the span on each side."""
        lo, hi = self.x.min(0).values, self.x.max(0).values  # (2,), (2,)
        pad = (hi - lo).clamp_min(1e-6) * margin
        return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2  # (n,)
    a = torch.rand(n, generator=g) * math.pi  # (n,)
    upper = torch.stack([torch.cos(a), torch.sin(a)], 1)  # (n, 2)
    lower = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)
    x = torch.where(y[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25])
    return x, y


def _circles(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2  # 0: outer ring, 1: inner disc
    a = torch.rand(n, generator=g) * 2 * math.pi
    r = torch.where(y == 0, torch.full((n,), 1.0), torch.full((n,), 0.45))
    return torch.stack([r * torch.cos(a), r * torch.sin(a)], 1), y


def _spirals(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    s = torch.rand(n, generator=g).sqrt()  # (n,) in [0, 1]: even density along the arm
    a = s * 3 * math.pi + y * math.pi  # 1.5 turns per arm, the second arm rotated by pi
    r = 0.15 + 1.6 * s
    return torch.stack([r * torch.cos(a), r * torch.sin(a)], 1), y


def _xor(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2  # 0: quadrants I and III, 1: II and IV
    s1 = torch.randint(0, 2, (n,), generator=g) * 2 - 1  # (n,) sign of the first coordinate
    s2 = torch.where(y == 0, s1, -s1)
    mag = 0.1 + 0.9 * torch.rand(n, 2, generator=g)  # a small gap along the axes, as in TensorFlow Playground
    return mag * torch.stack([s1, s2], 1), y


def _blobs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 3
    centres = torch.tensor([[-1.0, -0.6], [1.0, -0.6], [0.0, 1.1]])  # (3, 2)
    return centres[y] + 0.35 * torch.randn(n, 2, generator=g), y


def _ringblobs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 4  # 0: a ring of radius 1; 1, 2, 3: blobs in its centre and at two upper corners
    a = torch.rand(n, generator=g) * 2 * math.pi
    ring = torch.stack([torch.cos(a), torch.sin(a)], 1)  # (n, 2)
    centres = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.6, 1.2], [-1.6, 1.2]])  # (4, 2); row 0 unused
    blob = centres[y] + 0.15 * torch.randn(n, 2, generator=g)
    return torch.where(y[:, None] == 0, ring, blob), y


_MAKERS: dict[str, Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]] = {
    "moons": _moons, "circles": _circles, "spirals": _spirals, "xor": _xor, "blobs": _blobs,
    "ringblobs": _ringblobs}
DATASETS: tuple[str, ...] = tuple(_MAKERS)


def make_dataset(name: str, n: int = 1000, noise: float = 0.1, seed: int = 0) -> PointSet:
    """``n`` points of the named dataset with Gaussian ``noise`` (standard deviation, in data units).

    The labels alternate, so every class has ``n // classes`` points or one more."""
    if name not in _MAKERS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not isinstance(n, int) or isinstance(n, bool) or not 10 <= n <= MAX_POINTS:
        raise DataError(f"n must be an integer from 10 to {MAX_POINTS:,}, got {n!r}")
    if not isinstance(noise, (int, float)) or not 0 <= noise <= 1 or math.isnan(noise):
        raise DataError(f"noise must be a number from 0 to 1, got {noise!r}")
    g = torch.Generator().manual_seed(int(seed))
    x, y = _MAKERS[name](n, g)
    x = x + float(noise) * torch.randn(n, 2, generator=g)
    return PointSet(x.float().contiguous(), y.long(), int(y.max()) + 1, name)


def split(points: PointSet, test_fraction: float = 0.3, seed: int = 0) -> tuple[PointSet, PointSet]:
    """A seeded random train/test split (``test_fraction`` of the points held out)."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    n = len(points)
    k = min(max(1, round(n * test_fraction)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 1))
    te, tr = order[:k], order[k:]
    return (PointSet(points.x[tr], points.y[tr], points.classes, points.name),
            PointSet(points.x[te], points.y[te], points.classes, points.name + " (test)"))


def load_csv(source: str | Path | bytes, name: str | None = None, classes: int | None = None,
             labelled: bool = True) -> PointSet:
    """Points from CSV text with the header ``x,y,label`` (labels ``0..K-1``, ``2 <= K <= 10``).

    ``source`` is a path or the file's bytes (an upload).  Anything unusable raises
    :class:`DataError` with one line that names the row or the rule: not numbers, NaN or
    infinite values, a label that is not a whole number, one class, more than 10 classes, more
    than 100,000 rows.  ``classes`` (a test file read beside its training file) checks that the
    labels fit the training file's classes.  ``labelled=False`` (a density needs no labels) also
    takes the header ``x,y``, ignores a label column and asks for at least 10 training rows (1 in
    a test file); every point gets label 0."""
    if isinstance(source, bytes):
        label = name or "the uploaded file"
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{label} is not a UTF-8 text file (expected CSV with the header x,y,label)") from None
    else:
        path = Path(source)
        label = name or path.name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read it as text ({type(exc).__name__})") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{label} is empty; expected a header x,y,label and one row per point")
    header = [c.strip().lower() for c in rows[0]]
    if header != ["x", "y", "label"] and (labelled or header != ["x", "y"]):
        want = "x,y,label" if labelled else "x,y or x,y,label"
        raise DataError(f"{label}: the first line must be the header {want}, got {','.join(rows[0])[:60]!r}")
    width = len(header)
    body = rows[1:]
    if len(body) > MAX_ROWS:
        raise DataError(f"{label} has {len(body):,} rows; at most {MAX_ROWS:,} are allowed")
    xs: list[tuple[float, float]] = []
    ys: list[int] = []
    for i, row in enumerate(body, start=2):
        if len(row) != width:
            raise DataError(f"{label}, line {i}: expected {width} values ({','.join(header)}), got {len(row)}")
        if not labelled:  # the label column, if any, is ignored
            row = row[:2] + ["0"]
        try:
            a, b, c = (float(v) for v in row)
        except ValueError:
            words = f"{','.join(row[:width])[:60]!r} is not {('two', 'three')[width - 2]} numbers"
            raise DataError(f"{label}, line {i}: {words}") from None
        if not all(math.isfinite(v) for v in (a, b, c)):
            raise DataError(f"{label}, line {i}: NaN or infinite values are not allowed")
        if c != int(c) or c < 0:
            raise DataError(f"{label}, line {i}: label {row[2].strip()!r} is not a whole number 0..{MAX_CLASSES - 1}")
        xs.append((a, b))
        ys.append(int(c))
    need = 1 if classes is not None else 2 if labelled else 10  # a test file may be a single point
    if len(ys) < need:
        raise DataError(f"{label} has {len(ys)} data rows; at least {need} {'is' if need == 1 else 'are'} needed")
    y = torch.tensor(ys, dtype=torch.long)
    k = int(y.max()) + 1
    if k > MAX_CLASSES:
        raise DataError(f"{label}: labels must be 0..{MAX_CLASSES - 1} (at most {MAX_CLASSES} classes), got {k - 1}")
    if classes is not None:
        if k > classes:
            raise DataError(f"{label}: label {k - 1} is not one of the training file's classes 0..{classes - 1}")
        k = classes
    elif len(torch.unique(y)) < 2 and labelled:
        raise DataError(f"{label}: every point has label {ys[0]}; a classifier needs at least two classes")
    return PointSet(torch.tensor(xs, dtype=torch.float32), y, k, name or label)


def train_test_points(dataset: str | None = "moons", data: str | Path | bytes | None = None,
                      test: str | Path | bytes | None = None, n: int = 1000, noise: float = 0.1, seed: int = 0,
                      test_fraction: float = 0.3, labelled: bool = True) -> tuple[PointSet, PointSet]:
    """The training and test points of a plane run: a generated ``dataset``, or the CSV ``data``
    (split ``test_fraction`` unless a ``test`` CSV is given). One rule for the CLI and the page;
    ``labelled=False`` reads CSVs for a density (see :func:`load_csv`)."""
    if data is None:
        return split(make_dataset(dataset or "moons", n=n, noise=noise, seed=seed), test_fraction, seed)
    points = load_csv(data, labelled=labelled)
    if test is None:
        return split(points, test_fraction, seed)
    return points, load_csv(test, classes=points.classes, labelled=labelled)


def to_csv(points: PointSet) -> str:
    """The points as CSV text with the header ``x,y,label`` (what :func:`load_csv` reads)."""
    lines = ["x,y,label"] + [f"{a:.6g},{b:.6g},{int(c)}" for (a, b), c in zip(points.x.tolist(), points.y.tolist())]
    return "\n".join(lines) + "\n"
