"""RKNet: the notebook's neural ODE classifier for MNIST.

A convolutional stem downsamples 1x28x28 to CxHxW = 64x6x6, a conv ``GradientNet`` vector
field (time concatenated as an extra channel) is integrated from ``t0`` to ``t1`` with a
chosen solver, then the state is average-pooled and classified.  Module and parameter
names match the notebook so its ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from odenet.errors import ConfigError
from odenet.ode.gradients import GRADIENT_METHODS, solve_spec
from odenet.ode.integrators import RungeKuttaMethod
from odenet.ode.solvers import Solution, SolverSpec, SolverStats, StepRecord

__all__ = ["ModelConfig", "GradientNet", "RKNet", "ModelTrajectory", "conv_bn_from_patch_moments"]

_SOLVER_FIELDS = ("integrator", "steps", "t0", "t1", "adaptive", "rtol", "atol", "max_steps", "custom_tableau")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines an RKNet: its architecture and the solver it was trained with.

    The solver fields (``integrator``, ``steps``, ``t0``, ``t1``, ``adaptive``, ``rtol``, ``atol``,
    ``max_steps``, ``custom_tableau``) are validated as one :class:`~odenet.ode.solvers.SolverSpec`,
    available as :attr:`solver`.  ``gradient`` says how training differentiates through the solve:
    ``"backprop"`` (store every stage), ``"adjoint"`` (constant memory, a backward ODE solve),
    ``"discrete_adjoint"`` (constant memory, the solver's own steps differentiated in reverse at
    reconstructed states) or ``"checkpoint"`` (recompute each step in backward); see
    :mod:`odenet.ode.gradients`.  A user-defined
    method travels in ``custom_tableau`` (a dict with ``name``, ``a``, ``b``, ``c``, ``order``), so
    checkpoints rebuild it anywhere without a global registry.
    """

    # the solver fields take SolverSpec's defaults (one source of truth)
    integrator: str = SolverSpec.integrator
    steps: int = SolverSpec.steps
    t0: float = SolverSpec.t0
    t1: float = SolverSpec.t1
    channels: int = 64
    classes: int = 10
    adaptive: bool = SolverSpec.adaptive
    rtol: float = SolverSpec.rtol
    atol: float = SolverSpec.atol
    max_steps: int = SolverSpec.max_steps
    custom_tableau: dict[str, Any] | None = field(default=None, hash=False)
    gradient: str = "backprop"

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENT_METHODS:
            raise ConfigError(f"gradient must be one of {', '.join(GRADIENT_METHODS)}, got {self.gradient!r}")
        for name in ("channels", "classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        spec = SolverSpec(**{k: getattr(self, k) for k in _SOLVER_FIELDS})  # validates; ValueError subclasses
        for k in _SOLVER_FIELDS:  # normalised values (floats, canonical tableau)
            object.__setattr__(self, k, getattr(spec, k))
        object.__setattr__(self, "_solver", spec)

    @property
    def solver(self) -> SolverSpec:
        """The solver this model was configured (trained) with."""
        return self._solver  # type: ignore[attr-defined]

    @property
    def method(self) -> RungeKuttaMethod:
        return self.solver.method

    def with_solver(self, solver: SolverSpec) -> ModelConfig:
        """The same architecture with another solver."""
        return replace(self, **{k: getattr(solver, k) for k in _SOLVER_FIELDS})

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes``; choosing another ``integrator`` drops the custom tableau."""
        if "integrator" in changes and "custom_tableau" not in changes and changes["integrator"] != self.integrator:
            changes["custom_tableau"] = None
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}; valid keys are {sorted(known)}")
        return cls(**d)

    def label(self) -> str:
        """The solver's label, e.g. ``rk4 x1`` (see :meth:`SolverSpec.label`)."""
        return self.solver.label()


def _foldable(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """Whether :func:`conv_bn_from_patch_moments` computes ``bn(conv(x))`` for this pair."""
    return (conv.in_channels == 1 and conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and conv.bias is not None and bn.affine and bn.track_running_stats)


def conv_bn_from_patch_moments(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Training-mode ``bn(conv(x))`` for a convolution of a one-channel input, as one convolution.

    Output channel c of the convolution is ``w_c . p + b_c`` over the input's k*k patches p, so
    its batch mean is ``w_c . mean(p) + b_c`` and its (biased) batch variance ``w_c^T S w_c``,
    with S the k*k covariance of the patches.  Both come from the small input (N, 1, 28, 28)
    instead of passes over the (N, C, 26, 26) output, and the normalisation folds into the
    convolution's weights and bias.  Autograd differentiates the statistics as functions of
    the weights, so gradients equal BatchNorm's (to float rounding; 1e-14 relative in float64),
    and the running statistics are updated as BatchNorm updates them.  On the training step
    this removes BatchNorm's forward and backward over the largest activation of RKNet.

    x: (N, 1, H, W) -> (N, C, H', W').
    """
    w = conv.weight  # (C, 1, k, k)
    c, k = w.shape[0], w.shape[-2:]
    with torch.autocast(x.device.type, enabled=False):  # statistics in the weights' precision
        patches = F.unfold(x.to(w.dtype), k, stride=conv.stride, padding=conv.padding)  # (N, k*k, L)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N*L, k*k)
        n = patches.shape[0]
        mean_p = patches.mean(0)  # (k*k,)
        centred = patches - mean_p
        cov = centred.T @ centred / n  # (k*k, k*k)
        wf = w.reshape(c, -1)  # (C, k*k)
        mean = wf @ mean_p + conv.bias  # (C,) batch mean of conv(x)
        var = ((wf @ cov) * wf).sum(1)  # (C,) biased batch variance of conv(x)
        scale = bn.weight * torch.rsqrt(var + bn.eps)  # (C,)
        # conv.bias cancels in the output (as in BatchNorm) but keeps a (zero) gradient, so
        # optimisers and DistributedDataParallel see every parameter used.
        bias = bn.bias + scale * (conv.bias - mean)  # (C,)
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
        bn.running_var.lerp_((var * (n / max(n - 1, 1))).to(bn.running_var.dtype), momentum)
    return F.conv2d(x, w * scale.view(c, 1, 1, 1), bias, conv.stride, conv.padding)


class GradientNet(nn.Module):
    """The vector field f(t, h): two conv-BN-ReLU blocks, each fed the time as an extra channel."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(channels + 1, channels, 3, stride=1, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(channels + 1, channels, 3, stride=1, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def concat_time(t: float, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C+1, H, W) with a constant channel equal to ``t`` (the notebook's input)."""
        n, _, h, w = x.shape
        return torch.cat([x, x.new_full((n, 1, h, w), float(t))], 1)

    @staticmethod
    def _conv_with_time(conv: nn.Conv2d, t: float, x: torch.Tensor) -> torch.Tensor:
        """``conv(concat_time(t, x))`` without building the (C+1)-channel tensor.

        A convolution is linear, so the constant time channel contributes ``t`` times the
        convolution of a ones-map (zero padded, hence not constant near the border) with the
        time slice of the kernel.  Same weights, same result to float rounding, ~1.15x faster
        training on CPU (the 65-channel input defeats the conv kernels' channel blocking).
        """
        c = x.shape[1]
        w = conv.weight  # (C_out, C + 1, k, k)
        ones = x.new_ones(1, 1, x.shape[2], x.shape[3])
        time_map = F.conv2d(ones, w[:, c:], None, conv.stride, conv.padding)  # (1, C_out, H, W)
        return F.conv2d(x, w[:, :c], conv.bias, conv.stride, conv.padding) + float(t) * time_map

    def forward(self, t: float, x: torch.Tensor) -> torch.Tensor:
        """f(t, h): (N, C, H, W) -> (N, C, H, W)."""
        for block in (self.block1, self.block2):
            conv, bn, act = block
            x = act(bn(self._conv_with_time(conv, t, x)))
        return x

    def prepared(self, h: torch.Tensor) -> Callable[[float, torch.Tensor], torch.Tensor]:
        """``f(t, x)`` for one solve of states shaped like ``h`` (N, C, H, W): equal to
        ``self(t, x)`` to float rounding, with the per-solve work done once instead of at every
        stage.  Each block's kernel is split into its state part (made contiguous once, in the
        state's memory format) and the time channel's map ``conv(ones, w_t)`` (1, C_out, H, W).
        The weights do not change during a solve, and autograd sees both through the split, so
        gradients are the same.  Nothing is stored on the module: a shared model stays safe to
        call from many threads."""
        c, fmt = h.shape[1], (torch.channels_last if h.is_contiguous(memory_format=torch.channels_last)
                              else torch.contiguous_format)
        ones = h.new_ones(1, 1, h.shape[2], h.shape[3])
        blocks = []
        for conv, bn, act in (self.block1, self.block2):
            w = conv.weight  # (C_out, C + 1, k, k)
            time_map = F.conv2d(ones, w[:, c:], None, conv.stride, conv.padding)  # (1, C_out, H, W)
            blocks.append((w[:, :c].contiguous(memory_format=fmt), conv.bias, conv.stride, conv.padding, time_map,
                           bn, act))

        def f(t: float, x: torch.Tensor) -> torch.Tensor:
            for w_x, bias, stride, padding, time_map, bn, act in blocks:
                x = act(bn(F.conv2d(x, w_x, bias, stride, padding) + float(t) * time_map))
            return x

        return f


@dataclass
class ModelTrajectory:
    """Hidden states at every solver step time and the logits the head gives for each.

    ``ts``: (T,), ``states``: (T, N, C, H, W), ``logits``: (T, N, classes), T = steps + 1.
    ``fields``: the vector field at every state, f(t_i, h_i) (T, N, C, H, W), when asked for.
    """

    ts: torch.Tensor
    states: torch.Tensor
    logits: torch.Tensor
    stats: SolverStats
    log: list[StepRecord] = field(default_factory=list)
    fields: torch.Tensor | None = None


class RKNet(nn.Module):
    """CNN stem -> ODE block integrated by a solver -> pooled linear classifier.

    ``config`` fixes the architecture and the training solver and never changes.  To use
    another solver, pass it to the call: ``model(x, solver=model.config.solver.replace(steps=8))``;
    nothing outside the call observes it, so one model can serve many users at once.
    ``train_config``, ``metrics`` and ``source_path`` describe where the weights came from
    (set by :func:`odenet.train.checkpoints.load_model`; None / {} / None for a fresh model).
    """

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or ModelConfig()
        if overrides:
            cfg = replace(cfg, **overrides)
        self.config = cfg
        self.train_config: Any = None  # TrainConfig of the run that produced the weights
        self.metrics: dict[str, Any] = {}
        self.source_path: Path | None = None
        c = cfg.channels
        self.sampling = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=1),  # (N, 1, 28, 28) -> (N, C, 26, 26)
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # -> (N, C, 13, 13)
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # -> (N, C, 6, 6)
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.gradient = GradientNet(channels=c)
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),  # (N, C, 6, 6) -> (N, C, 1, 1)
            nn.Flatten(),  # -> (N, C)
            nn.Linear(c, cfg.classes),  # -> (N, classes)
        )
        self.last_stats = SolverStats()  # of this module's latest training forward (the Trainer reads it)
        # Training-mode fold of the first BatchNorm into the first convolution on CPUs (see
        # features()); ODENET_FOLD_BN=0 turns it off for side-by-side benchmarks.
        self.fold_first_batchnorm = os.environ.get("ODENET_FOLD_BN", "1") != "0"

    # -- solving ----------------------------------------------------------------------
    def solve(self, h0: torch.Tensor, solver: SolverSpec | None = None, trajectory: bool = False) -> Solution:
        """Integrate the ODE block from ``h0`` (N, C, 6, 6) with ``solver`` (default: the config's).

        With autograd on and ``config.gradient`` other than backprop, the final state comes from
        :func:`odenet.ode.gradients.solve_with_gradient` (the trajectory is not kept on that path): the one rule
        of :func:`odenet.ode.gradients.solve_spec`."""
        spec = solver if solver is not None else self.config.solver
        return solve_spec(self.gradient, h0, spec, self.config.gradient, trajectory, prepare=self.gradient.prepared)

    # -- forward ----------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) normalised images -> (N, C, 6, 6) initial ODE state h(t0).

        In training mode on a CPU the first conv + BatchNorm pair runs as one convolution whose
        weights fold in the batch statistics (:func:`conv_bn_from_patch_moments`); the
        result, the gradients and the running statistics are those of ``self.sampling(x)``.
        On a GPU the fold's extra small kernels cost more than BatchNorm's passes (an H200
        epoch took 1.28 s instead of 0.79 s at batch 512, ``benchmarks/training/gpu_fold.sh``), so it
        is used on CPUs only."""
        conv, bn = self.sampling[0], self.sampling[1]
        if not (self.fold_first_batchnorm and x.device.type == "cpu" and self.training and bn.training
                and _foldable(conv, bn)):
            return self.sampling(x)
        h = torch.relu_(conv_bn_from_patch_moments(conv, bn, x))  # (N, C, 26, 26)
        return self.sampling[3:](h)

    def forward(self, x: torch.Tensor, solver: SolverSpec | None = None) -> torch.Tensor:
        """(N, 1, 28, 28) -> (N, classes) logits; the notebook's ``x = solver.integrate(x)``."""
        sol = self.solve(self.features(x), solver)
        if self.training:  # for the Trainer; a shared eval-mode model is never written to
            self.last_stats = sol.stats
        return self.output(sol.y)

    def forward_regularized(self, x: torch.Tensor, solver: SolverSpec | None = None, kinetic: bool = True,
                            jacobian: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits plus regulariser terms from the same solve: ``{"kinetic": mean ||f||^2,
        "jacobian": Hutchinson ||df/dh||_F^2}`` (the requested ones) over every vector-field
        evaluation; see :mod:`odenet.model.regularizers`.  Always backprop through the solve; the
        Jacobian term needs autograd (it is skipped under ``torch.no_grad``)."""
        from odenet.model.regularizers import RecordingField, jacobian_frobenius, kinetic_energy

        spec = solver if solver is not None else self.config.solver
        h0 = self.features(x)  # (N, C, 6, 6)
        rec = RecordingField(self.gradient.prepared(h0))
        sol = spec.build(rec, check_finite=False).solve(h0)
        self.last_stats = sol.stats
        terms: dict[str, torch.Tensor] = {}
        if kinetic:
            terms["kinetic"] = kinetic_energy(rec.outputs)
        if jacobian and torch.is_grad_enabled():
            terms["jacobian"] = jacobian_frobenius(rec.inputs, rec.outputs)
        return self.output(sol.y), terms

    @torch.no_grad()
    def trajectory(self, x: torch.Tensor, solver: SolverSpec | None = None, fields: bool = False) -> ModelTrajectory:
        """Hidden state at every solver step time plus the head's logits at each of them.

        ``fields=True`` also returns f(t_i, h_i) at every state.  An explicit RK step's first stage
        evaluates exactly that (the same time, the same state tensor), so those evaluations are
        kept as the solve makes them instead of being repeated: only states no step started
        from (the last one; an FSAL method's reused slope) cost an evaluation of their own.
        ``stats.nfe`` counts the solve's evaluations only, as without ``fields``."""
        spec = solver if solver is not None else self.config.solver
        kept: dict[tuple[int, float], torch.Tensor] = {}  # (id(state), t) -> f(t, state)

        def keeping(h: torch.Tensor) -> Callable[[float, torch.Tensor], torch.Tensor]:
            f = self.gradient.prepared(h)

            def f_kept(t: float, y: torch.Tensor) -> torch.Tensor:
                out = f(t, y)
                key = (id(y), float(t))
                if key not in kept:  # dropped when y is freed (a stage's input): only live states stay
                    kept[key] = out
                    weakref.finalize(y, kept.pop, key, None)
                return out

            return f_kept

        sol = solve_spec(self.gradient, self.features(x), spec, self.config.gradient, True,
                         prepare=keeping if fields else self.gradient.prepared)  # as self.solve, no autograd here
        states = sol.stacked()  # (T, N, C, H, W)
        t_len, n = states.shape[:2]
        logits = self.output(states.flatten(0, 1)).view(t_len, n, -1)  # (T, N, classes)
        field_at = None
        if fields:
            f = self.gradient.prepared(sol.ys[0])
            field_at = torch.stack([kept[(id(y), float(t))] if (id(y), float(t)) in kept else f(float(t), y)
                                    for t, y in zip(sol.ts, sol.ys)])  # (T, N, C, H, W)
        return ModelTrajectory(ts=torch.tensor(sol.ts, dtype=torch.float64), states=states, logits=logits,
                               stats=sol.stats, log=sol.log, fields=field_at)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
