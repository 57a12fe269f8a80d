"""Background training jobs for the app: one runs at a time, others wait in a queue.

The manager is process-wide (every browser tab and session sees the same jobs).  It owns
one worker thread that never touches Streamlit; pages only read :meth:`JobManager.snapshot`
and call :meth:`submit` / :meth:`stop`.  All state changes happen under one lock.

Across processes (two servers sharing ``ODENET_RUNS``, a restarted server, the CLI) the runs
directory's lock (:class:`odenet.train.runs.TrainLock`) lets one job train at a time: a job whose
turn has come waits, queued with a message naming where the running job is, until the lock is
free.  What another process trains is read from its run directory (:func:`snapshot_from_run_dir`,
:meth:`JobManager.elsewhere`), so every server shows it live.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from odenet.data.mnist import TEST_SIZE
from odenet.errors import OdenetError
from odenet.train.config import TrainConfig
from odenet.train.runs import TrainLock, holder_text, lock_holder
from odenet.train.throughput import speed_book, speed_from_events
from odenet.train.trainer import Trainer, TrainEvent, default_runs_dir, new_run_dir
from odenet.utils import BoundedLRU, release_free_memory

__all__ = ["JobLimits", "Job", "JobSnapshot", "JobManager", "get_manager", "QueueFull", "JobRejected", "NotYourJob",
           "snapshot_from_run_dir", "read_events", "LOCK_POLL_S"]

ACTIVE = ("queued", "running")
# Ended jobs (with their event lists) kept in memory for the pages' live views; their runs stay
# on disk and in the Runs table.  Bounded, so a server that runs for days does not grow with them.
KEEP_ENDED_JOBS = 50
LOCK_POLL_S = 1.0  # how often a job whose turn has come tries the runs directory's lock again


class JobRejected(OdenetError, ValueError):
    """A job was refused (over the per-job caps); the message says which cap and how to change it."""


class NotYourJob(JobRejected):
    """A visitor tried to stop a job another visitor started."""


class QueueFull(JobRejected):
    """Too many jobs are already waiting."""


@dataclass(frozen=True)
class JobLimits:
    """Server-wide caps so one user cannot occupy the machine indefinitely.

    Defaults come from ``ODENET_MAX_EPOCHS``, ``ODENET_MAX_IMAGES`` (epochs x train images),
    ``ODENET_MAX_QUEUE``, ``ODENET_TRAIN_THREADS`` (intra-op threads of the worker;
    0 = torch's default) and ``ODENET_TRAIN_NICE`` (the worker's nice value, 0-19, for it and the
    intra-op threads it starts; 0 = the server's: a higher value lets the visitors' reruns go first).
    """

    max_epochs: int = 20
    max_images: int = 1_200_000
    max_queue: int = 4
    train_threads: int = 0
    train_nice: int = 0

    @classmethod
    def from_env(cls) -> JobLimits:
        def get(name: str, default: int) -> int:
            raw = os.environ.get(name)
            try:
                return int(raw) if raw is not None else default
            except ValueError:
                return default

        d = cls()
        return cls(get("ODENET_MAX_EPOCHS", d.max_epochs), get("ODENET_MAX_IMAGES", d.max_images),
                   get("ODENET_MAX_QUEUE", d.max_queue), get("ODENET_TRAIN_THREADS", d.train_threads),
                   min(19, max(0, get("ODENET_TRAIN_NICE", d.train_nice))))

    def check(self, cfg: TrainConfig) -> None:
        if cfg.epochs > self.max_epochs:
            raise JobRejected(f"epochs={cfg.epochs} is over this server's cap of {self.max_epochs} per job "
                              f"(set ODENET_MAX_EPOCHS to change it)")
        if cfg.epochs * cfg.train_size > self.max_images:
            raise JobRejected(f"epochs x train_size = {cfg.epochs * cfg.train_size:,} images is over this server's "
                              f"cap of {self.max_images:,} per job (set ODENET_MAX_IMAGES to change it)")


@dataclass
class Job:
    """A training job's full state (mutated only by the manager under its lock)."""

    id: int
    config: TrainConfig
    name: str | None
    owner: str
    status: str = "queued"  # queued | running | finished | stopped | failed | cancelled
    run_dir: Path | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    events: list[TrainEvent] = field(default_factory=list)
    message: str = ""
    best_test_acc: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)  # handed to the Trainer
    resume_dir: Path | None = None  # a run to continue from its resume checkpoint instead of a new run


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job for rendering: never changes under the reader."""

    id: int
    config: TrainConfig
    owner: str
    status: str
    run_dir: Path | None
    submitted: float
    started: float | None
    ended: float | None
    events: tuple[TrainEvent, ...]
    message: str
    best_test_acc: float | None
    queue_position: int | None

    @property
    def last_batch(self) -> TrainEvent | None:
        return next((e for e in reversed(self.events) if e.kind == "batch"), None)

    @property
    def progress(self) -> float:
        """Fraction of optimisation steps done, 0..1."""
        ev = self.last_batch
        return 0.0 if ev is None or not ev.total_steps else min(1.0, ev.step / ev.total_steps)

    @property
    def last_test_acc(self) -> float | None:
        """Best full-test accuracy, else the latest evaluation's (a run stopped mid-epoch)."""
        if self.best_test_acc is not None:
            return self.best_test_acc
        return next((e.test_acc for e in reversed(self.events) if e.kind == "eval" and e.test_acc is not None), None)

    @property
    def images_seen(self) -> int:
        """Training images the run has gone through so far (steps x batch size)."""
        ev = self.last_batch
        return 0 if ev is None else ev.step * self.config.batch_size

    @property
    def train_losses(self) -> list[float]:
        """The reported training losses, in order."""
        return [e.train_loss for e in self.events if e.kind == "batch" and e.train_loss is not None]

    def _eval_images(self, batch: int, batches_per_epoch: int) -> int | None:
        """Test images of the evaluation due after ``batch`` of an epoch (None: none is due): all of
        them at the epoch's end, the mid-epoch subset every ``eval_every`` batches."""
        c = self.config
        if batch == batches_per_epoch:
            return TEST_SIZE
        if c.eval_every and batch % c.eval_every == 0:
            return c.eval_size or TEST_SIZE
        return None

    @property
    def phase(self) -> str:
        """What the worker is doing now: ``"starting"``, ``"training"`` or ``"evaluating"`` (on
        :attr:`eval_images` test images).

        The Trainer reports an evaluation when it ends; it is under way when the last report is
        a batch after which one is due (the epoch's last batch, or every ``eval_every``)."""
        ev = self.events[-1] if self.events else None
        if ev is None or ev.kind == "start":
            return "starting"
        return "evaluating" if self.eval_images is not None else "training"

    @property
    def eval_images(self) -> int | None:
        """Test images of the evaluation under way, None when none is."""
        ev = self.events[-1] if self.events else None
        return self._eval_images(ev.batch, ev.batches_per_epoch) if ev is not None and ev.kind == "batch" else None

    def _eval_rate(self) -> float:
        """Seconds per test image, from the evaluations so far or (none yet) the training speed."""
        evals = [e for e in self.events if e.kind == "eval" and e.eval_seconds]
        if evals:
            bpe = max(1, evals[-1].batches_per_epoch)
            images = sum(self._eval_images(e.batch, bpe) or 0 for e in evals)
            return evals[-1].eval_seconds / max(1, images)
        ev = self.last_batch
        ips = ev.images_per_s if ev is not None and ev.images_per_s else 500.0
        return 1.0 / (4 * ips)  # inference without backward, in batches of 1000: ~4x training speed

    def _evals_left(self) -> list[int]:
        """Test images of every evaluation still to come (mid-epoch subsets and full epoch ends)."""
        ev = self.last_batch
        if ev is None or not ev.batches_per_epoch:
            return []
        bpe, done = ev.batches_per_epoch, ev.step
        due = (self._eval_images((step - 1) % bpe + 1, bpe)
               for step in range(done + 1 if self.phase == "training" else done, ev.total_steps + 1))
        return [n for n in due if n is not None]

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time: training steps at the measured training speed plus the evaluations
        still to come at the measured (or estimated) evaluation speed.  None before the first
        report."""
        ev = self.last_batch
        if ev is None or ev.step == 0 or self.status != "running":
            return None
        evals = [e for e in self.events if e.kind == "eval" and e.eval_seconds]
        train_s = ev.elapsed - (evals[-1].eval_seconds if evals else 0.0)
        return max(0.0, train_s / ev.step * (ev.total_steps - ev.step)) + self._eval_rate() * sum(self._evals_left())

    def estimated_duration(self) -> float:
        """Rough total seconds for a queued job, from its size (used for queue waits)."""
        c = self.config
        nfe = c.model.solver.nfe_estimate  # evaluations per forward (one step's worth when adaptive)
        return c.epochs * c.train_size / 1000.0 * (0.5 + 0.04 * nfe * (3 if c.model.adaptive else 1))


_EVENT_FIELDS = frozenset(f.name for f in fields(TrainEvent))


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's nice value to ``nice`` (Linux: the value is per thread, and threads
    it starts afterwards, OpenMP's among them, inherit it); False where that is not possible.  The
    training worker calls it so that on a busy shared server the visitors' reruns get the cores first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return True
    except (AttributeError, OSError):
        return False


def read_events(path: str | Path, limit: int | None = None) -> list[TrainEvent]:
    """The TrainEvents of a metrics.jsonl (its first ``limit`` bytes); a torn or unknown line is skipped."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read() if limit is None else fh.read(limit)
    except OSError:
        return []
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            d = json.loads(line)
            out.append(TrainEvent(**{k: v for k, v in d.items() if k in _EVENT_FIELDS}))
        except (ValueError, TypeError):
            continue
    return out


def _file_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _iso_seconds(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if isinstance(text, str) else None
    except ValueError:
        return None


_RUN_SNAPSHOTS: BoundedLRU[JobSnapshot | None] = BoundedLRU(16)


def snapshot_from_run_dir(run_dir: str | Path, status: str | None = None,
                          owner: str | None = None) -> JobSnapshot | None:
    """A job's snapshot built from its run directory alone (config.json, status.json, metrics.jsonl):
    what a server shows of a job that another process trains.  Phase, progress and ETA come from the
    events as for a job of this process.  ``status`` overrides status.json's (the caller knows
    whether the run's process is alive); None if the directory holds no readable run.  Read once per
    version of the files, whoever asks (every visitor polls it)."""
    run = Path(run_dir)
    key = (str(run), status, owner, _file_key(run / "metrics.jsonl"), _file_key(run / "status.json"))

    def build() -> JobSnapshot | None:
        try:
            st = json.loads((run / "status.json").read_text(encoding="utf-8"))
            config = TrainConfig.from_json((run / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, OdenetError):
            return None
        st = st if isinstance(st, dict) else {}
        events = tuple(read_events(run / "metrics.jsonl"))
        best = st.get("best_test_acc")
        if best is None:
            best = max((e.test_acc for e in events if e.kind == "eval" and e.test_acc is not None
                        and e.batch == e.batches_per_epoch), default=None)
        who = owner or f"pid {st.get('pid', '?')} on host {st.get('host', '?')}"
        return JobSnapshot(0, config, who, status or str(st.get("status", "unknown")), run,
                           _iso_seconds(st.get("started")) or 0.0, _iso_seconds(st.get("started")),
                           _iso_seconds(st.get("ended")), events, str(st.get("message", "")), best, None)

    return _RUN_SNAPSHOTS.get_or_compute(key, build)


class JobManager:
    """Runs submitted :class:`TrainConfig` jobs one at a time in a daemon worker thread."""

    def __init__(self, runs_dir: str | Path | None = None, limits: JobLimits | None = None,
                 data_loader: Any = None) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.limits = limits or JobLimits.from_env()
        self._data_loader = data_loader  # callable -> (train, test); default: odenet.data.mnist.load_mnist
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._queue: deque[int] = deque()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._runs_lock = TrainLock(self.runs_dir)  # one job at a time across processes sharing runs_dir
        from odenet.train.runs import remove_stale_temp_files  # temp files of writes a killed server left behind

        remove_stale_temp_files(self.runs_dir)

    # -- public API -----------------------------------------------------------------------
    def submit(self, config: TrainConfig, name: str | None = None, owner: str = "anonymous") -> JobSnapshot:
        """Queue a job (it starts at once if nothing runs).  Raises JobRejected over the caps."""
        self.limits.check(config)
        with self._lock:
            if len(self._queue) >= self.limits.max_queue:
                raise QueueFull(f"{len(self._queue)} jobs are already waiting (cap {self.limits.max_queue}); "
                                f"try again when the current job ends")
            job = Job(next(self._ids), config, name, owner)
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._ensure_worker()
            self._wake.notify_all()
            return self._snap(job)

    def resume(self, run_dir: str | Path, owner: str = "anonymous") -> JobSnapshot:
        """Queue the continuation of an interrupted or stopped run from its resume checkpoint (its own
        settings; the same caps as a new job).  ResumeError (a ValueError) if it cannot be resumed."""
        run_dir = Path(run_dir)
        config = Trainer.resume(run_dir).config  # checks the run now: a bad one is refused, not queued
        self.limits.check(config)
        with self._lock:
            if any(j.resume_dir is not None and j.resume_dir.resolve() == run_dir.resolve() and j.status in ACTIVE
                   for j in self._jobs.values()):
                raise JobRejected(f"run {run_dir.name} is already being resumed")
            if len(self._queue) >= self.limits.max_queue:
                raise QueueFull(f"{len(self._queue)} jobs are already waiting (cap {self.limits.max_queue}); "
                                f"try again when the current job ends")
            job = Job(next(self._ids), config, run_dir.name, owner, resume_dir=run_dir)
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._ensure_worker()
            self._wake.notify_all()
            return self._snap(job)

    def elsewhere(self) -> JobSnapshot | None:
        """The job another process (a second server, the CLI) trains in this runs directory now, read
        from its run directory; None when none does."""
        holder = lock_holder(self.runs_dir)
        if holder is None or self._runs_lock.held or not holder.get("run"):
            return None
        snap = snapshot_from_run_dir(self.runs_dir / str(holder["run"]), status="running",
                                     owner=f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}")
        return snap

    def stop(self, job_id: int, requester: str | None = None, presenter: bool = True) -> bool:
        """Stop a running job (within one batch) or cancel a queued one.  True if it acted.

        A job belongs to the session that submitted it: with ``presenter=False`` only its owner
        (``requester``) may stop it, and :class:`NotYourJob` says so to anyone else.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            if not presenter and requester != job.owner:
                raise NotYourJob(f"job #{job.id} was started by another visitor; only they or the presenter can "
                                 f"stop it")
            if job.status == "queued":
                self._queue.remove(job_id)
                job.status, job.ended, job.message = "cancelled", time.time(), "cancelled before it started"
                self._wake.notify_all()  # wake wait() on this job: it has ended
                return True
            if job.status == "running":  # its Trainer may not exist yet: it will read this event
                job.stop_event.set()
                return True
            return False

    def snapshot(self, job_id: int) -> JobSnapshot | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else self._snap(job)

    def current(self) -> JobSnapshot | None:
        """The running job, if any."""
        with self._lock:
            job = next((j for j in self._jobs.values() if j.status == "running"), None)
            return None if job is None else self._snap(job)

    def queued(self) -> list[JobSnapshot]:
        with self._lock:
            return [self._snap(self._jobs[i]) for i in self._queue]

    def current_or_next(self) -> JobSnapshot | None:
        """The running job, else the first queued one, else None: one read under the lock, where
        two (the queue, then the running job) could see the worker start or end a job in between."""
        with self._lock:  # reentrant: current() takes it again
            running = self.current()
            if running is not None or not self._queue:
                return running
            return self._snap(self._jobs[self._queue[0]])

    def jobs(self) -> list[JobSnapshot]:
        """All jobs this process knows, newest first."""
        with self._lock:
            return [self._snap(j) for j in sorted(self._jobs.values(), key=lambda j: -j.id)]

    def active_run_dirs(self) -> set[Path]:
        with self._lock:
            return {j.run_dir.resolve() for j in self._jobs.values() if j.status == "running" and j.run_dir}

    def wait_until_start_estimate(self, job_id: int) -> float | None:
        """Seconds until a queued job should start (remaining time of the running job plus
        estimates of those ahead of it); None if it is not queued."""
        with self._lock:
            if job_id not in self._queue:
                return None
            cur = self.current() or self.elsewhere()
            wait = 0.0
            if cur is not None:
                wait += cur.eta_seconds if cur.eta_seconds is not None else cur.estimated_duration()
            for i in self._queue:
                if i == job_id:
                    break
                wait += self._snap(self._jobs[i]).estimated_duration()
            return wait

    def wait(self, job_id: int, timeout: float | None = None) -> JobSnapshot | None:
        """Block until the job is no longer queued/running (tests, CLI); None for an unknown job
        (or one so old that it is no longer kept, see KEEP_ENDED_JOBS)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (job := self._jobs.get(job_id)) is not None and job.status in ACTIVE:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._wake.wait(left if left is not None else 1.0)
            return None if job is None else self._snap(job)

    def close(self) -> None:
        """Stop the running job, cancel the queue and end the worker."""
        with self._lock:
            self._closed = True
            for i in list(self._queue):
                self.stop(i)
            for job in self._jobs.values():
                if job.status == "running":
                    job.stop_event.set()
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60)

    # -- internals ----------------------------------------------------------------------
    def _snap(self, job: Job) -> JobSnapshot:
        pos = (list(self._queue).index(job.id) + 1) if job.id in self._queue else None
        return JobSnapshot(job.id, job.config, job.owner, job.status, job.run_dir, job.submitted, job.started,
                           job.ended, tuple(job.events), job.message, job.best_test_acc, pos)

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._loop, name="odenet-train-worker", daemon=True)
            self._worker.start()

    def _loop(self) -> None:
        if self.limits.train_nice > 0:
            lower_thread_priority(self.limits.train_nice)  # first: the intra-op threads started below inherit it
        if self.limits.train_threads > 0:
            torch.set_num_threads(self.limits.train_threads)
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
                head = self._jobs[self._queue[0]]
            if not self._runs_lock.acquire(head.name if head.resume_dir is not None else None):
                with self._lock:  # another process trains in this runs directory: wait, queued, saying where
                    holder = lock_holder(self.runs_dir)
                    head.message = (f"waiting: another process trains in {self.runs_dir} now, "
                                    f"{holder_text(holder or {})}; this job starts when it ends")
                    self._wake.wait(LOCK_POLL_S)
                continue
            with self._lock:
                if not self._queue or self._queue[0] != head.id:  # cancelled while it waited
                    self._runs_lock.release()
                    continue
                job = self._jobs[self._queue.popleft()]
                job.status, job.started, job.message = "running", time.time(), ""
            speed_book().give_way()  # a speed probe stops and waits: it would slow and reseed this job
            try:
                self._run(job)
            finally:
                self._runs_lock.release()  # a no-op after _run's own release; kept for a failure outside it
                speed_book().job_done()
            release_free_memory()  # the job's model and activations are freed now: back to the system

    def _run(self, job: Job) -> None:
        def on_event(ev: TrainEvent) -> None:
            with self._lock:
                job.events.append(ev)
                if ev.kind == "eval" and ev.test_acc is not None and ev.batch == ev.batches_per_epoch:
                    job.best_test_acc = max(job.best_test_acc or 0.0, ev.test_acc)

        status, message = "failed", ""
        try:
            if job.resume_dir is not None:  # the run's events so far, then its own from the resume point on
                trainer = Trainer.resume(job.resume_dir, data=self._data_loader, callback=on_event,
                                         stop_event=job.stop_event)
                point = trainer.resume_point
                with self._lock:
                    job.run_dir = run_dir = job.resume_dir
                    job.events[:0] = read_events(run_dir / "metrics.jsonl", int(point.state["metrics_bytes"]))
            else:
                run_dir = new_run_dir(self.runs_dir, job.name, job.config)
                with self._lock:
                    job.run_dir = run_dir
                trainer = Trainer(job.config, data=self._data_loader, run_dir=run_dir, callback=on_event,
                                  stop_event=job.stop_event)
            self._runs_lock.record(run_dir.name)
            res = trainer.run()
            status, message = res.status, res.message
            if job.resume_dir is None:  # what this server really does with this solver: the page's time estimates
                speed_book().record(job.config, speed_from_events(res.history, job.config, f"job #{job.id} here"))
            with self._lock:
                job.best_test_acc = res.best_test_acc
        except torch.OutOfMemoryError as exc:
            message = f"out of memory: {str(exc).splitlines()[0]}; use a smaller batch size or fewer steps"
        except Exception as exc:  # a failing job must never take the server down
            message = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        self._runs_lock.release()  # before the job reads as ended: whoever waits on it finds the directory free
        with self._lock:
            job.status, job.message, job.ended = status, message, time.time()
            ended = sorted(j.id for j in self._jobs.values() if j.status not in ACTIVE)
            for old_id in ended[:-KEEP_ENDED_JOBS]:  # a demo server runs for days: keep the newest ended jobs
                del self._jobs[old_id]
            self._wake.notify_all()


_MANAGERS: dict[Path, JobManager] = {}
_MANAGER_LOCK = threading.Lock()


@atexit.register
def close_all_managers() -> None:
    """Stop running jobs and join the workers before the interpreter exits: a daemon thread
    killed inside torch leaves its C++ threads joinable ("terminate called without an active
    exception") and a run directory stuck at "running"."""
    with _MANAGER_LOCK:
        managers = list(_MANAGERS.values())
        _MANAGERS.clear()
    for m in managers:
        m.close()


def get_manager() -> JobManager:
    """The process-wide manager for the current runs directory (created on first use).

    A server has one runs directory, hence one manager and one job at a time; keying by
    directory only matters to tests that point ``ODENET_RUNS`` elsewhere.
    """
    key = default_runs_dir().resolve()
    with _MANAGER_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = JobManager(key)
        return _MANAGERS[key]

