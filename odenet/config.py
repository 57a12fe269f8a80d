"""TrainConfig: the one training configuration shared by the CLI, the app and checkpoints."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .models import ModelConfig

__all__ = ["ConfigError", "TrainConfig", "PRESETS", "OPTIMIZERS", "SCHEDULES", "TRAIN_SIZE_MAX"]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")
TRAIN_SIZE_MAX = 60_000


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


# Presets: the notebook's recipe verbatim, and the project's default (chosen by measurement,
# see README "Training recipe"): AdamW + one-cycle reaches >= 98% test accuracy in one epoch.
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="onecycle", batch_size=128, epochs=8,
                    augment=False),
    "notebook": dict(optimizer="adam", lr=0.1, weight_decay=0.0, schedule="constant", batch_size=128, epochs=20,
                     augment=False),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; validated on construction, saved beside the weights."""

    # model / solver (defaults are ModelConfig's: one source of truth)
    integrator: str = ModelConfig.integrator
    steps: int = ModelConfig.steps
    t0: float = ModelConfig.t0
    t1: float = ModelConfig.t1
    channels: int = ModelConfig.channels
    adaptive: bool = ModelConfig.adaptive
    rtol: float = ModelConfig.rtol
    atol: float = ModelConfig.atol
    custom_tableau: dict[str, Any] | None = None
    # optimisation
    preset: str = "default"
    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "onecycle"
    # data
    train_size: int = TRAIN_SIZE_MAX
    eval_size: int | None = None
    eval_every: int = 0
    log_every: int = 20
    augment: bool = False
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # bf16 autocast for training; None = auto (on where it pays, see amp_pays)
    compile: bool = False

    def __post_init__(self) -> None:
        def err(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} {why}, got {getattr(self, name)!r}")

        for name in ("steps", "channels", "epochs", "batch_size", "train_size", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise err(name, "must be a positive integer")
        for name in ("eval_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise err(name, "must be an integer >= 0")
        if self.eval_size is not None and (isinstance(self.eval_size, bool) or not isinstance(self.eval_size, int)
                                           or not 1 <= self.eval_size <= 10_000):
            raise err("eval_size", "must be None (full test set) or an integer in [1, 10000]")
        if self.train_size > TRAIN_SIZE_MAX:
            raise err("train_size", f"must be at most {TRAIN_SIZE_MAX} (the MNIST training set)")
        if self.batch_size > self.train_size:
            raise ConfigError(f"batch_size ({self.batch_size}) must not exceed train_size ({self.train_size})")
        for name in ("lr", "weight_decay", "momentum", "t0", "t1", "rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise err(name, "must be a finite number")
            object.__setattr__(self, name, float(v))
        if self.lr <= 0:
            raise err("lr", "must be > 0")
        if self.weight_decay < 0:
            raise err("weight_decay", "must be >= 0")
        if not 0 <= self.momentum < 1:
            raise err("momentum", "must be in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise err("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise err("schedule", f"must be one of {', '.join(SCHEDULES)}")
        if self.preset not in PRESETS and self.preset != "custom":
            raise err("preset", f"must be one of {', '.join(PRESETS)} or 'custom'")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise err("amp", "must be true, false or null (auto)")
        if not isinstance(self.device, str):
            raise err("device", "must be a string such as 'auto', 'cpu' or 'cuda'")
        try:
            mc = self.model_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.custom_tableau is None and mc.custom_tableau is not None:
            object.__setattr__(self, "custom_tableau", mc.custom_tableau)

    def model_config(self) -> ModelConfig:
        """The architecture/solver part of this config."""
        return ModelConfig(integrator=self.integrator, steps=self.steps, t0=self.t0, t1=self.t1,
                           channels=self.channels, adaptive=self.adaptive, rtol=self.rtol, atol=self.atol,
                           custom_tableau=self.custom_tableau)

    @classmethod
    def from_preset(cls, name: str = "default", **overrides: Any) -> TrainConfig:
        """A config from a named recipe (``default`` or ``notebook``) plus overrides."""
        if name not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys are {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(d)

    def images_per_epoch(self) -> int:
        return self.train_size

    def batches_per_epoch(self) -> int:
        return self.train_size // self.batch_size  # the last partial batch is dropped
