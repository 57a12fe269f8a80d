"""One plane training in a background thread, watched by a page: progress, stop, result or error.

Any trainer with the shape of :func:`~odenet.plane.classifier.train_plane` runs in it
(``trainer(config, train, test, on_progress=..., stop=...)`` returning a run with ``stopped``): the
classifier by default, the density flow (:func:`odenet.plane.density.train_density`) too.

A Streamlit page cannot run a loop (every click reruns it), so the page starts a
:class:`PlaneJob`, keeps it in the visitor's session and polls :meth:`PlaneJob.snapshot`.
The thread holds one of the visitor's work slots (``slot``: a context manager from the
per-visitor work limiter) for as long as it trains, so a visitor trains one thing at a time
and a crowded server refuses with a message instead of slowing everyone down.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from odenet.data.toy2d import PointSet
from odenet.errors import OdenetError
from odenet.plane.classifier import PlaneConfig, PlaneProgress, PlaneRun, train_plane

__all__ = ["PlaneJob", "JobView"]


@dataclass(frozen=True)
class JobView:
    """What a page shows of a job at one moment."""

    state: str  # "running", "finished", "stopped" or "failed"
    history: list[PlaneProgress] = field(default_factory=list)  # (or the trainer's own progress points)
    run: PlaneRun | None = None  # (or the trainer's own run)
    error: str | None = None


class PlaneJob:
    """Train ``config`` on ``train`` in a background thread with ``trainer`` (default: the classifier's
    :func:`train_plane`); thread-safe to watch and stop."""

    def __init__(self, config: PlaneConfig, train: PointSet, test: PointSet | None = None,
                 slot: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
                 trainer: Callable[..., Any] = train_plane) -> None:
        self.config, self.train, self.test = config, train, test
        self._slot = slot or contextlib.nullcontext
        self._trainer = trainer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._history: list[PlaneProgress] = []
        self._run: PlaneRun | None = None
        self._error: str | None = None
        # not a daemon: an interpreter exiting mid-training waits for it (seconds) instead of tearing
        # torch down under it, which aborts the process
        self._thread = threading.Thread(target=self._work, name="odenet-plane", daemon=False)
        self._thread.start()

    def _progress(self, p: PlaneProgress) -> None:
        with self._lock:
            self._history.append(p)

    def _work(self) -> None:
        try:
            with self._slot():
                run = self._trainer(self.config, self.train, self.test, on_progress=self._progress, stop=self._stop)
            with self._lock:
                self._run = run
        except OdenetError as exc:  # Busy, a blown-up solve, bad settings: the page shows the words
            with self._lock:
                self._error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: still shown, never a silent dead thread
            with self._lock:
                self._error = f"training failed ({type(exc).__name__}: {exc})"

    def stop(self) -> None:
        """Ask the training to end after its current iteration (it keeps what it learned)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests, CLI); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> JobView:
        with self._lock:
            history = list(self._history)
            if self._error is not None:
                return JobView("failed", history, None, self._error)
            if self._run is not None:
                return JobView("stopped" if self._run.stopped else "finished", history, self._run)
        return JobView("running", history)
