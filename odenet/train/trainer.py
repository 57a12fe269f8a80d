"""The training engine: one Trainer for the CLI, the app's background job and the tests.

Progress is reported as :class:`TrainEvent` values through a callback (and recorded in the
run directory's ``metrics.jsonl``).  ``stop()`` is cooperative: the current batch finishes,
a consistent checkpoint is written, and ``run()`` returns with status ``"stopped"``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from odenet.data.mnist import MNISTSplit, iterate_batches, load_mnist, normalize
from odenet.errors import OdenetError
from odenet.model.regularizers import Regularized, solver_accuracies, steer_solver
from odenet.model.rknet import RKNet
from odenet.ode.solvers import SolverSpec
from odenet.train.checkpoints import ResumeError, ResumePoint, load_resume, save_checkpoint, save_resume
from odenet.train.config import TrainConfig
from odenet.utils import amp_pays, atomic_write_text, pick_device, safe_name

__all__ = ["TrainEvent", "TrainResult", "TrainingDiverged", "Trainer", "Ranks", "MetricsWindow", "evaluate",
           "default_runs_dir", "new_run_dir", "decay_groups", "process_alive", "RESUME_EVERY"]


ADAPT_HOLDOUT = 500  # held-out training images on which step adaptation compares solvers
# Seconds between mid-epoch resume checkpoints (also written at every epoch end and on stop); one
# costs ~4 MB and ~17 ms (docs/training.md, "Resuming a run").  ODENET_RESUME_EVERY overrides.
RESUME_EVERY = 30.0


def resume_every_default() -> float:
    """``$ODENET_RESUME_EVERY`` (seconds, 0 = at every report) if set and valid, else :data:`RESUME_EVERY`."""
    try:
        v = float(os.environ.get("ODENET_RESUME_EVERY", RESUME_EVERY))
    except ValueError:
        return RESUME_EVERY
    return v if math.isfinite(v) and v >= 0 else RESUME_EVERY


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def process_alive(pid: Any, host: Any) -> bool:
    """Whether process ``pid`` runs on this host (False for another host: it cannot be asked)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, {} if missing or unreadable."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


class TrainingDiverged(OdenetError, RuntimeError):
    """The loss became NaN or infinite; training stopped and no bad weights were saved."""


@dataclass
class TrainEvent:
    """One progress report.  ``kind`` is 'start', 'batch', 'eval', 'epoch', 'solver' or 'end'.

    Batch events carry ``train_loss``/``train_acc`` averaged since the last batch event,
    ``images_per_s`` over that window and ``nfe`` per forward pass; eval events carry
    ``test_loss``/``test_acc`` and ``eval_seconds`` (all evaluation time so far, so training
    time is ``elapsed - eval_seconds``); 'end' carries ``status`` and ``message``.  With
    regularisers on, batch events also carry their raw window means ``kinetic``/``jacobian``.
    'solver' events (step adaptation) carry the new ``solver_steps`` and a ``message`` saying why.
    """

    kind: str
    epoch: int = 0
    batch: int = 0
    batches_per_epoch: int = 0
    step: int = 0
    total_steps: int = 0
    elapsed: float = 0.0
    train_loss: float | None = None
    train_acc: float | None = None
    images_per_s: float | None = None
    nfe: float | None = None
    lr: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    eval_seconds: float | None = None
    status: str | None = None
    message: str | None = None
    kinetic: float | None = None
    jacobian: float | None = None
    solver_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class TrainResult:
    status: str  # finished | stopped | failed
    model: RKNet
    run_dir: Path | None
    best_test_acc: float | None
    final_test_acc: float | None
    elapsed: float
    message: str = ""
    history: list[TrainEvent] = field(default_factory=list)


def default_runs_dir() -> Path:
    """``$ODENET_RUNS`` if set, else ``runs`` in the working directory (the checkout, for ``make``).

    Never a path inside the installed package: a wheel's site-packages is not ours to write."""
    env = os.environ.get("ODENET_RUNS")
    return Path(env) if env else Path.cwd() / "runs"


def new_run_dir(runs_dir: Path | None = None, name: str | None = None, config: TrainConfig | None = None) -> Path:
    """Create a fresh run directory; never reuses (so never overwrites) an existing run."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs_dir.mkdir(parents=True, exist_ok=True)
    if name is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        label = config.model.label().replace(" ", "") if config is not None else "run"
        name = f"{stamp}-{label}"
    base = safe_name(name)
    for i in range(1000):
        cand = runs_dir / (base if i == 0 else f"{base}-{i}")
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory for {base!r} under {runs_dir}")


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(model: RKNet, split: MNISTSplit, batch_size: int = 1000,
             device: torch.device | str | None = None, solver: SolverSpec | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` on ``split`` in eval mode, solved
    with ``solver`` (default: the model's own).

    Under torch.distributed each rank evaluates its shard and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    rank, world = dist_rank_world()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for x, y in iterate_batches(split, batch_size, device=device, shard=(rank, world)):
        logits = model(x, solver=solver)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += y.shape[0]
    if world > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    n = max(1.0, float(sums[2]))
    return float(sums[0]) / n, float(sums[1]) / n


def lr_factor(step: int, total: int, warmup: float = 0.25, start: float = 0.04, end: float = 1e-3,
              restart: float = 0.0, restart_peak: float = 0.5) -> float:
    """Learning-rate multiplier: linear warm-up from ``start`` over ``warmup * total`` steps,
    then cosine decay to ``end`` (one-cycle); ``warmup=0`` is plain cosine.  Works for any
    ``total >= 1`` (torch's OneCycleLR fails on very short runs).  ``restart`` in (0, 1): that
    one-cycle over the first ``restart * total`` steps, then another, its peak ``restart_peak``,
    over the rest (each with the same warm-up fraction)."""
    if restart > 0:
        first = max(1, round(restart * total))
        if step < first:
            return lr_factor(step, first, warmup, start, end)
        return restart_peak * lr_factor(step - first, max(1, total - first), warmup, start, end)
    w = int(warmup * total)
    if step < w:
        return start + (1 - start) * step / w
    frac = min(1.0, (step - w) / max(1, total - w))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * frac))


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser param groups: conv/linear weights (ndim > 1) decay by ``weight_decay``;
    biases and BatchNorm scales/shifts (ndim 1) get none, since shrinking them towards zero
    only shifts activations and fights the normalisation.  Every optimizer uses these groups,
    so ``--weight_decay`` means the same thing for adamw, adam and sgd."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _ema_update(decay: float, warmup: float = 10.0) -> Callable[..., None]:
    """EMA step for AveragedModel with a warm-up: the decay grows as (1 + n) / (warmup + n) up to
    ``decay``, so the average does not drag the random initial weights through a short run (it
    spans about the last n / (warmup - 1) steps until the decay reaches ``decay``)."""

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (warmup + n))
        if ema[0].is_floating_point():  # called once per dtype group
            torch._foreach_lerp_(ema, current, 1.0 - d)
        else:  # BatchNorm's step counters: keep the live model's
            for e, c in zip(ema, current):
                e.copy_(c)

    return update


class Ranks:
    """Everything the training loop needs from torch.distributed, as no-ops at world size 1.

    Every rank calls the same collectives in the same order: :meth:`decide` reduces the stop
    and divergence flags only on sync steps, and on the other steps a multi-rank run ignores
    its local stop flag (acting on it alone would send ranks down different paths into the next
    collective and hang).  ``all_reduce`` is injectable for tests.
    """

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None, sync_every: int = 1,
                 all_reduce: Callable[[torch.Tensor], Any] | None = None) -> None:
        self.rank, self.world = rank, world
        self.device = device or torch.device("cpu")
        self.sync_every = max(1, sync_every)
        self._all_reduce = all_reduce or dist.all_reduce

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place; identity at world size 1)."""
        if self.world > 1:
            self._all_reduce(t)
        return t

    def decide(self, step: int, stop_requested: bool, loss: torch.Tensor) -> tuple[bool, bool]:
        """(stop, diverged) agreed by every rank.  Reads the loss (a host sync) only on sync steps."""
        sync = step % self.sync_every == 0
        if self.world == 1:
            return stop_requested, sync and not math.isfinite(loss.item())
        if not sync:
            return False, False
        flags = torch.tensor([float(stop_requested), float(not math.isfinite(loss.item()))], device=self.device)
        self.sum(flags)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average BatchNorm running statistics over ranks (DDP keeps them per rank), so every
        rank evaluates and saves the same model."""
        if self.world > 1:
            for buf in model.buffers():
                if buf.is_floating_point():
                    self.sum(buf)
                    buf.div_(self.world)


class MetricsWindow:
    """Training loss/accuracy/NFE accumulated on the device between reports (no per-batch sync)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
        self.regs = torch.zeros(2, dtype=torch.float64, device=device)  # kinetic, jacobian sums (per batch)
        self.reg_names: set[str] = set()
        self.batches = 0
        self.n = 0
        self.nfe = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, nfe: int,
            regs: dict[str, torch.Tensor] | None = None) -> None:
        for i, name in enumerate(("kinetic", "jacobian")):
            if regs and name in regs:
                self.regs[i] += regs[name].detach().double()
                self.reg_names.add(name)
        self.batches += 1
        self.sums[0] += loss.detach().double() * y.shape[0]
        self.sums[1] += (logits.detach().argmax(1) == y).sum()
        self.n += y.shape[0]
        self.nfe += nfe

    def report(self, ranks: Ranks, batch_size: int) -> dict[str, float]:
        """Reduce over ranks, return the window's means and start a new window."""
        totals = torch.cat([self.sums, self.regs, torch.tensor([self.n, self.nfe, self.batches],
                                                               dtype=self.sums.dtype, device=self.sums.device)])
        loss_sum, correct, kin, jac, n, nfe, batches = ranks.sum(totals).tolist()
        now = time.perf_counter()
        out = {"train_loss": loss_sum / n, "train_acc": correct / n, "images_per_s": n / (now - self.started),
               "nfe": nfe * batch_size / n}
        for name, v in (("kinetic", kin), ("jacobian", jac)):
            if name in self.reg_names:
                out[name] = v / batches
        self.sums.zero_()
        self.regs.zero_()
        self.n = self.nfe = self.batches = 0
        self.started = time.perf_counter()
        return out


class Trainer:
    """Train an RKNet from a :class:`TrainConfig`.

    ``data`` (train, test), or a callable returning it, defaults to the packaged MNIST;
    ``run_dir`` (optional) receives config.json, metrics.jsonl, status.json, last.pt and
    best.pt; ``callback`` gets every :class:`TrainEvent`; ``stop_event`` (optional) is the
    event that :meth:`stop` sets, so a caller can hold it before the trainer exists.  Under
    torchrun, :meth:`run` joins (and leaves) the process group; construction has no side effects.
    """

    def __init__(self, config: TrainConfig,
                 data: tuple[MNISTSplit, MNISTSplit] | Callable[[], tuple[MNISTSplit, MNISTSplit]] | None = None,
                 run_dir: str | Path | None = None, callback: Callable[[TrainEvent], None] | None = None,
                 stop_event: threading.Event | None = None, resume: ResumePoint | None = None,
                 resume_every: float | None = None) -> None:
        self.config = config
        self._data = data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callback = callback
        self._stop = stop_event if stop_event is not None else threading.Event()
        self.device = pick_device(config.device)
        self.history: list[TrainEvent] = []
        self.ranks = Ranks()
        self.amp = False
        self.step = 0
        self.best_acc: float | None = None
        self.final_acc: float | None = None
        self._model: RKNet | None = None
        self._ema: torch.optim.swa_utils.AveragedModel | None = None
        self._total = 0
        self._bpe = 0
        self._eval_seconds = 0.0
        self._start = 0.0
        self._status: dict[str, Any] = {}
        self.solver: SolverSpec = config.model.solver  # the training solver now (step adaptation changes it)
        self._holdout: tuple[torch.Tensor, torch.Tensor] | None = None  # step adaptation's held-out batch
        self._steer_gen: torch.Generator | None = None
        # resuming (resume checkpoints: odenet.train.checkpoints.save_resume)
        self._resume = resume
        self.resume_every = resume_every_default() if resume_every is None else max(0.0, float(resume_every))
        self._last_resume_save = 0.0
        self._opt: torch.optim.Optimizer | None = None
        self._sched: Any = None
        self._gen: torch.Generator | None = None
        self._epoch_rng: torch.Tensor | None = None  # the data generator's state when the epoch began

    @classmethod
    def resume(cls, run_dir: str | Path,
               data: tuple[MNISTSplit, MNISTSplit] | Callable[[], tuple[MNISTSplit, MNISTSplit]] | None = None,
               callback: Callable[[TrainEvent], None] | None = None, stop_event: threading.Event | None = None,
               resume_every: float | None = None) -> Trainer:
        """A Trainer that continues ``run_dir`` from its newest readable resume checkpoint (a damaged one
        falls back to the one before; ``resume_notes`` says so).  ResumeError if the run cannot be
        resumed: no such directory, no resume checkpoint, already finished."""
        run_dir = Path(run_dir)
        status = _read_json(run_dir / "status.json") if run_dir.is_dir() else {}
        if status.get("status") == "finished":
            raise ResumeError(f"cannot resume {run_dir}: it has finished; there is nothing left to train")
        if status.get("status") == "running" and process_alive(status.get("pid"), status.get("host")):
            raise ResumeError(f"cannot resume {run_dir}: it is training now (pid {status.get('pid')} on "
                              f"{status.get('host')})")
        point = load_resume(run_dir)
        return cls(point.config, data, run_dir, callback, stop_event, resume=point, resume_every=resume_every)

    @property
    def resume_point(self) -> ResumePoint | None:
        """The resume checkpoint this trainer continues from (None for a fresh run)."""
        return self._resume

    @property
    def resume_notes(self) -> list[str]:
        """What resuming had to skip (damaged checkpoints), for the caller to show."""
        return list(self._resume.notes) if self._resume is not None else []

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current batch (thread-safe)."""
        self._stop.set()

    # -- helpers ------------------------------------------------------------------------
    def _emit(self, ev: TrainEvent) -> None:
        """Report ``ev`` to the caller, then append it to metrics.jsonl (OSError if that fails)."""
        self.history.append(ev)
        if self.callback is not None:
            self.callback(ev)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(ev.to_dict()) + "\n")

    def _write_status(self, **info: Any) -> None:
        if self.run_dir is None:
            return
        self._status.update(info)
        atomic_write_text(self.run_dir / "status.json", json.dumps(self._status, indent=2))

    def _join_process_group(self) -> bool:
        """Under torchrun (WORLD_SIZE > 1, no group yet) start the group: gloo on CPU, NCCL on
        CUDA with one GPU per local rank.  Returns True if this trainer owns the group."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
            return False
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        return True

    def _build(self, total: int) -> tuple[RKNet, torch.optim.Optimizer, Any]:
        cfg = self.config
        model = RKNet(cfg.model).to(self.device).to(memory_format=torch.channels_last)
        groups = decay_groups(model, cfg.weight_decay)
        groups[1]["lr"] = cfg.lr * cfg.norm_lr_scale  # biases and BatchNorm: their own (often larger) rate
        if cfg.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        elif cfg.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=cfg.lr)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        sched = None
        if cfg.schedule != "constant":
            warm = cfg.warmup if cfg.schedule == "onecycle" else 0.0
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: lr_factor(step, total, warm, restart=cfg.restart, restart_peak=cfg.restart_peak))
        return model, opt, sched

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to the end, or until stopped or diverged (status 'stopped' / 'failed' with the
        reason in ``message``).  Any other error is recorded in status.json and re-raised."""
        cfg = self.config
        owns_group = self._join_process_group()
        rank, world = dist_rank_world()
        sync_every = 1 if self.device.type == "cpu" else cfg.log_every  # no per-batch host sync on GPU
        self.ranks = Ranks(rank, world, self.device, sync_every)
        if rank != 0:  # only rank 0 reports and writes the run directory
            self.run_dir, self.callback = None, None
        self._start = time.perf_counter()
        self._status = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                        "started": _now(), "config": cfg.to_dict()}
        if self._resume is not None:
            if world > 1:
                raise ResumeError("resuming is not supported under torchrun (several processes); resume on one")
            old = _read_json(self.run_dir / "status.json") if self.run_dir is not None else {}
            self._status.update(started=old.get("started", self._status["started"]), resumed=_now(),
                                resumed_from=self._resume.path.name)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self._resume is None:
                atomic_write_text(self.run_dir / "config.json", cfg.to_json())
            self._write_status()
        try:
            status, message = self._train()
        except TrainingDiverged as exc:
            status, message = "failed", str(exc)
        except OSError as exc:  # disk full, run directory removed, ...: the run fails, the caller keeps going
            if self._model is None:
                raise
            status = "failed"
            message = (f"could not write the run's files ({exc.strerror or exc}"
                       f"{': ' + str(exc.filename) if exc.filename else ''}); the last complete checkpoint is kept")
        except BaseException as exc:  # record the failure in the run directory, then let the caller see it
            with contextlib.suppress(OSError):
                self._write_status(status="failed", message=f"{type(exc).__name__}: {exc}", ended=_now())
            raise
        finally:
            if owns_group:
                # DDP's C++ reducer holds threads of the group: collect it (it sits in reference cycles)
                # before the group goes, or the interpreter's exit aborts with "terminate called without an
                # active exception" (seen on rank 1 of the torchrun test)
                gc.collect()
                dist.destroy_process_group()
        elapsed = time.perf_counter() - self._start
        model = self._final_model()
        model.eval()
        with contextlib.suppress(OSError):  # a full disk must not hide the run's real outcome from the caller
            self._emit(TrainEvent("end", step=self.step, total_steps=self._total, elapsed=elapsed, status=status,
                                  message=message, test_acc=self.final_acc))
        with contextlib.suppress(OSError):
            self._write_status(status=status, message=message, best_test_acc=self.best_acc,
                               final_test_acc=self.final_acc, ended=_now(), duration=elapsed, steps=self.step,
                               final_solver=self.solver.label())
        return TrainResult(status, model, self.run_dir, self.best_acc, self.final_acc, elapsed, message, self.history)

    def _average_buffers(self) -> None:
        """BatchNorm statistics averaged over ranks, for the trained model and its EMA copy."""
        self.ranks.average_buffers(self._model)
        if self._ema is not None:
            self.ranks.average_buffers(self._ema.module)

    def _result_model(self) -> RKNet:
        """What the run produces: the exponential moving average of the weights when ``config.ema``
        is set (evaluated and saved), else the trained model itself."""
        return self._ema.module if self._ema is not None else self._model

    def _final_model(self) -> RKNet:
        """The result model, rebuilt with the final solver when step adaptation changed it."""
        model = self._result_model()
        if self.solver == model.config.solver:
            return model
        final = RKNet(model.config.with_solver(self.solver)).to(self.device)
        final.load_state_dict(model.state_dict())
        return final

    def _freeze_field_bn(self) -> None:
        """From ``field_bn_freeze`` of the steps on, put the vector field's BatchNorm layers in eval mode:
        they normalise by their running statistics (no longer updated) as evaluation does.  In training
        mode every solver stage uses its own batch statistics, while the running statistics are one mix
        over the stages (RK4's four stages differ up to ~8x in variance on the speedrun), so a model fitted
        to the former can lose points when evaluated with the latter; frozen, the rest of training fits
        the evaluated model.  Called before every step (the evaluations put the model back in training mode)."""
        cfg = self.config
        if cfg.field_bn_freeze and self.step >= round(cfg.field_bn_freeze * self._total):
            for m in self._model.gradient.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _metrics(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "step": self.step, "best_test_acc": self.best_acc, "test_acc": self.final_acc,
                "elapsed": time.perf_counter() - self._start}

    def _save(self, name: str, epoch: int) -> None:
        if self.run_dir is not None:
            model = self._result_model()
            save_checkpoint(self.run_dir / name, model, self.config, self._metrics(epoch),
                            model_config=model.config.with_solver(self.solver))

    def _evaluate(self, epoch: int, batch: int, split: MNISTSplit, full: bool) -> None:
        """Evaluate, report, and keep best.pt when a full-test-set accuracy improves."""
        self._average_buffers()
        t = time.perf_counter()
        loss, acc = evaluate(self._result_model(), split, device=self.device,  # fp32: what users of the model see
                             solver=self.solver)
        self._eval_seconds += time.perf_counter() - t
        self.final_acc = acc
        self._emit(TrainEvent("eval", epoch=epoch, batch=batch, batches_per_epoch=self._bpe, step=self.step,
                              total_steps=self._total, elapsed=time.perf_counter() - self._start, test_loss=loss,
                              test_acc=acc, eval_seconds=self._eval_seconds))
        if full and (self.best_acc is None or acc > self.best_acc):
            self.best_acc = acc
            self._save("best.pt", epoch)
        self._model.train()

    def _train(self) -> tuple[str, str]:
        """Set up model, optimiser and data, then run the epochs; returns (status, message)."""
        cfg, ranks = self.config, self.ranks
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # same on every rank: shards of one permutation
        batch_size = max(1, cfg.batch_size // ranks.world)  # per rank; the global batch stays cfg.batch_size
        data = self._data() if callable(self._data) else self._data
        train, test = data if data is not None else load_mnist()
        train_size = cfg.train_size
        if cfg.adapt_every:  # held out: the last images of the training split, never trained on
            n_hold = min(ADAPT_HOLDOUT, len(train) // 5)
            hold = MNISTSplit(train.images[-n_hold:], train.labels[-n_hold:]).to(self.device)
            self._holdout = (normalize(hold.images), hold.labels)
            train_size = min(train_size, len(train) - n_hold)
            if train_size < cfg.batch_size:
                raise OdenetError(f"step adaptation holds out {n_hold} training images, leaving {train_size}, fewer "
                                  f"than batch_size={cfg.batch_size}")
        self._bpe = (train_size // ranks.world) // batch_size
        self._total = cfg.epochs * self._bpe
        self._model, opt, sched = self._build(self._total)
        self._opt, self._sched, self._gen = opt, sched, gen
        if cfg.ema > 0:  # weights and BatchNorm statistics averaged over the last ~1/(1-ema) steps
            self._ema = torch.optim.swa_utils.AveragedModel(
                self._model, multi_avg_fn=_ema_update(cfg.ema, cfg.ema_warmup), use_buffers=True)
        if cfg.steer:  # its own stream, so STEER leaves the data order and initialisation unchanged
            self._steer_gen = torch.Generator().manual_seed(cfg.seed + 1)
        train = train.subset(train_size).to(self.device)  # resident on the device: no host copies
        test = test.to(self.device)
        model_fwd: Any = self._model
        if cfg.kinetic or cfg.jacobian:
            model_fwd = Regularized(self._model, cfg.kinetic, cfg.jacobian)
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model_fwd = DistributedDataParallel(model_fwd, device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
        if cfg.compile:
            model_fwd = torch.compile(model_fwd)
        self.amp = cfg.amp if cfg.amp is not None else amp_pays(self.device)
        if self._resume is not None:
            self._restore(self._resume.state)
        self._last_resume_save = time.perf_counter()
        label = f"{cfg.model.label()}{' (bf16 autocast)' if self.amp else ''}"
        if self._resume is None:
            self._emit(TrainEvent("start", batches_per_epoch=self._bpe, total_steps=self._total, message=label))
        else:  # where it goes on from, and what resuming had to skip
            st = self._resume.state
            notes = "".join(f"; {n}" for n in self._resume.notes)
            self._emit(TrainEvent("start", epoch=int(st["epoch"]), batch=int(st["batch"]), batches_per_epoch=self._bpe,
                                  step=self.step, total_steps=self._total, elapsed=time.perf_counter() - self._start,
                                  message=f"{label}; resumed from {self._resume.path.name} at epoch "
                                          f"{int(st['epoch'])}, batch {int(st['batch'])} (step {self.step}){notes}"))
        self._model.train()
        try:
            return self._epochs(model_fwd, opt, sched, train, test, gen, batch_size)
        finally:
            del model_fwd  # the DDP/compiled wrapper must not outlive the process group

    def _epochs(self, model_fwd: Any, opt: torch.optim.Optimizer, sched: Any, train: MNISTSplit, test: MNISTSplit,
                gen: torch.Generator, batch_size: int) -> tuple[str, str]:
        cfg, ranks = self.config, self.ranks
        first, done, evaluated = 1, 0, True
        if self._resume is not None:  # the epoch it stopped in, and the batches of it already trained
            st = self._resume.state
            first, done, evaluated = int(st["epoch"]), int(st["batch"]), bool(st["evaluated"])
            gen.set_state(st["rng"]["data_epoch"])
        for epoch in range(first, cfg.epochs + 1):
            self._epoch_rng = gen.get_state()
            batches = iterate_batches(train, batch_size, shuffle=True, generator=gen, augment=cfg.augment,
                                      drop_last=True, shard=(ranks.rank, ranks.world))
            if epoch == first and done:
                batches = self._replay(batches, done)
            stopped_at = self._run_epoch(epoch, batches, model_fwd, opt, sched, test, batch_size,
                                         start=done if epoch == first else 0,
                                         evaluate_first=epoch == first and not evaluated)
            if stopped_at is not None:
                self._average_buffers()
                self._save("last.pt", epoch)
                self._save_resume(epoch, stopped_at, evaluated=False)
                return "stopped", f"stopped by request at epoch {epoch}, batch {stopped_at}"
            self._evaluate(epoch, self._bpe, test, full=True)
            self._emit(TrainEvent("epoch", epoch=epoch, batch=self._bpe, batches_per_epoch=self._bpe, step=self.step,
                                  total_steps=self._total, elapsed=time.perf_counter() - self._start,
                                  test_acc=self.final_acc))
            self._save("last.pt", epoch)
            if epoch < cfg.epochs:  # the next epoch from its start (a finished run has nothing to resume)
                self._save_resume(epoch + 1, 0)
        return "finished", ""

    # -- resuming -----------------------------------------------------------------------
    def _resume_state(self, epoch: int, batch: int, evaluated: bool) -> dict[str, Any]:
        """Everything :meth:`_restore` needs to continue after ``batch`` of ``epoch`` exactly as an
        uninterrupted run would: tensors (RNG states as uint8), numbers, strings, dicts (no objects)."""
        cpu = {k: v.detach().to("cpu").clone() for k, v in self._model.state_dict().items()}
        metrics = self.run_dir / "metrics.jsonl" if self.run_dir is not None else None
        return {
            "epoch": epoch, "batch": batch, "step": self.step, "evaluated": evaluated, "model": cpu,
            "ema": None if self._ema is None else {k: v.detach().to("cpu").clone()
                                                   for k, v in self._ema.state_dict().items()},
            "optimizer": self._opt.state_dict(), "scheduler": None if self._sched is None else self._sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data_epoch": self._epoch_rng.clone(),
                    "data": self._gen.get_state(),
                    "steer": None if self._steer_gen is None else self._steer_gen.get_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None},
            "solver_steps": self.solver.steps, "best_acc": self.best_acc, "final_acc": self.final_acc,
            "elapsed": time.perf_counter() - self._start, "eval_seconds": self._eval_seconds,
            "metrics_bytes": metrics.stat().st_size if metrics is not None and metrics.exists() else 0,
        }

    def _save_resume(self, epoch: int, batch: int, evaluated: bool = True) -> None:
        """Write a resume checkpoint for the position after ``batch`` of ``epoch`` (0: its start);
        ``evaluated``: the mid-epoch evaluation due after that batch (if any) is done."""
        if self.run_dir is None:
            return
        model = self._result_model()
        save_resume(self.run_dir, model, self.config, self._metrics(epoch), model.config.with_solver(self.solver),
                    self._resume_state(epoch, batch, evaluated))
        self._last_resume_save = time.perf_counter()

    def _restore(self, st: dict[str, Any]) -> None:
        """Put the model, EMA, optimizer, schedule, RNG streams, solver and counters back as
        :meth:`_resume_state` recorded them, and cut metrics.jsonl back to that point."""
        self._model.load_state_dict(st["model"])
        if self._ema is not None and st.get("ema") is not None:
            self._ema.load_state_dict(st["ema"])
        self._opt.load_state_dict(st["optimizer"])
        if self._sched is not None and st.get("scheduler") is not None:
            self._sched.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng"]["torch"])
        if self._steer_gen is not None and st["rng"].get("steer") is not None:
            self._steer_gen.set_state(st["rng"]["steer"])
        if self.device.type == "cuda" and st["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(st["rng"]["cuda"], self.device)
        self.solver = self.config.model.solver.replace(steps=int(st["solver_steps"]))
        self.step = int(st["step"])
        self.best_acc, self.final_acc = st.get("best_acc"), st.get("final_acc")
        self._eval_seconds = float(st["eval_seconds"])
        self._start = time.perf_counter() - float(st["elapsed"])  # elapsed times go on from where they were
        metrics = self.run_dir / "metrics.jsonl" if self.run_dir is not None else None
        if metrics is not None and metrics.exists() and metrics.stat().st_size > int(st["metrics_bytes"]):
            with open(metrics, "r+b") as fh:  # reports after the checkpoint are made again
                fh.truncate(int(st["metrics_bytes"]))

    def _replay(self, batches: Any, done: int) -> Any:
        """Draw the ``done`` batches already trained this epoch (no training: the data generator's
        permutation and augmentation draws advance as they did), check that the generator is where
        the checkpoint left it, and return the rest of the epoch."""
        for _ in range(done):
            next(batches, None)
        if not torch.equal(self._gen.get_state(), self._resume.state["rng"]["data"]):
            raise ResumeError(f"cannot resume from {self._resume.path.name}: replaying the data order did not reach "
                              f"the recorded generator state (different data or train_size?)")
        return batches

    def _adapt_steps(self, epoch: int, batch: int) -> None:
        """Step adaptation (Ott et al. 2021): double ``steps`` when accuracy on the held-out batch
        under the training solver and under twice its steps differ by more than the threshold."""
        cfg, spec = self.config, self.solver
        if self._holdout is None or spec.steps * 2 > cfg.adapt_max_steps:
            return
        finer = spec.replace(steps=spec.steps * 2)
        accs = torch.tensor(solver_accuracies(self._model, *self._holdout, [spec, finer]), dtype=torch.float64,
                            device=self.device)
        acc, acc_fine = (self.ranks.sum(accs) / self.ranks.world).tolist()  # every rank takes the same decision
        gap = abs(acc - acc_fine)
        if gap <= cfg.adapt_threshold:
            return
        self.solver = finer
        self._emit(TrainEvent("solver", epoch=epoch, batch=batch, batches_per_epoch=self._bpe, step=self.step,
                              total_steps=self._total, elapsed=time.perf_counter() - self._start,
                              solver_steps=finer.steps,
                              message=f"steps {spec.steps} -> {finer.steps}: held-out accuracy {100 * acc:.1f}% with "
                                      f"{spec.label()} vs {100 * acc_fine:.1f}% with {finer.label()} (gap "
                                      f"{100 * gap:.1f} > {100 * cfg.adapt_threshold:g} points)"))

    def _run_epoch(self, epoch: int, batches: Any, model_fwd: Any, opt: torch.optim.Optimizer, sched: Any,
                   test: MNISTSplit, batch_size: int, start: int = 0, evaluate_first: bool = False) -> int | None:
        """One pass over the batches after the first ``start`` (a resumed epoch); returns the batch at
        which a stop was agreed, else None.  ``evaluate_first``: make the mid-epoch evaluation due
        after batch ``start`` first (a run stopped just before it)."""
        cfg, ranks, model = self.config, self.ranks, self._model
        eval_split = test.subset(cfg.eval_size)
        window = MetricsWindow(self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        if evaluate_first and cfg.eval_every and start % cfg.eval_every == 0 and 0 < start < self._bpe:
            self._evaluate(epoch, start, eval_split, full=cfg.eval_size is None)
        for batch, (x, y) in enumerate(batches, start=start + 1):
            self._freeze_field_bn()
            spec = steer_solver(self.solver, cfg.steer, self._steer_gen)
            regs: dict[str, torch.Tensor] | None = None
            with autocast:
                out = model_fwd(x, solver=spec)  # (B, 10) logits, or (logits, penalty, terms) when regularised
                if isinstance(out, tuple):
                    logits, penalty, regs = out
                else:
                    logits, penalty = out, None
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                if penalty is not None:
                    loss = loss + penalty
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self.step += 1
            stop, diverged = ranks.decide(self.step, self._stop.is_set(), loss)
            if diverged:
                raise TrainingDiverged(f"training diverged: loss became {loss.item()} at epoch {epoch}, batch {batch} "
                                       f"(lr={cfg.lr}, optimizer={cfg.optimizer}); lower the learning rate")
            opt.step()
            if sched is not None:
                sched.step()
            if self._ema is not None:
                self._ema.update_parameters(model)
            window.add(loss, logits, y, model.last_stats.nfe, regs)
            if cfg.adapt_every and self.step % cfg.adapt_every == 0:
                self._adapt_steps(epoch, batch)
            last = batch == self._bpe
            reported = batch % cfg.log_every == 0 or last or stop
            if reported:
                stats = window.report(ranks, batch_size)
                if not math.isfinite(stats["train_loss"]):
                    raise TrainingDiverged(f"training diverged: mean loss {stats['train_loss']} at epoch {epoch}, "
                                           f"batch {batch}; lower the learning rate")
                self._emit(TrainEvent("batch", epoch=epoch, batch=batch, batches_per_epoch=self._bpe, step=self.step,
                                      total_steps=self._total, elapsed=time.perf_counter() - self._start,
                                      lr=opt.param_groups[0]["lr"], **stats))
            if not stop and ranks.world == 1:  # a stop requested while reporting takes effect now
                stop = self._stop.is_set()
            if stop:
                return batch
            if cfg.eval_every and batch % cfg.eval_every == 0 and not last:
                self._evaluate(epoch, batch, eval_split, full=cfg.eval_size is None)
            # a resume point only where the metrics window was just reported (empty): a resumed run then
            # reports the same windows as an uninterrupted one
            if reported and not last and time.perf_counter() - self._last_resume_save >= self.resume_every:
                self._save_resume(epoch, batch)
        return None
