"""The runs directory: list finished/stopped/interrupted runs, read their metrics, and the lock that
lets one job at a time train across every process sharing the directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from odenet.errors import OdenetError
from odenet.train.checkpoints import pretrained_models, resume_files, summarize_checkpoint
from odenet.train.config import TrainConfig
from odenet.train.trainer import default_runs_dir, process_alive

__all__ = ["RunInfo", "list_runs", "read_metrics", "ModelChoice", "available_models", "config_solver_label", "RunBusy",
           "delete_run", "remove_stale_temp_files", "TrainLock", "LOCK_NAME", "lock_holder", "holder_text"]


@dataclass
class RunInfo:
    """One run directory as the app lists it."""

    name: str
    path: Path
    status: str  # running | finished | stopped | failed | interrupted | unknown
    config: dict[str, Any] = field(default_factory=dict)
    best_test_acc: float | None = None
    final_test_acc: float | None = None
    duration: float | None = None
    started: str | None = None
    message: str = ""
    final_solver: str | None = None  # the training solver at the end (step adaptation can change it)

    @property
    def checkpoint(self) -> Path | None:
        p = self.path / "last.pt"
        return p if p.is_file() else None

    @property
    def resumable(self) -> bool:
        """Interrupted or stopped with a resume checkpoint: ``python -m odenet train --resume`` continues it."""
        return self.status in ("interrupted", "stopped") and bool(resume_files(self.path))

    @property
    def solver_label(self) -> str:
        """The solver the run ended with; ``"rk4 x4 (from rk4 x1)"`` when step adaptation changed it."""
        start = config_solver_label(self.config)
        if self.final_solver and self.final_solver != start:
            return f"{self.final_solver} (from {start})"
        return start

    @property
    def legend(self) -> str:
        """A chart legend that says what the run was: ``"classroom · rk4 x1 · 12:31:05"`` (a run
        named by its user keeps its name after the recipe and solver)."""
        m = re.fullmatch(r"\d{8}-(\d\d)(\d\d)(\d\d)-.*?(-\d+)?", self.name)
        when = f"{m[1]}:{m[2]}:{m[3]}{m[4] or ''}" if m else self.name
        return f"{self.config.get('preset') or 'custom'} · {self.solver_label} · {when}"

    def label(self) -> str:
        acc = f"{100 * self.best_test_acc:.2f}%" if self.best_test_acc is not None else "n/a"
        return f"{self.name} ({self.solver_label}, {self.status}, best {acc})"


def config_solver_label(config: dict[str, Any]) -> str:
    """The solver label of a saved run's config dict (nested or flat form); "?" if unreadable."""
    try:
        return TrainConfig.from_dict(dict(config)).model.label()
    except (OdenetError, TypeError):
        return "?"


_pid_alive = process_alive


# -- one training job at a time per runs directory ----------------------------------------------
LOCK_NAME = ".train.lock"


class TrainLock:
    """The runs directory's training lock: ``<runs>/.train.lock``, held with ``fcntl.flock`` by the
    process that trains (the app's job worker, the CLI), so the processes sharing a runs directory
    (two servers, a restarted one, the CLI) train one job at a time.  The kernel releases it when
    its holder dies (SIGKILL, out of memory); the file records the holder's pid, host and run so the
    others can say where the running job is.  flock is per open file: a second TrainLock in the same
    process conflicts too."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.path = Path(runs_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, run: str | None = None, what: str = "job") -> bool:
        """Take the lock without waiting; True if this object holds it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.record(run, what)
        return True

    def record(self, run: str | None, what: str = "job") -> None:
        """Say in the lock file who holds it: pid, host, the run directory's name, since when."""
        if self._fd is None:
            return
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": run, "what": what,
                           "since": time.time()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, info, 0)

    def release(self) -> None:
        """Let the next job train (closing the file drops the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> TrainLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(runs_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Who trains in ``runs_dir`` now: the lock file's record (pid, host, run, what, since), or None
    when nobody holds the lock.  Probes with a shared flock, so it never blocks and never takes the
    lock from a trainer for longer than the probe."""
    path = (Path(runs_dir) if runs_dir is not None else default_runs_dir()) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            for _ in range(5):  # the holder writes its record right after taking the lock
                try:
                    obj = json.loads(os.pread(fd, 4096, 0) or b"null")
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    return obj
                time.sleep(0.02)
            return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def holder_text(holder: dict[str, Any]) -> str:
    """Where the running job is, in words: ``run 2026...-rk4x1 (pid 123 on host h)``."""
    run = holder.get("run")
    where = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    return f"run {run} ({where})" if run else f"a job starting ({where})"


def _read_status(run: Path) -> dict[str, Any]:
    try:
        obj = json.loads((run / "status.json").read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _mtime(path: Path) -> float:
    """A directory's modification time for sorting; a run deleted meanwhile sorts last (no error)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return float("-inf")


def list_runs(runs_dir: str | Path | None = None, active: set[Path] | None = None) -> list[RunInfo]:
    """All run directories, newest first.  A run whose status says 'running' but whose
    process is gone (or that no active job owns, when ``active`` is given) is 'interrupted'."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not root.is_dir():
        return []
    out = []
    holder = lock_holder(root) or {}
    for run in sorted((p for p in root.iterdir() if p.is_dir()), key=_mtime, reverse=True):
        if not run.is_dir():  # deleted since the listing (another visitor, New class)
            continue
        st = _read_status(run)
        status = st.get("status", "unknown")
        if status == "running":
            alive = _pid_alive(st.get("pid"), st.get("host")) or (  # another host: the lock says it lives
                holder.get("run") == run.name and holder.get("pid") == st.get("pid"))
            if not alive or (active is not None and st.get("pid") == os.getpid() and run.resolve() not in active):
                status = "interrupted"
        final_solver = st.get("final_solver")
        out.append(RunInfo(run.name, run, status, st.get("config") or {}, st.get("best_test_acc"),
                           st.get("final_test_acc"), st.get("duration"), st.get("started"), st.get("message", ""),
                           final_solver if isinstance(final_solver, str) else None))
    return out


def read_metrics(run: str | Path) -> pd.DataFrame:
    """The run's metrics.jsonl as a DataFrame (empty if none yet); torn last lines are skipped."""
    path = Path(run) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ModelChoice:
    """A model the pages can load: shipped with the repo or produced by a run."""

    key: str
    label: str
    path: Path
    source: str  # shipped | run


def available_models(runs_dir: str | Path | None = None) -> list[ModelChoice]:
    """Shipped models first, then runs with a checkpoint (finished or stopped), newest first."""
    out = []
    for name, path in pretrained_models().items():
        try:
            out.append(ModelChoice(f"shipped:{name}", summarize_checkpoint(path, name).label(), path, "shipped"))
        except OdenetError:
            continue  # an unreadable shipped file is reported by the Home page, not offered here
    for run in list_runs(runs_dir):
        if run.checkpoint is not None and run.status in ("finished", "stopped", "interrupted"):
            out.append(ModelChoice(f"run:{run.name}", f"run {run.label()}", run.checkpoint, "run"))
    return out


class RunBusy(OdenetError, RuntimeError):
    """A run cannot be deleted while a job trains into it."""


def delete_run(run: str | Path, active: set[Path] | None = None, runs_dir: str | Path | None = None) -> None:
    """Delete a run directory (by name under ``runs_dir`` or by path).  Refuses a run that a job is
    training (``active``: the manager's active run dirs; also any run whose status.json says a live
    process is running it) instead of pulling the files from under it; refuses paths outside the
    runs directory."""
    root = (Path(runs_dir) if runs_dir is not None else default_runs_dir()).resolve()
    path = (root / run if isinstance(run, str) else Path(run)).resolve()
    if path.parent != root or not path.is_dir():
        raise RunBusy(f"{run!s} is not a run directory under {root}")
    st = _read_status(path)
    if (active and path in {p.resolve() for p in active}) or (
            st.get("status") == "running" and _pid_alive(st.get("pid"), st.get("host"))
            and (active is None or st.get("pid") != os.getpid())):
        raise RunBusy(f"run {path.name} is training; stop it first, then delete it")
    shutil.rmtree(path)


def remove_stale_temp_files(runs_dir: str | Path | None = None, active: set[Path] | None = None) -> list[Path]:
    """Remove the temp files of interrupted atomic writes (``.<name>.*.tmp``) in runs that nothing
    is writing to any more; returns what was removed.  Called when the app's job manager starts."""
    removed = []
    for info in list_runs(runs_dir, active=active):
        if info.status == "running":
            continue
        for tmp in info.path.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed
