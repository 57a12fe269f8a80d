"""The training engine: one Trainer for the CLI, the app's background job and the tests.

Progress is reported as :class:`TrainEvent` values through a callback (and recorded in the
run directory's ``metrics.jsonl``).  ``stop()`` is cooperative: the current batch finishes,
a consistent checkpoint is written, and ``run()`` returns with status ``"stopped"``.
"""

from __future__ import annotations

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

from .checkpoints import save_checkpoint
from .config import TrainConfig
from .data import MNISTSplit, iterate_batches, load_mnist
from .models import RKNet
from .utils import amp_pays, atomic_write_text, pick_device, safe_name

__all__ = ["TrainEvent", "TrainResult", "TrainingDiverged", "Trainer", "evaluate", "default_runs_dir",
           "new_run_dir"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and no bad weights were saved."""


@dataclass
class TrainEvent:
    """One progress report.  ``kind`` is 'start', 'batch', 'eval', 'epoch' or 'end'.

    Batch events carry ``train_loss``/``train_acc`` averaged since the last batch event,
    ``images_per_s`` over that window and ``nfe`` per forward pass; eval events carry
    ``test_loss``/``test_acc`` and ``eval_seconds`` (all evaluation time so far, so training
    time is ``elapsed - eval_seconds``); 'end' carries ``status`` and ``message``.
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
    """``$ODENET_RUNS`` if set, else ``<project>/runs``."""
    env = os.environ.get("ODENET_RUNS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "runs"


def new_run_dir(runs_dir: Path | None = None, name: str | None = None, config: TrainConfig | None = None) -> Path:
    """Create a fresh run directory; never reuses (so never overwrites) an existing run."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs_dir.mkdir(parents=True, exist_ok=True)
    if name is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        label = f"{config.integrator}x{config.steps}" if config is not None else "run"
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
             device: torch.device | str | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` on ``split`` in eval mode.

    Under torch.distributed each rank evaluates its shard and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    rank, world = dist_rank_world()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for x, y in iterate_batches(split, batch_size, device=device, shard=(rank, world)):
        logits = model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += y.shape[0]
    if world > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    n = max(1.0, float(sums[2]))
    return float(sums[0]) / n, float(sums[1]) / n


def lr_factor(step: int, total: int, warmup: float = 0.25, start: float = 0.04, end: float = 1e-3) -> float:
    """Learning-rate multiplier: linear warm-up from ``start`` over ``warmup * total`` steps,
    then cosine decay to ``end`` (one-cycle); ``warmup=0`` is plain cosine.  Works for any
    ``total >= 1`` (torch's OneCycleLR fails on very short runs)."""
    w = int(warmup * total)
    if step < w:
        return start + (1 - start) * step / w
    frac = min(1.0, (step - w) / max(1, total - w))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * frac))


class Trainer:
    """Train an RKNet from a :class:`TrainConfig`.

    ``data`` (train, test), or a callable returning it, defaults to the packaged MNIST; ``run_dir`` (optional) receives
    config.json, metrics.jsonl, status.json, last.pt and best.pt; ``callback`` gets every
    :class:`TrainEvent`.
    """

    def __init__(self, config: TrainConfig,
                 data: tuple[MNISTSplit, MNISTSplit] | Callable[[], tuple[MNISTSplit, MNISTSplit]] | None = None,
                 run_dir: str | Path | None = None, callback: Callable[[TrainEvent], None] | None = None) -> None:
        self.config = config
        self._data = data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callback = callback
        self._stop = threading.Event()
        self._total = 0
        self._eval_seconds = 0.0
        self._model: RKNet | None = None
        self.history: list[TrainEvent] = []
        self.device = pick_device(config.device)
        self._owns_group = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (dist.is_available() and dist.is_initialized()):
            # launched by torchrun: gloo on CPU, NCCL on CUDA (one GPU per local rank)
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self._owns_group = True
        self.rank, self.world = dist_rank_world()
        if self.rank != 0:  # only rank 0 reports and writes the run directory
            self.run_dir, self.callback = None, None

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current batch (thread-safe)."""
        self._stop.set()

    # -- helpers ------------------------------------------------------------------------
    def _emit(self, ev: TrainEvent) -> None:
        self.history.append(ev)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(ev.to_dict()) + "\n")
        if self.callback is not None:
            self.callback(ev)

    def _write_status(self, **info: Any) -> None:
        if self.run_dir is None:
            return
        self._status.update(info)
        atomic_write_text(self.run_dir / "status.json", json.dumps(self._status, indent=2))

    def _build(self, total: int) -> tuple[RKNet, torch.optim.Optimizer, Any]:
        cfg = self.config
        model = RKNet(cfg.model_config()).to(self.device).to(memory_format=torch.channels_last)
        decay, no_decay = [], []
        for p in model.parameters():
            (no_decay if p.dim() == 1 else decay).append(p)  # no weight decay on biases / BN
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        elif cfg.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        sched = None
        if cfg.schedule != "constant":
            warm = 0.25 if cfg.schedule == "onecycle" else 0.0
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, warm))
        return model, opt, sched

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to the end, or until stopped or diverged (status 'stopped' / 'failed' with the
        reason in ``message``).  Any other error is recorded in status.json and re-raised."""
        cfg = self.config
        self._start = time.perf_counter()
        self._status: dict[str, Any] = {
            "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "started": _now(), "config": cfg.to_dict(),
        }
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.json", cfg.to_json())
            self._write_status()
        self.best_acc: float | None = None
        self.final_acc: float | None = None
        self.step = 0
        model: RKNet | None = None
        try:
            model, status, message = self._train()
        except TrainingDiverged as exc:
            status, message = "failed", str(exc)
        except BaseException as exc:  # record the failure in the run directory, then let the caller see it
            self._write_status(status="failed", message=f"{type(exc).__name__}: {exc}",
                               ended=_now())
            raise
        finally:
            if self._owns_group:
                dist.destroy_process_group()
                self._owns_group = False
        elapsed = time.perf_counter() - self._start
        model = model if model is not None else self._model
        model.eval()
        self._emit(TrainEvent("end", step=self.step, total_steps=self._total, elapsed=elapsed, status=status,
                              message=message, test_acc=self.final_acc))
        self._write_status(status=status, message=message, best_test_acc=self.best_acc,
                           final_test_acc=self.final_acc, ended=_now(),
                           duration=elapsed, steps=self.step)
        return TrainResult(status, model, self.run_dir, self.best_acc, self.final_acc, elapsed, message, self.history)

    def _metrics(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "step": self.step, "best_test_acc": self.best_acc, "test_acc": self.final_acc,
                "elapsed": time.perf_counter() - self._start}

    def _sync_buffers(self) -> None:
        """Average BatchNorm running statistics over ranks (DDP keeps them per rank), so every
        rank evaluates and saves the same model."""
        if self.world > 1:
            for buf in self._model.buffers():
                if buf.is_floating_point():
                    dist.all_reduce(buf)
                    buf.div_(self.world)

    def _evaluate(self, epoch: int, batch: int, split: MNISTSplit, full: bool) -> None:
        """Evaluate, report, and keep best.pt when a full-test-set accuracy improves."""
        self._sync_buffers()
        t = time.perf_counter()
        loss, acc = evaluate(self._model, split, device=self.device)  # fp32: what users of the model see
        self._eval_seconds += time.perf_counter() - t
        self.final_acc = acc
        self._emit(TrainEvent("eval", epoch=epoch, batch=batch, batches_per_epoch=self._bpe, step=self.step,
                              total_steps=self._total, elapsed=time.perf_counter() - self._start, test_loss=loss,
                              test_acc=acc, eval_seconds=self._eval_seconds))
        if full and (self.best_acc is None or acc > self.best_acc):
            self.best_acc = acc
            if self.run_dir is not None:
                save_checkpoint(self.run_dir / "best.pt", self._model, self.config, self._metrics(epoch))
        self._model.train()

    def _train(self) -> tuple[RKNet, str, str]:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # same on every rank: shards of one permutation
        world = self.world
        batch_size = max(1, cfg.batch_size // world)  # per rank; the global batch stays cfg.batch_size
        shard = (self.rank, world)
        self._bpe = bpe = (cfg.train_size // world) // batch_size
        self._total = total = cfg.epochs * bpe
        self._model, opt, sched = self._build(total)
        model = self._model
        data = self._data() if callable(self._data) else self._data
        train, test = data if data is not None else load_mnist()
        train = train.subset(cfg.train_size).to(self.device)  # resident on the device: no host copies
        test = test.to(self.device)
        eval_split = test.subset(cfg.eval_size)
        model_fwd: Any = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model_fwd = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                else None)
        if cfg.compile:
            model_fwd = torch.compile(model_fwd)
        self.amp = cfg.amp if cfg.amp is not None else amp_pays(self.device)
        self._amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        sync_every = 1 if self.device.type == "cpu" else cfg.log_every  # no per-batch host sync on GPU
        self._emit(TrainEvent("start", batches_per_epoch=bpe, total_steps=total,
                              message=f"{cfg.model_config().label()}{' (bf16 autocast)' if self.amp else ''}"))
        model.train()
        for epoch in range(1, cfg.epochs + 1):
            win = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, correct (stay on device)
            win_n = win_nfe = 0
            win_t = time.perf_counter()
            batches = iterate_batches(train, batch_size, shuffle=True, generator=gen, augment=cfg.augment,
                                      drop_last=True, shard=shard)
            for batch, (x, y) in enumerate(batches, start=1):
                with self._amp:
                    logits = model_fwd(x)  # (B, 10)
                    loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self.step += 1
                stop = self._stop.is_set()
                if self.step % sync_every == 0:
                    bad = not math.isfinite(loss.item())
                    if world > 1:  # every rank must agree to stop or to give up, or the others hang
                        flags = torch.tensor([float(stop), float(bad)], device=self.device)
                        dist.all_reduce(flags)
                        stop, bad = bool(flags[0] > 0), bool(flags[1] > 0)
                    if bad:
                        raise TrainingDiverged(
                            f"training diverged: loss became {loss.item()} at epoch {epoch}, batch {batch} "
                            f"(lr={cfg.lr}, optimizer={cfg.optimizer}); lower the learning rate"
                        )
                opt.step()
                if sched is not None:
                    sched.step()
                win[0] += loss.detach().double() * y.shape[0]
                win[1] += (logits.detach().argmax(1) == y).sum()
                win_n += y.shape[0]
                win_nfe += model.last_stats.nfe
                last = batch == bpe
                if batch % cfg.log_every == 0 or last or stop:
                    totals = torch.cat([win, torch.tensor([win_n, win_nfe], dtype=win.dtype, device=win.device)])
                    if world > 1:
                        dist.all_reduce(totals)
                    loss_sum, correct, n, nfe = totals.tolist()
                    mean_loss = loss_sum / n
                    if not math.isfinite(mean_loss):
                        raise TrainingDiverged(f"training diverged: mean loss {mean_loss} at epoch {epoch}, "
                                               f"batch {batch}; lower the learning rate")
                    now = time.perf_counter()
                    self._emit(TrainEvent("batch", epoch=epoch, batch=batch, batches_per_epoch=bpe, step=self.step,
                                          total_steps=total, elapsed=now - self._start, train_loss=mean_loss,
                                          train_acc=correct / n, images_per_s=n / (now - win_t),
                                          nfe=nfe * batch_size / n, lr=opt.param_groups[0]["lr"]))
                    win.zero_()
                    win_n = win_nfe = 0
                    win_t = time.perf_counter()
                if world == 1:  # a stop requested while reporting takes effect now, not a batch later
                    stop = stop or self._stop.is_set()
                if stop:
                    self._sync_buffers()
                    if self.run_dir is not None:
                        save_checkpoint(self.run_dir / "last.pt", model, cfg, self._metrics(epoch))
                    return model, "stopped", f"stopped by request at epoch {epoch}, batch {batch}"
                if cfg.eval_every and batch % cfg.eval_every == 0 and not last:
                    self._evaluate(epoch, batch, eval_split, full=cfg.eval_size is None)
            self._evaluate(epoch, bpe, test, full=True)
            self._emit(TrainEvent("epoch", epoch=epoch, batch=bpe, batches_per_epoch=bpe, step=self.step,
                                  total_steps=total, elapsed=time.perf_counter() - self._start,
                                  test_acc=self.final_acc))
            if self.run_dir is not None:
                save_checkpoint(self.run_dir / "last.pt", model, cfg, self._metrics(epoch))
        return model, "finished", ""
