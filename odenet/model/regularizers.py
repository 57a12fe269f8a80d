"""Training options that keep a neural ODE an ODE, and cheap to solve.

* **Kinetic energy** (Finlay et al. 2020, "How to train your neural ODE"): the mean of
  ``||f(t, h)||^2`` over the vector-field evaluations of the solve; straight, slow
  trajectories need fewer adaptive steps.
* **Jacobian Frobenius norm** (same paper): ``||df/dh||_F^2`` by the Hutchinson estimator
  ``E_eps ||eps^T df/dh||^2``, ``eps ~ N(0, I)``, one vector-Jacobian product per evaluation.
* **STEER** (Ghosh et al. 2020): the end time drawn uniformly from ``[t1 - b, t1 + b]`` per
  training batch; evaluation uses ``t1``.
* **Step adaptation** (Ott et al. 2021, "ResNet After All?"): compare accuracy under the
  training solver and under one with twice the steps on held-out training images; halve the
  step when they differ by more than a threshold (the Trainer does the bookkeeping).

Both regularisers average per sample: a value is the batch mean of one image's squared norm
(summed over channels and pixels).  With BatchNorm in training mode the vector field couples
the images of a batch, so the Jacobian term is the batch Jacobian's squared norm over N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from odenet.ode.solvers import SolverSpec

__all__ = ["RecordingField", "kinetic_energy", "jacobian_frobenius", "steer_solver", "solver_accuracies",
           "Regularized", "REGULARIZERS"]

REGULARIZERS = ("kinetic", "jacobian")


class RecordingField:
    """Wraps a vector field ``f(t, h)`` and keeps the input and output of every evaluation."""

    def __init__(self, f: Callable[[float, torch.Tensor], torch.Tensor]) -> None:
        self.f = f
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self.times: list[float] = []

    def __call__(self, t: float, h: torch.Tensor) -> torch.Tensor:
        out = self.f(t, h)
        self.times.append(float(t))
        self.inputs.append(h)
        self.outputs.append(out)
        return out


def _per_sample_sq(v: torch.Tensor) -> torch.Tensor:
    """Batch mean of each sample's squared norm (sum over every non-batch dimension), in fp32."""
    return v.float().pow(2).flatten(1).sum(1).mean()


def kinetic_energy(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over evaluations of the batch-mean ``||f(t, h)||^2`` (a differentiable scalar)."""
    if not outputs:
        raise ValueError("kinetic_energy needs at least one vector-field evaluation")
    return torch.stack([_per_sample_sq(o) for o in outputs]).mean()


def jacobian_frobenius(inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Hutchinson estimate of the mean over evaluations of ``||df/dh||_F^2`` per sample.

    One Gaussian probe and one vjp (``torch.autograd.grad(..., create_graph=True)``) per
    evaluation, so the estimate is differentiable in the parameters.  Each ``inputs[i]`` must be
    part of the autograd graph that produced ``outputs[i]``.
    """
    if not outputs or len(inputs) != len(outputs):
        raise ValueError(f"jacobian_frobenius needs matching, non-empty inputs/outputs, got {len(inputs)} "
                         f"and {len(outputs)}")
    terms = []
    for h, out in zip(inputs, outputs):
        eps = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device) \
            if generator is not None else torch.randn_like(out)
        (vjp,) = torch.autograd.grad(out, h, eps, create_graph=True)
        terms.append(_per_sample_sq(vjp))
    return torch.stack(terms).mean()


def steer_solver(spec: SolverSpec, b: float, generator: torch.Generator | None = None) -> SolverSpec:
    """``spec`` with its end time drawn uniformly from ``[t1 - b, t1 + b]`` (STEER); ``b = 0`` returns ``spec``."""
    if b == 0:
        return spec
    u = float(torch.rand((), generator=generator))
    return spec.replace(t1=spec.t1 + b * (2 * u - 1))


@torch.no_grad()
def solver_accuracies(model: Any, x: torch.Tensor, y: torch.Tensor, solvers: Sequence[SolverSpec]) -> list[float]:
    """Accuracy in [0, 1] of ``model`` on the batch ``(x, y)`` under each solver, in eval mode.

    The stem runs once; only the solve differs.  The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        h0 = model.features(x)
        return [float((model.output(model.solve(h0, s).y).argmax(1) == y).float().mean()) for s in solvers]
    finally:
        model.train(was_training)


class Regularized(nn.Module):
    """``model`` whose forward returns ``(logits, weighted regulariser total, {name: raw value})``.

    A module (not a method call) so DistributedDataParallel and ``torch.compile`` can wrap it.
    """

    def __init__(self, model: nn.Module, kinetic: float = 0.0, jacobian: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.kinetic = float(kinetic)
        self.jacobian = float(jacobian)

    def forward(self, x: torch.Tensor, solver: SolverSpec | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        logits, terms = self.model.forward_regularized(x, solver, kinetic=self.kinetic > 0,
                                                       jacobian=self.jacobian > 0)
        total = logits.new_zeros((), dtype=torch.float32)
        if "kinetic" in terms:
            total = total + self.kinetic * terms["kinetic"]
        if "jacobian" in terms:
            total = total + self.jacobian * terms["jacobian"]
        return logits, total, terms
