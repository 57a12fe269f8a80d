"""Saving and loading RKNet checkpoints safely, and finding the shipped pretrained models.

A checkpoint is a plain dict of tensors, strings and numbers written atomically with
``torch.save`` and read with ``torch.load(weights_only=True)``, so a file carrying code
is refused instead of executed.  A bare ``state_dict`` saved from the notebook also loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from odenet.errors import OdenetError
from odenet.model.rknet import ModelConfig, RKNet
from odenet.train.config import ConfigError, TrainConfig
from odenet.utils import BoundedLRU, atomic_torch_save, package_dir

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "PRETRAINED_DIR",
    "pretrained_models",
    "resolve_model_path",
    "ModelSummary",
    "summarize_checkpoint",
    "shipped_odeness",
    "file_sha256",
    "MAX_CHECKPOINT_BYTES",
    "ResumeError",
    "ResumePoint",
    "save_resume",
    "resume_files",
    "load_resume",
    "KEEP_RESUME",
]

FORMAT = "odenet.rknet"
VERSION = 1
PRETRAINED_DIR = package_dir("odenet.model", "pretrained")  # shipped checkpoints, found through package resources
DEFAULT_PRETRAINED = "rk4_1step"
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024  # an RKNet is ~0.8 MB; anything this big is not ours


class CheckpointError(OdenetError, ValueError):
    """A file is not a valid odenet/notebook checkpoint; the message says what is wrong."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    train_config: TrainConfig | None = None
    metrics: dict[str, Any] | None = None


def save_checkpoint(path: str | Path, model: RKNet, train_config: TrainConfig | None = None,
                    metrics: dict[str, Any] | None = None, model_config: ModelConfig | None = None) -> Path:
    """Atomically write ``model`` (weights on CPU, contiguous) plus configs and metrics.

    ``model_config`` overrides ``model.config`` (same architecture, e.g. the solver a run ended
    with after step adaptation)."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": (model_config or model.config).to_dict(),
        "train_config": None if train_config is None else train_config.to_dict(),
        "metrics": dict(metrics or {}),
        "state_dict": state,
    }
    path = Path(path)
    atomic_torch_save(payload, path)
    return path


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"checkpoint {path} is {size / 2**20:.1f} MiB, larger than the {MAX_CHECKPOINT_BYTES // 2**20} MiB "
            f"an RKNet checkpoint can be; refusing to read it"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = [g for g in _pickle_globals(path) if not g.startswith(("torch.", "collections."))]
        if foreign:
            raise CheckpointError(
                f"checkpoint {path} was refused: it references {', '.join(foreign[:3])}, i.e. objects other than "
                f"tensors and plain data (possibly code), so it was not loaded"
            ) from None
        raise CheckpointError(f"checkpoint {path} is not a valid PyTorch checkpoint (truncated, corrupted or "
                              f"another format): torch's safe loader could not read it") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError,
            TypeError, KeyError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is not a valid PyTorch checkpoint (truncated or corrupted?): "
                              f"{first}") from exc


def _pickle_globals(path: Path) -> list[str]:
    """Names of the classes/functions a pickle (raw, or inside torch's zip format) would import,
    read with pickletools without executing anything; [] if the file cannot be parsed."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(name) if name else b""
        else:
            data = path.read_bytes()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return list(dict.fromkeys(found))
    except Exception:  # noqa: BLE001 - a file we cannot even parse simply has no names to report
        return []


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _infer_model_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Architecture of a bare (notebook) state_dict; solver as in the notebook (RK4 x1 on [0, 1])."""
    w = state.get("output.2.weight")
    if w is None or w.dim() != 2:
        raise CheckpointError("state_dict has no 'output.2.weight' (N_classes x channels); not an RKNet")
    return ModelConfig(integrator="rk4", steps=1, t0=0.0, t1=1.0, channels=int(w.shape[1]),
                       classes=int(w.shape[0]))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (odenet format or a bare notebook ``state_dict``)."""
    path = Path(path)
    return _checkpoint_from(_read(path), path)


def _checkpoint_from(obj: Any, path: Path) -> Checkpoint:
    """Validate what :func:`_read` returned for ``path`` (named in the errors)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {path} has format version {obj.get('version')!r}; "
                                  f"this odenet reads version {VERSION}")
        state = obj.get("state_dict")
        if not _is_state_dict(state):
            raise CheckpointError(f"checkpoint {path} has no valid 'state_dict' (name -> tensor)")
        try:
            mcfg = ModelConfig.from_dict(obj["model_config"])
            tcfg = None if obj.get("train_config") is None else TrainConfig.from_dict(obj["train_config"])
        except (ValueError, TypeError, KeyError, ConfigError) as exc:
            raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from exc
        metrics = obj.get("metrics") if isinstance(obj.get("metrics"), dict) else {}
        return Checkpoint(mcfg, state, tcfg, metrics)
    if _is_state_dict(obj):
        return Checkpoint(_infer_model_config(obj), obj, None, {"source": "state_dict"})
    raise CheckpointError(f"checkpoint {path} is neither an odenet checkpoint nor an RKNet state_dict "
                          f"(got {type(obj).__name__})")


# -- resume checkpoints -----------------------------------------------------------------------
# A run directory keeps its newest KEEP_RESUME resume checkpoints, ``resume-<step>.pt``.  Each is an
# ordinary odenet checkpoint (the result model loads with load_model) plus a "resume" dict: the live
# model, EMA, optimizer and schedule states, RNG states as uint8 tensors, the position (epoch, batch,
# step), the training solver's steps (step adaptation), the counters of the run so far and how many
# bytes of metrics.jsonl belong to the run up to this point.  Only tensors, numbers, strings, None,
# lists, tuples and dicts: torch.load(weights_only=True) reads it.
KEEP_RESUME = 2
RESUME_VERSION = 1
_RESUME_NAME = re.compile(r"resume-(\d+)\.pt")
_RESUME_KEYS = ("epoch", "batch", "step", "evaluated", "model", "optimizer", "rng", "solver_steps", "elapsed",
                "eval_seconds", "metrics_bytes")


class ResumeError(OdenetError, ValueError):
    """A run cannot be resumed (no such run, no resume checkpoint, finished, damaged); the message says why."""


@dataclass
class ResumePoint:
    """The resume checkpoint a run continues from: its ``path``, the run's ``config`` and the ``state``
    (the checkpoint's "resume" dict); ``notes`` says what was skipped to find it (damaged files)."""

    path: Path
    config: TrainConfig
    state: dict[str, Any]
    notes: list[str]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def save_resume(run_dir: str | Path, model: RKNet, train_config: TrainConfig, metrics: dict[str, Any],
                model_config: ModelConfig, state: dict[str, Any]) -> Path:
    """Atomically write ``run_dir/resume-<step>.pt`` (``model``: the result model, as in last.pt;
    ``state``: the "resume" dict) and remove all but the newest :data:`KEEP_RESUME` of them."""
    run_dir = Path(run_dir)
    path = run_dir / f"resume-{int(state['step']):08d}.pt"
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model_config": model_config.to_dict(),
               "train_config": train_config.to_dict(), "metrics": dict(metrics), "state_dict": weights,
               "resume": {"version": RESUME_VERSION, **state}}
    atomic_torch_save(payload, path)
    for old in resume_files(run_dir)[KEEP_RESUME:]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path


def resume_files(run_dir: str | Path) -> list[Path]:
    """A run's resume checkpoints, newest (highest step) first."""
    found = []
    with contextlib.suppress(OSError):
        for p in Path(run_dir).iterdir():
            m = _RESUME_NAME.fullmatch(p.name)
            if m:
                found.append((int(m[1]), p))
    return [p for _, p in sorted(found, reverse=True)]


def _read_resume(path: Path) -> ResumePoint:
    """One resume checkpoint, validated (CheckpointError if unreadable or incomplete)."""
    raw = _read(path)
    ck = _checkpoint_from(raw, path)
    state = raw.get("resume")
    if not isinstance(state, dict) or state.get("version") != RESUME_VERSION:
        raise CheckpointError(f"checkpoint {path} carries no resume state of version {RESUME_VERSION}")
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path}'s resume state lacks {', '.join(missing)}")
    if ck.train_config is None:
        raise CheckpointError(f"checkpoint {path} has no training config")
    return ResumePoint(path, ck.train_config, state, [])


def load_resume(run_dir: str | Path) -> ResumePoint:
    """The newest readable resume checkpoint of ``run_dir``.  A damaged one (truncated, corrupted) is
    renamed ``*.damaged`` and the one before it is used; ``notes`` says so.  ResumeError when the
    directory is not a run or none is readable."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ResumeError(f"cannot resume {run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise ResumeError(f"cannot resume {run_dir}: not a directory (give the run's directory, e.g. runs/NAME)")
    if not (run_dir / "config.json").is_file():
        raise ResumeError(f"cannot resume {run_dir}: not an odenet run directory (it has no config.json)")
    files = resume_files(run_dir)
    if not files:
        raise ResumeError(f"cannot resume {run_dir}: it has no resume checkpoint (resume-*.pt); it was written by "
                          f"an older odenet or ended before its first one")
    notes: list[str] = []
    for path in files:
        try:
            point = _read_resume(path)
        except CheckpointError as exc:
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name + ".damaged"))
            notes.append(f"{path.name} is damaged ({exc}); renamed it {path.name}.damaged and fell back to the "
                         f"checkpoint before it")
            continue
        point.notes = notes
        return point
    raise ResumeError(f"cannot resume {run_dir}: every resume checkpoint is damaged ({'; '.join(notes)})")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> RKNet:
    """A ready :class:`RKNet` in eval mode.  ``model.config`` is its ModelConfig (the training
    solver); ``model.train_config`` / ``model.metrics`` / ``model.source_path`` say where the
    weights came from (None / {} if the checkpoint has no such record).

    ``path`` may also be the name of a shipped model (e.g. ``"rk4_1step"``).
    """
    p = resolve_model_path(path)
    ckpt = load_checkpoint(p)
    model = RKNet(ckpt.model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {p} does not match RKNet: missing keys {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                              f"{'...' if len(unexpected) > 5 else ''}")
    wrong = [f"{k}: {tuple(v.shape)} vs expected {tuple(expected[k].shape)}"
             for k, v in ckpt.state_dict.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"checkpoint {p} has tensors of the wrong shape: {wrong[:3]}")
    bad = [k for k, v in ckpt.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {p} holds NaN/inf weights in {bad[:3]}")
    model.load_state_dict(ckpt.state_dict)
    model.train_config = ckpt.train_config
    model.metrics = dict(ckpt.metrics or {})
    model.source_path = p
    return model.to(device).to(memory_format=torch.channels_last).eval()


def resolve_model_path(path: str | Path) -> Path:
    """A checkpoint path, or the file of a shipped model given by name (``"rk4_1step"``)."""
    p = Path(path)
    if not p.exists() and isinstance(path, str) and path in pretrained_models():
        return pretrained_models()[path]
    return p


@dataclass(frozen=True)
class ModelSummary:
    """What lists of models show about a checkpoint: its solver, recorded test accuracy and,
    for shipped models, the measured ODE-ness (``odenet/model/pretrained/odeness.json``)."""

    name: str
    path: Path
    solver_label: str
    test_acc: float | None
    odeness: dict[str, Any] | None = None  # reference_acc, gap, solver_bound, reference_solver

    @property
    def solver_bound(self) -> bool:
        return bool(self.odeness and self.odeness.get("solver_bound"))

    def label(self, source: str = "shipped") -> str:
        """``rk4_1step (shipped, rk4 x1, 99.53%)``: the one model label of the app and CLI; a model
        that only works with its training solver says so."""
        acc = f", {100 * self.test_acc:.2f}%" if self.test_acc is not None else ""
        bound = ", works only with its training solver" if self.solver_bound else ""
        return f"{self.name} ({source}, {self.solver_label}{acc}{bound})"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (identifies a shipped checkpoint whatever its modification time)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_odeness(name: str, path: str | Path) -> dict[str, Any] | None:
    """The measured ODE-ness record of a shipped model, or None if absent or for another file version."""
    try:
        rec = json.loads((PRETRAINED_DIR / "odeness.json").read_text())["models"][name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("sha256") == file_sha256(path) else None


def _summary(name: str, path: Path) -> ModelSummary:
    ck = load_checkpoint(path)
    acc = (ck.metrics or {}).get("test_acc")
    shipped = path.parent == PRETRAINED_DIR
    return ModelSummary(name, path, ck.model_config.label(), float(acc) if isinstance(acc, float) else None,
                        shipped_odeness(name, path) if shipped else None)


_SUMMARIES: BoundedLRU[ModelSummary] = BoundedLRU(64)


def summarize_checkpoint(path: str | Path, name: str | None = None) -> ModelSummary:
    """Read a checkpoint's summary once per file version (lists are redrawn on every page rerun).
    Raises CheckpointError for an unreadable file."""
    p = Path(path)
    key = (name or p.stem, str(p), p.stat().st_mtime if p.exists() else 0.0)
    return _SUMMARIES.get_or_compute(key, lambda: _summary(key[0], p))


def pretrained_models() -> dict[str, Path]:
    """Shipped checkpoints by name (file stem), e.g. ``{'rk4_1step': Path(...)}``."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    files = sorted(PRETRAINED_DIR.glob("*.pt"), key=lambda p: (p.stem != DEFAULT_PRETRAINED, p.stem))
    return {p.stem: p for p in files}  # the notebook's configuration first: the pages' default
