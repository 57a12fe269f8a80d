"""What a room shares on purpose: the class gallery and "New class" (no Streamlit here).

:class:`Gallery` holds the drawings visitors chose to share: the 28x28 picture (uint8), the
prediction, its confidence and a "not a digit" flag; no name, in memory only, the last
:data:`GALLERY_SIZE` of them, at most :data:`PER_VISITOR` from one visitor (the oldest of theirs
gives way), all under one lock.  :func:`gallery` is the process-wide one, like the job manager.

Clearing it and "New class" (:func:`new_class`: clear the gallery and delete the runs made since
this server started) are the presenter's: the check is here, :func:`require_presenter`, not
only a hidden button.  The server's start is recorded once per process, with the run
directories that existed then, so shipped models and earlier lessons' runs are never touched.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odenet.errors import OdenetError
from odenet.train.checkpoints import PRETRAINED_DIR
from odenet.train.runs import RunBusy, delete_run, list_runs
from odenet.train.trainer import default_runs_dir
from odenet.utils import process_wide

__all__ = ["GALLERY_SIZE", "PER_VISITOR", "LOW_CONFIDENCE", "NotPresenter", "require_presenter", "as_image28",
           "SharedDrawing", "Gallery", "gallery", "mark_server_start", "server_started", "runs_since_start",
           "NewClassPlan", "plan_new_class", "NewClassResult", "new_class", "tally", "tile"]

GALLERY_SIZE = 200  # drawings the room keeps (newest win)
PER_VISITOR = 20  # drawings one visitor holds at once (their oldest gives way), so one cannot fill the wall
LOW_CONFIDENCE = 0.6  # below this a prediction is marked "low confidence" on the wall


class NotPresenter(OdenetError, PermissionError):
    """Only the presenter may do this on a shared server."""


def require_presenter(is_presenter: bool, action: str) -> None:
    """Raise :class:`NotPresenter` naming ``action`` unless the requester is the presenter."""
    if is_presenter is not True:
        raise NotPresenter(f"{action}: only the presenter can do this (enter the presenter token in the sidebar)")


def as_image28(image: Any) -> np.ndarray:
    """A 28x28 picture as a read-only uint8 array: uint8 as it is, floats in [0, 1] scaled by 255
    (a leading batch/channel axis of size 1 is dropped).  ValueError for anything else."""
    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    arr = arr.reshape(arr.shape[-2:]) if arr.ndim > 2 and math.prod(arr.shape[:-2]) == 1 else arr
    if arr.shape != (28, 28):
        raise ValueError(f"a shared drawing is a 28x28 picture, got shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        out = arr.copy()
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError("a float picture must hold grey levels in [0, 1]")
        out = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"a shared drawing is uint8 or float in [0, 1], got {arr.dtype}")
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class SharedDrawing:
    """One drawing on the class wall (no name: who shared it stays inside the gallery)."""

    id: int
    image: np.ndarray = field(repr=False)  # 28x28 uint8, read-only
    digit: int
    confidence: float
    not_digit: bool
    said: int | None = None  # what the sharer says they drew, when they said it
    shared_at: float = 0.0  # time.time()

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    @property
    def wrong(self) -> bool:
        """The model disagrees with what the sharer said they drew."""
        return self.said is not None and self.said != self.digit

    @property
    def flagged(self) -> bool:
        """Worth a second look: not a digit, wrong, or low confidence."""
        return self.not_digit or self.wrong or self.low_confidence

    def caption(self) -> str:
        """``"7 · 93%"``, with a mark when flagged: 🚫 not a digit, ❌ said otherwise, ⚠️ low confidence."""
        text = f"{self.digit} · {100 * self.confidence:.0f}%"
        if self.not_digit:
            return f"🚫 not a digit ({text})"
        if self.wrong:
            return f"❌ drew {self.said}, got {text}"
        return f"⚠️ {text}" if self.low_confidence else text


def _digit(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 9:
        raise ValueError(f"{what} must be a digit 0-9, got {value!r}")
    return int(value)


class Gallery:
    """The room's shared drawings: bounded (``capacity``, ``per_visitor``), newest first, thread-safe."""

    def __init__(self, capacity: int = GALLERY_SIZE, per_visitor: int = PER_VISITOR) -> None:
        if capacity < 1 or per_visitor < 1:
            raise ValueError("capacity and per_visitor must be at least 1")
        self.capacity = capacity
        self.per_visitor = per_visitor
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[str, SharedDrawing]] = OrderedDict()  # oldest -> newest
        self._ids = itertools.count(1)

    def add(self, image28: Any, digit: int, confidence: float, not_digit: bool, visitor: str, *,
            said: int | None = None, replaces: int | None = None) -> SharedDrawing:
        """Share one drawing; returns it.  ``replaces``: the id of this visitor's earlier share of the
        same drawing (more strokes since), which it takes the place of; ignored if not theirs or gone.
        Beyond :attr:`per_visitor` this visitor's oldest drawing leaves, beyond :attr:`capacity` the
        room's oldest.  ValueError for a bad picture, digit or confidence."""
        image = as_image28(image28)
        digit = _digit(digit, "digit")
        said = None if said is None else _digit(said, "said")
        confidence = float(confidence)
        if not 0.0 <= confidence <= 1.0:  # NaN fails too
            raise ValueError(f"confidence must be in [0, 1], got {confidence!r}")
        if not isinstance(visitor, str) or not visitor:
            raise ValueError("visitor must be a non-empty session id")
        with self._lock:
            if replaces is not None and self._items.get(replaces, ("",))[0] == visitor:
                del self._items[replaces]
            mine = [k for k, (owner, _) in self._items.items() if owner == visitor]  # oldest first
            for k in mine[:max(0, len(mine) - self.per_visitor + 1)]:
                del self._items[k]
            item = SharedDrawing(next(self._ids), image, digit, confidence, bool(not_digit), said, time.time())
            self._items[item.id] = (visitor, item)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return item

    def recent(self, n: int | None = None) -> list[SharedDrawing]:
        """The ``n`` most recent drawings (all when None), newest first."""
        with self._lock:
            items = [d for _, d in reversed(self._items.values())]
        return items if n is None else items[:max(0, int(n))]

    def withdraw(self, visitor: str) -> int:
        """Remove every drawing this visitor shared (they stopped sharing); returns how many."""
        with self._lock:
            mine = [k for k, (owner, _) in self._items.items() if owner == visitor]
            for k in mine:
                del self._items[k]
            return len(mine)

    def clear(self, requester_is_presenter: bool) -> int:
        """Empty the wall; returns how many drawings it held.  NotPresenter unless the presenter asks."""
        require_presenter(requester_is_presenter, "Clear the gallery")
        with self._lock:
            n = len(self._items)
            self._items.clear()
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def tally(drawings: Sequence[SharedDrawing]) -> dict[str, Any]:
    """Counts for the wall's summary: ``total``, ``not_digit``, ``wrong``, ``low`` (low confidence,
    digits only) and ``digits`` (prediction -> count, most common first)."""
    return {"total": len(drawings), "not_digit": sum(d.not_digit for d in drawings),
            "wrong": sum(d.wrong and not d.not_digit for d in drawings),
            "low": sum(d.low_confidence and not d.not_digit and not d.wrong for d in drawings),
            "digits": dict(Counter(d.digit for d in drawings).most_common())}


_FRAME = {"not_digit": (220, 38, 38), "wrong": (220, 38, 38), "low": (245, 158, 11)}


def tile(drawing: SharedDrawing, scale: int = 3, frame: int = 3) -> np.ndarray:
    """The drawing as an RGB uint8 tile with square pixels, framed red (not a digit, or not what the
    sharer drew) or amber (low confidence), grey otherwise."""
    grey = np.kron(drawing.image, np.ones((scale, scale), np.uint8))
    kind = "not_digit" if drawing.not_digit else "wrong" if drawing.wrong else "low" if drawing.low_confidence else None
    color = _FRAME.get(kind, (120, 120, 120))
    size = grey.shape[0] + 2 * frame
    out = np.empty((size, size, 3), np.uint8)
    out[:] = color
    out[frame:-frame, frame:-frame] = grey[..., None]
    return out


gallery = process_wide(Gallery)  # the room's one gallery (never written to disk)


# -- New class ------------------------------------------------------------------------------------

_STARTED = time.time()  # this process's start, as far as the room is concerned (import time)
_baselines: dict[Path, frozenset[tuple[str, int]]] = {}  # runs dir -> (name, inode) present at start
_baseline_lock = threading.Lock()


def _listing(root: Path) -> frozenset[tuple[str, int]]:
    try:
        return frozenset((e.name, e.inode()) for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    except OSError:  # no runs directory yet
        return frozenset()


def _baseline(root: Path) -> frozenset[tuple[str, int]]:
    """The run directories present when the server started (for a runs directory first seen later,
    those present then: never more than the runs the server could have made)."""
    with _baseline_lock:
        if root not in _baselines:
            _baselines[root] = _listing(root)
        return _baselines[root]


def mark_server_start(runs_dir: str | Path | None = None) -> float:
    """Record which run directories exist at the server's start (once per process and runs directory;
    app.py calls it on every run, only the first counts); returns the start time."""
    _baseline((Path(runs_dir) if runs_dir is not None else default_runs_dir()).resolve())
    return _STARTED


def server_started() -> float:
    """When this server started (``time.time()``, recorded once per process)."""
    return _STARTED


def _is_shipped(path: Path) -> bool:
    shipped = PRETRAINED_DIR.resolve()
    return path == shipped or shipped in path.parents or path in shipped.parents


def runs_since_start(runs_dir: str | Path | None = None) -> list[Path]:
    """Run directories created since the server started (absent from its start listing), by name;
    never the shipped models' folder or anything in it."""
    root = (Path(runs_dir) if runs_dir is not None else default_runs_dir()).resolve()
    if _is_shipped(root):
        return []
    before = _baseline(root)
    new = [root / name for name, inode in _listing(root) - before if not name.startswith(".")]
    return sorted(p for p in new if not _is_shipped(p.resolve()))


@dataclass(frozen=True)
class NewClassPlan:
    """What "New class" would do now: delete ``runs``, keep ``training`` (busy), clear ``drawings``."""

    runs: list[Path]
    training: list[Path]
    drawings: int
    since: float

    @property
    def fingerprint(self) -> str:
        """A short digest of the runs it names (a confirmation is for exactly these)."""
        return hashlib.blake2b("\n".join(sorted(p.name for p in self.runs)).encode(), digest_size=6).hexdigest()

    def summary(self) -> str:
        """One sentence for the confirmation, with the counts."""
        n = len(self.runs)
        text = (f"delete {n} run{'s' if n != 1 else ''} made since the server started "
                f"({time.strftime('%H:%M', time.localtime(self.since))}) and clear {self.drawings} shared "
                f"drawing{'s' if self.drawings != 1 else ''}")
        if self.training:
            text += f"; {len(self.training)} run(s) still training will be kept (stop them first to delete them)"
        return text


def plan_new_class(active: set[Path] | None = None, runs_dir: str | Path | None = None,
                   room: Gallery | None = None) -> NewClassPlan:
    """The runs :func:`new_class` would delete and those it would keep because a job trains them
    (``active``: the job manager's active run directories, or a live process's status says so)."""
    busy = {p.resolve() for p in active or ()}
    running = {i.path.resolve() for i in list_runs(runs_dir, active=active) if i.status == "running"}
    runs, training = [], []
    for path in runs_since_start(runs_dir):
        (training if path.resolve() in busy | running else runs).append(path)
    return NewClassPlan(runs, training, len(room if room is not None else gallery()), _STARTED)


@dataclass(frozen=True)
class NewClassResult:
    """What "New class" did: runs ``deleted`` (names), runs ``kept`` (name -> why), ``cleared`` drawings."""

    deleted: list[str]
    kept: dict[str, str]
    cleared: int


def new_class(requester_is_presenter: bool, active: set[Path] | None = None, runs_dir: str | Path | None = None,
              room: Gallery | None = None, only: Sequence[Path] | None = None) -> NewClassResult:
    """Start afresh for the next class: clear the gallery and delete every run made since the server
    started (``only``: just those of them, e.g. the ones a confirmation named), except one a job is
    training (refused by :func:`odenet.train.runs.delete_run`, reported in ``kept``).  Shipped models and
    older runs are never touched.  NotPresenter unless the presenter asks."""
    require_presenter(requester_is_presenter, "New class")
    deleted: list[str] = []
    kept: dict[str, str] = {}
    chosen = None if only is None else {Path(p).resolve() for p in only}
    for path in runs_since_start(runs_dir):
        if chosen is not None and path.resolve() not in chosen:
            continue
        try:
            delete_run(path, active=active, runs_dir=runs_dir)
            deleted.append(path.name)
        except (RunBusy, OSError) as exc:
            kept[path.name] = str(exc)
    cleared = (room if room is not None else gallery()).clear(True)
    return NewClassResult(deleted, kept, cleared)
