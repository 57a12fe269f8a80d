"""How long will this run take *on this server*? Measured, never assumed from another CPU.

A recipe's length in seconds depends on the machine (a 2-core CPU with AMX trains ~2x faster than
one without) and on the solver.  :class:`SpeedBook` keeps, per process, the training and
evaluation speed measured for each (solver, gradient method, batch size, bf16) combination:
from every job this server ran (its own batch reports), or, before any job, from a short probe
(a real :class:`~odenet.train.trainer.Trainer` on a few batches) run in a background thread when no
job is training.  :func:`expected_seconds` turns a config and a speed into seconds, counting the
evaluations the run will make.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from odenet.data.mnist import TEST_SIZE
from odenet.train.config import TrainConfig

__all__ = ["Speed", "speed_key", "speed_from_events", "evaluations", "expected_seconds", "probe_speed", "SpeedBook",
           "speed_book", "describe_run", "format_duration", "probe_in_background"]

START_SECONDS = 1.0  # building the model and the first batch's warm-up, measured ~0.5-1.5 s


@dataclass(frozen=True)
class Speed:
    """Training images per second, test images per second (inference), and where they came from."""

    train_ips: float
    eval_ips: float
    source: str


def speed_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """What the speed of a run depends on (not the recipe's learning rate or image count)."""
    from odenet.utils import amp_pays, pick_device

    amp = cfg.amp if cfg.amp is not None else amp_pays(pick_device(cfg.device))
    m = cfg.model
    return (m.label(), m.gradient, cfg.batch_size, bool(amp), cfg.kinetic > 0, cfg.jacobian > 0, cfg.augment)


def speed_from_events(events: Sequence[Any], cfg: TrainConfig, source: str) -> Speed | None:
    """The speed a run showed: median img/s of its batch reports (the first, warming up, left out)
    and test images per second over its evaluations; None when it reported too little."""
    ips = [e.images_per_s for e in events if e.kind == "batch" and e.images_per_s]
    evals = [e for e in events if e.kind == "eval" and e.eval_seconds]
    if len(ips) < 2 or not evals:
        return None
    bpe = evals[-1].batches_per_epoch
    images = sum(TEST_SIZE if e.batch == bpe else (cfg.eval_size or TEST_SIZE) for e in evals)
    return Speed(float(statistics.median(ips[1:])), images / max(evals[-1].eval_seconds, 1e-6), source)


def evaluations(cfg: TrainConfig) -> list[int]:
    """Test images of every evaluation the run makes, in order (mid-epoch subsets, full ends)."""
    bpe = cfg.batches_per_epoch()
    out = []
    for _ in range(cfg.epochs):
        if cfg.eval_every:
            out += [cfg.eval_size or TEST_SIZE] * len([b for b in range(1, bpe) if b % cfg.eval_every == 0])
        out.append(TEST_SIZE)
    return out


def expected_seconds(cfg: TrainConfig, speed: Speed) -> float:
    """Seconds from Start to the end of ``cfg`` at ``speed``: training, every evaluation, start-up."""
    train = cfg.epochs * cfg.batches_per_epoch() * cfg.batch_size / speed.train_ips
    return START_SECONDS + train + sum(evaluations(cfg)) / speed.eval_ips


def probe_speed(cfg: TrainConfig, batches: int = 8, data_loader: Any = None, eval_images: int = 1000,
                stop: threading.Event | None = None) -> Speed | None:
    """Measure ``cfg``'s speed here: a real Trainer on ``batches`` batches (reports after each, the
    first one left out as warm-up), whose end-of-epoch evaluation runs on ``eval_images`` test images.
    None when ``stop`` was set meanwhile (a job is about to train: the probe gives way within a batch)."""
    from odenet.data.mnist import load_mnist
    from odenet.train.trainer import Trainer

    train, test = data_loader() if callable(data_loader) else (data_loader or load_mnist())
    probe = cfg.replace(epochs=1, train_size=cfg.batch_size * batches, log_every=1, eval_every=0, eval_size=None,
                        adapt_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(probe, data=(train, test.subset(eval_images)), run_dir=tmp, stop_event=stop).run()
    if result.status != "finished":
        return None
    ips = [e.images_per_s for e in result.history if e.kind == "batch" and e.images_per_s]
    ev = next(e for e in reversed(result.history) if e.kind == "eval")
    return Speed(float(statistics.median(ips[1:] or ips)), eval_images / max(ev.eval_seconds, 1e-6),
                 f"a {batches}-batch probe on this server")


class SpeedBook:
    """Measured speeds by :func:`speed_key`, bounded and thread-safe; probes run one at a time in
    a background thread, never while a job trains: the job manager calls :meth:`give_way` before
    every job, which stops a probe within one batch and waits for it (a probe would slow the job,
    and its Trainer seeds torch's global generator)."""

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._speeds: OrderedDict[tuple[Any, ...], Speed] = OrderedDict()
        self._lock = threading.Lock()
        self._probing: tuple[Any, ...] | None = None
        self._failed: set[tuple[Any, ...]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_active = 0

    def record(self, cfg: TrainConfig, speed: Speed | None) -> None:
        """Keep ``speed`` for ``cfg``'s key (a finished job's, or a probe's)."""
        if speed is None:
            return
        key = speed_key(cfg)
        with self._lock:
            self._speeds[key] = speed
            self._speeds.move_to_end(key)
            while len(self._speeds) > self.max_entries:
                self._speeds.popitem(last=False)

    def get(self, cfg: TrainConfig) -> Speed | None:
        with self._lock:
            return self._speeds.get(speed_key(cfg))

    def request(self, cfg: TrainConfig, busy: bool, data_loader: Any = None) -> bool:
        """Start a background probe for ``cfg`` unless one is known, one is running, or ``busy``
        (a job trains).  True when a probe is (now) under way."""
        if os.environ.get("ODENET_SPEED_PROBE", "1").strip() == "0":  # off: estimates come from jobs only
            return False
        key = speed_key(cfg)
        with self._lock:
            if key in self._speeds or key in self._failed:
                return False
            if self._probing is not None:
                return self._probing == key
            if busy or self._jobs_active:
                return False
            self._probing = key
            self._stop.clear()
            stop = self._stop

        def work() -> None:
            try:
                self.record(cfg, probe_speed(cfg, data_loader=data_loader, stop=stop))
            except Exception:  # noqa: BLE001 - a probe that cannot run (no MNIST, a bad solver) only loses the estimate
                with self._lock:
                    self._failed.add(key)
            finally:
                with self._lock:
                    self._probing = None

        with self._lock:
            self._thread = threading.Thread(target=work, name="odenet-speed-probe", daemon=True)
            self._thread.start()
        return True

    def give_way(self) -> None:
        """A job is starting: stop a running probe (within one batch), wait for it, and start no
        new one until :meth:`job_done`."""
        with self._lock:
            self._jobs_active += 1
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def job_done(self) -> None:
        with self._lock:
            self._jobs_active = max(0, self._jobs_active - 1)

    def probing(self) -> bool:
        with self._lock:
            return self._probing is not None


_book = SpeedBook()


def speed_book() -> SpeedBook:
    """The process-wide book (shared by every visitor: speeds are facts about the machine)."""
    return _book


def describe_run(cfg: TrainConfig, speed: Speed | None, probing: bool = False) -> str:
    """What a run does, in words: images, epochs, evaluations, and its expected time here."""
    images = cfg.epochs * cfg.batches_per_epoch() * cfg.batch_size
    evals = evaluations(cfg)
    mid = len(evals) - cfg.epochs
    what = (f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''} × {cfg.train_size:,} training images "
            f"({images:,} images in batches of {cfg.batch_size})")
    if mid:
        what += (f", {mid} evaluation{'s' if mid > 1 else ''} on {cfg.eval_size or TEST_SIZE:,} test images and "
                 f"{cfg.epochs} on all {TEST_SIZE:,}")
    if speed is not None:
        secs = expected_seconds(cfg, speed)
        when = (f"about {format_duration(secs)} on this server (measured {speed.train_ips:.0f} training images/s, "
                f"{speed.source})")
    elif probing:
        when = "measuring this server's speed for this solver ..."
    else:
        when = "time not measured yet on this server (measured after the current job, or by the first run)"
    return f"{what}; {when}."


def format_duration(seconds: float) -> str:
    """'48 s', '2 min 5 s'."""
    whole = max(0, round(float(seconds)))
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def probe_in_background(configs: Sequence[TrainConfig], book: SpeedBook | None = None) -> threading.Thread | None:
    """Measure ``configs`` one after another in a background thread (server start: the Train page
    then shows its recipes' times on the first visit).  A job that starts meanwhile stops the
    probe under way, and the ones after it are skipped while it trains.  None when probes are off
    (``ODENET_SPEED_PROBE=0``)."""
    if os.environ.get("ODENET_SPEED_PROBE", "1").strip() == "0":
        return None
    book = book or speed_book()

    def work() -> None:
        import time

        for cfg in configs:
            if not book.request(cfg, busy=False):
                continue
            while book.probing():
                time.sleep(0.2)

    thread = threading.Thread(target=work, name="odenet-speed-probes", daemon=True)
    thread.start()
    return thread
