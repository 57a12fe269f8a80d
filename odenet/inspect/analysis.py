"""Looking inside a trained RKNet: predictions, per-step probabilities, PCA of hidden-state
trajectories, vector-field norms, and accuracy across a grid of solvers."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from odenet.data.mnist import MNISTSplit, normalize
from odenet.model.rknet import RKNet
from odenet.ode.integrators import RungeKuttaMethod, rk_step
from odenet.ode.solvers import SolverSpec, StepRecord
from odenet.train.trainer import evaluate
from odenet.utils import torch_threads

__all__ = ["Prediction", "predict", "StepView", "step_view", "pca_project", "ood_score", "OOD_THRESHOLD",
           "robustness_grid", "OdenessGap",
           "odeness_gap", "critical_step_sizes", "wilson_interval", "percent_decimals", "images_within_tolerance",
           "REFERENCE_SOLVER", "GAP_TOLERANCE", "LARGE_GAP", "PCAFit", "pca_fit",
           "join_views", "stage_states", "PlaneField", "plane_field", "StepStages", "rk_stages",
           "adaptive_cost",
           "SOLVER_INDEPENDENCE_BAR", "solver_table",
           "per_image_cost"]


@dataclass
class Prediction:
    """Class probabilities at t1 plus, per solver step time, the head's probabilities."""

    probs: torch.Tensor  # (N, classes)
    ts: torch.Tensor  # (T,)
    step_probs: torch.Tensor  # (T, N, classes)
    nfe: int
    seconds: float

    @property
    def digit(self) -> int:
        return int(self.probs[0].argmax())

    @property
    def confidence(self) -> float:
        return float(self.probs[0].max())


@torch.no_grad()
def predict(model: RKNet, x: torch.Tensor, solver: SolverSpec | None = None, threads: int | None = 1) -> Prediction:
    """Run the model on (N, 1, 28, 28) inputs once, keeping every solver step's prediction.

    ``threads=1`` (default): a single image is fastest on one core and then does not fight a
    training job or the browser for the other (measured in the app: ~200 ms -> ~15 ms per
    prediction while chromium renders on the same 2-core machine).  None keeps torch's setting.
    """
    start = time.perf_counter()
    with torch_threads(threads) if threads else contextlib.nullcontext():
        traj = model.trajectory(x.to(next(model.parameters()).device), solver)
    step_probs = traj.logits.float().softmax(-1).cpu()  # (T, N, classes)
    return Prediction(step_probs[-1], traj.ts, step_probs, traj.stats.nfe, time.perf_counter() - start)


@dataclass
class StepView:
    """Hidden-state trajectory of a batch with everything the Trajectories page plots."""

    ts: torch.Tensor  # (T,)
    states: torch.Tensor  # (T, N, C, H, W)
    step_probs: torch.Tensor  # (T, N, classes)
    state_norm: torch.Tensor  # (T, N)   ||h(t)|| per image
    field_norm: torch.Tensor  # (T, N)   ||f(t, h(t))|| per image
    preds: torch.Tensor  # (N,)
    log: list[StepRecord] = field(default_factory=list)  # the solver's step log (every attempted step)


@torch.no_grad()
def step_view(model: RKNet, x: torch.Tensor, solver: SolverSpec | None = None, threads: int | None = 1) -> StepView:
    """Trajectory of ``x`` (N, 1, 28, 28) under ``solver`` plus state and vector-field norms at
    each step time.  ``model`` must be in eval mode (BatchNorm uses running statistics), as
    every model the app loads is.  ``threads=1`` (default) as in :func:`predict`: on a busy
    2-core machine two intra-op threads made this 40x slower (4.7 s vs 0.1 s for 60 images).
    """
    with torch_threads(threads) if threads else contextlib.nullcontext():
        traj = model.trajectory(x, solver, fields=True)  # the steps' own first-stage evaluations, not new ones
        states = traj.states  # (T, N, C, H, W)
        fn = traj.fields.flatten(2).norm(dim=2)  # (T, N)
    probs = traj.logits.softmax(-1)
    return StepView(traj.ts, states, probs, states.flatten(2).norm(dim=2), fn, probs[-1].argmax(-1), traj.log)


def join_views(a: StepView, b: StepView) -> StepView:
    """``a``'s images followed by ``b``'s on their common time grid: (T, Na + Nb, ...); the step
    log is ``b``'s.  Fixed-step solves of one solver share the grid; ValueError if they do not."""
    if a.ts.shape != b.ts.shape or not torch.allclose(a.ts, b.ts):
        raise ValueError("step views on different time grids cannot be joined")

    def cat(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([u, v], dim=1)  # (T, Na + Nb, ...)

    return StepView(a.ts, cat(a.states, b.states), cat(a.step_probs, b.step_probs), cat(a.state_norm, b.state_norm),
                    cat(a.field_norm, b.field_norm), torch.cat([a.preds, b.preds]), list(b.log))


def pca_project(states: torch.Tensor, k: int = 3, threads: int | None = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA fitted across all steps and images: (T, N, C, H, W) -> coords (T, N, k) and the
    explained-variance ratio of each component (k,); :func:`pca_fit` without the mean and components."""
    fit = pca_fit(states, k, threads)
    return fit.coords, fit.explained


def robustness_grid(model: RKNet, split: MNISTSplit, integrators: list[str], steps: list[int],
                    progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Test accuracy of ``model`` for every (integrator, steps) pair on ``split``, each solved on
    the model's own interval.  Returns columns integrator, steps, nfe (per forward pass),
    accuracy, loss, seconds, n (images) and ci_low, ci_high (the accuracy's 95% Wilson
    interval, :func:`wilson_interval`).  The model is not changed."""
    base = model.config.solver
    rows = []
    total = len(integrators) * len(steps)
    for i, name in enumerate(integrators):
        for j, n in enumerate(steps):
            if progress is not None:
                progress((i * len(steps) + j) / total, f"{name} x{n}")
            spec = base.replace(integrator=name, steps=n, adaptive=False)
            start = time.perf_counter()
            loss, acc = evaluate(model, split, solver=spec)
            lo, hi = wilson_interval(round(acc * len(split)), len(split))
            rows.append(dict(integrator=name, steps=n, nfe=spec.nfe_estimate, accuracy=acc, loss=loss,
                             seconds=time.perf_counter() - start, n=len(split), ci_low=lo, ci_high=hi))
    if progress is not None:
        progress(1.0, "done")
    return pd.DataFrame(rows)


REFERENCE_SOLVER = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-5, atol=1e-6, max_steps=10_000)
"""The accurate solve a model is compared under (ODE-ness gap, Pareto view, solver table): adaptive
Dormand-Prince at a tight tolerance, on the model's own interval.  Pages name it by its label."""

GAP_TOLERANCE = 0.005  # "within 0.5 points of the reference" (accuracy as a fraction), strictly: < 0.5 points
LARGE_GAP = 0.02  # a model this much better with its training solver than with an accurate one is solver-bound
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (default 95%) of the proportion ``correct / n``, as fractions in
    [0, 1].  Unlike p +- z sqrt(p(1-p)/n) it does not collapse at 0% or 100%: 200 of 200
    correct gives 98.1% to 100%, 150 of 200 gives 68.6% to 80.4%.  ``n = 0`` gives (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = correct / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def percent_decimals(n: int) -> int:
    """Decimals a percentage of ``n`` items can carry: one item is 100/n points, so 200 images
    -> 1 (multiples of 0.5), 1,000 -> 1, 2,000 -> 2 (multiples of 0.05), 100 or fewer -> 0."""
    return max(0, math.ceil(math.log10(n / 100) - 1e-9)) if n > 0 else 0


def images_within_tolerance(n: int, tolerance: float = GAP_TOLERANCE) -> int:
    """How many of ``n`` images may differ from the reference while the accuracy stays within
    ``tolerance`` (strictly closer, as :func:`critical_step_sizes` counts): 0 for n <= 200 at
    0.5 points (one image is >= 0.5 points: "not a single image differs"), 4 for 1,000."""
    return max(0, math.ceil(n * tolerance - 1e-9) - 1)


@dataclass(frozen=True)
class OdenessGap:
    """Accuracy with the training solver vs a reference (accurate) solve of the same model.

    ``gap`` > 0 means the model needs its own discretisation (Ott et al., ICLR 2021: "ResNet after
    all?"); a true ODE model keeps its accuracy under any accurate solver (gap ~ 0).
    """

    train_solver: str
    train_acc: float
    reference_solver: str
    reference_acc: float
    reference_nfe: float  # evaluations per batch of the reference solve (mean over batches)

    @property
    def gap(self) -> float:
        return self.train_acc - self.reference_acc

    @property
    def solver_bound(self) -> bool:
        return self.gap > LARGE_GAP


def _accuracy_and_nfe(model: RKNet, split: MNISTSplit, solver: SolverSpec, batch_size: int = 1000
                      ) -> tuple[float, float]:
    """(accuracy, mean evaluations per batch) of ``model`` solved with ``solver`` (eval mode, no grad)."""
    correct, n, nfe = 0, 0, []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(split), batch_size):
            x = normalize(split.images[i:i + batch_size].to(device)).to(memory_format=torch.channels_last)
            h = model.features(x)
            sol = model.solve(h, solver)
            correct += int((model.output(sol.y).argmax(1) == split.labels[i:i + batch_size].to(device)).sum())
            n += x.shape[0]
            nfe.append(sol.stats.nfe)
    return correct / max(1, n), sum(nfe) / max(1, len(nfe))


def adaptive_cost(model: RKNet, split: MNISTSplit, solver: SolverSpec | None = None, batch_size: int = 1000
                  ) -> tuple[float, float]:
    """(accuracy, evaluations per image) of ``model`` under an adaptive solve (default
    :data:`REFERENCE_SOLVER` on the model's interval).  Every image of a batch shares the batch's
    evaluations, so the cost per image is the mean NFE of a batch solve."""
    spec = solver or REFERENCE_SOLVER.replace(t0=model.config.t0, t1=model.config.t1)
    return _accuracy_and_nfe(model, split, spec, batch_size)


SOLVER_INDEPENDENCE_BAR: tuple[SolverSpec, ...] = (
    SolverSpec(integrator="euler", steps=2),
    SolverSpec(integrator="euler", steps=8),
    SolverSpec(integrator="modified_euler", steps=4),
    SolverSpec(integrator="rk4", steps=1),
    SolverSpec(integrator="rk4", steps=8),
    REFERENCE_SOLVER,
)
"""The solvers a solver-independent model must keep its accuracy under (issue #16's bar)."""


def solver_table(model: RKNet, split: MNISTSplit, solvers: Sequence[SolverSpec] = SOLVER_INDEPENDENCE_BAR,
                 batch_size: int = 1000) -> pd.DataFrame:
    """Accuracy of ``model`` on ``split`` under each solver (on the model's own interval):
    columns ``solver`` (label), ``accuracy`` and ``nfe_per_batch`` (mean evaluations per batch of
    ``batch_size``; the cost of an adaptive solve), one row per solver, in order."""
    rows = []
    for spec in solvers:
        spec = spec.replace(t0=model.config.t0, t1=model.config.t1)
        acc, nfe = _accuracy_and_nfe(model, split, spec, batch_size)
        rows.append({"solver": spec.label(), "accuracy": acc, "nfe_per_batch": nfe})
    return pd.DataFrame(rows, columns=["solver", "accuracy", "nfe_per_batch"])


def per_image_cost(model: RKNet, x: torch.Tensor, solver: SolverSpec) -> pd.DataFrame:
    """Evaluations each image of ``x`` (N, 1, 28, 28, normalised) needs solved alone versus the
    batch solve that shares one error control: columns ``image``, ``alone``, ``in batch``,
    ``accepted``, ``rejected`` (of the solve alone).  Eval mode, no grad."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = model.features(x)
            batch_nfe = model.solve(h, solver).stats.nfe
            rows = []
            for i in range(h.shape[0]):
                st = model.solve(h[i:i + 1], solver).stats
                rows.append({"image": i, "alone": st.nfe, "in batch": batch_nfe, "accepted": st.accepted,
                             "rejected": st.rejected})
    finally:
        model.train(was)
    return pd.DataFrame(rows)


def odeness_gap(model: RKNet, split: MNISTSplit, reference: SolverSpec | None = None) -> OdenessGap:
    """The ODE-ness gap of ``model`` on ``split``: accuracy with its training solver minus
    accuracy with ``reference`` (default :data:`REFERENCE_SOLVER` on the model's interval)."""
    train = model.config.solver
    ref = reference or REFERENCE_SOLVER.replace(t0=train.t0, t1=train.t1)
    train_acc, _ = _accuracy_and_nfe(model, split, train)
    ref_acc, ref_nfe = _accuracy_and_nfe(model, split, ref)
    return OdenessGap(train.label(), train_acc, ref.label(), ref_acc, ref_nfe)


def critical_step_sizes(grid: pd.DataFrame, reference_acc: float, span: float,
                        tolerance: float = GAP_TOLERANCE) -> dict[str, float | None]:
    """Per integrator of a :func:`robustness_grid` result: the largest step size ``span / steps``
    whose accuracy is within ``tolerance`` of ``reference_acc`` (None if no step count is).

    "Within" is strict (closer than ``tolerance``) with a margin far above float rounding: a
    difference of exactly 0.5 points (one image of 200, five of 1,000) always fails, where the
    plain ``<=`` let float residue decide (it passed for 24 of the 200 one-image pairs at n = 200)."""
    out: dict[str, float | None] = {}
    for name, rows in grid.groupby("integrator", sort=False):
        ok = rows[(rows["accuracy"] - reference_acc).abs() < tolerance - 1e-9]
        out[str(name)] = float(abs(span) / ok["steps"].min()) if len(ok) else None
    return out


# The Draw page's first out-of-distribution check, superseded by odenet.inspect.digitcheck (which keeps it as
# one of its ink statistics, 'grey'); benchmarks/app/digit_check.py reports its rates beside the new check's.
# Its idea (numbers in its docstring): MNIST digits after MNIST-style preprocessing are crisp
# strokes (about half of the inked pixels are fully dark or fully bright), random noise shrunk
# into the 20x20 box becomes a uniform grey blur.  An energy score (-logsumexp of the logits)
# does not separate them for these models: noise gets confident logits.
OOD_THRESHOLD = 0.85


def ood_score(image28: torch.Tensor | np.ndarray) -> float:
    """How little a preprocessed 28x28 input (0..1, white ink on black) looks like an MNIST
    digit: the fraction of inked pixels (> 0.1) that are neither background nor full ink
    (< 0.9).  MNIST test digits (all 10,000): median 0.50, 99.5th percentile 0.82, 0.28% above
    :data:`OOD_THRESHOLD` (0.85); uniform, binary and Gaussian noise uploads: median 1.0, all
    above.  Blobs of solid ink (random squares) are not caught.  A blank input scores 1.0."""
    img = torch.as_tensor(np.asarray(image28), dtype=torch.float32)
    inked = img > 0.1
    n = int(inked.sum())
    if n == 0:
        return 1.0
    return float((inked & (img < 0.9)).sum()) / n


# -- motion and the vector field (Trajectories and Integrators pages) ---------------------------


@dataclass(frozen=True)
class PCAFit:
    """A PCA of hidden states: ``coords`` (T, N, k), ``explained`` (k,) as :func:`pca_project`
    gives, plus the ``mean`` (D,) and orthonormal ``components`` (k, D) to project other states
    (:meth:`project`) and to lift plane points back into state space (:meth:`lift`)."""

    coords: torch.Tensor
    explained: torch.Tensor
    mean: torch.Tensor
    components: torch.Tensor

    def project(self, states: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) states -> (..., k) coordinates."""
        lead = states.shape[:-3]
        flat = states.reshape(-1, self.mean.numel()).double()
        return ((flat - self.mean) @ self.components.T).reshape(*lead, -1).float()

    def lift(self, uv: torch.Tensor) -> torch.Tensor:
        """(G, 2) plane coordinates -> (G, D) states ``mean + u pc1 + v pc2``."""
        return self.mean + uv.double() @ self.components[: uv.shape[1]]


EXACT_PCA_SIZE = 512  # at most this many rows or columns: a full eigendecomposition (a few ms)


def _top_eigenpairs(centred: torch.Tensor, k: int, rtol: float = 1e-9,
                    max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``k`` largest eigenpairs of ``centred.T @ centred`` (D x D) without forming it: block
    subspace iteration with Rayleigh-Ritz, ``k + 12`` columns from a fixed start.  Stops when every
    wanted pair's residual ``|A v - l v|`` is below ``rtol * l_1`` (float64), so the result agrees
    with a full eigendecomposition to about ``sqrt(rtol)`` in the vectors; returns None when
    that is not reached in ``max_iter`` rounds (a flat spectrum), and the caller decomposes fully."""
    m, d = centred.shape
    q = min(k + 12, m, d)  # extra columns: the states' spectrum decays slowly (0.75, 0.73, 0.60, ...)
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(d, q, generator=gen, dtype=centred.dtype)).Q  # (D, q)
    for _ in range(max_iter):
        image = centred.T @ (centred @ basis)  # (D, q): A @ basis
        small = basis.T @ image  # (q, q) Rayleigh quotient
        vals, rot = torch.linalg.eigh((small + small.T) / 2)
        vals, rot = vals.flip(0), rot.flip(1)
        vecs, a_vecs = basis @ rot, image @ rot  # Ritz vectors (D, q) and A times them
        resid = (a_vecs[:, :k] - vecs[:, :k] * vals[:k]).norm(dim=0)
        if float(resid.max()) <= rtol * max(float(vals[0]), 1e-300):
            return vals[:k].clamp_min(0), vecs[:, :k]
        basis = torch.linalg.qr(a_vecs).Q
    return None


def pca_fit(states: torch.Tensor, k: int = 3, threads: int | None = 1) -> PCAFit:
    """The one PCA of the views, fitted across all steps and images: (T, N, C, H, W) -> :class:`PCAFit`.

    Small problems (rows or columns <= :data:`EXACT_PCA_SIZE`) are decomposed fully: eigenvectors of
    the (T*N)^2 Gram matrix or the D^2 covariance (D = C*H*W), whichever is smaller.  Larger ones (200
    images x 11 step times x 2,304 values) take only the ``k`` leading components, by subspace
    iteration to a residual of 1e-9 (:func:`_top_eigenpairs`; 3.5 s -> 0.3 s on one core),
    falling back to the full decomposition if it does not converge.  float64 on one thread (LAPACK on
    two contended threads took 10 s, not 0.03 s).
    """
    t_len, n = states.shape[:2]
    with torch_threads(threads) if threads else contextlib.nullcontext():
        flat = states.reshape(t_len * n, -1).double()  # (M, D)
        mean = flat.mean(0)  # (D,)
        centred = flat - mean
        m, d = centred.shape
        total = float((centred**2).sum()) or 1.0
        k = min(k, m, d)
        top = None if min(m, d) <= EXACT_PCA_SIZE else _top_eigenpairs(centred, k)
        if top is not None:
            var, comps = top  # (k,), (D, k)
        elif m <= d:  # Gram route: components from the left singular vectors
            var, u = torch.linalg.eigh(centred @ centred.T)  # ascending; var = singular values squared
            var, u = var.flip(0)[:k].clamp_min(0), u.flip(1)[:, :k]
            comps = (centred.T @ u) / var.sqrt().clamp_min(1e-12)  # (D, k), unit columns
        else:
            var, v = torch.linalg.eigh(centred.T @ centred)
            var, comps = var.flip(0)[:k].clamp_min(0), v.flip(1)[:, :k]  # (k,), (D, k)
        coords = centred @ comps  # (M, k)
    return PCAFit(coords.reshape(t_len, n, k).float(), (var / total).float(), mean, comps.T.contiguous())


@torch.no_grad()
def stage_states(model: RKNet, ts: torch.Tensor, states: torch.Tensor, solver: SolverSpec,
                 threads: int | None = 1) -> torch.Tensor:
    """The states at which the solver evaluated the vector field: for step i from ``states[i]``
    with ``dt = ts[i+1] - ts[i]``, stage j's input ``y_i + dt * sum_l a_jl k_l``.  Recomputed
    by the solver's own step routine (fixed steps): (steps, stages, N, C, H, W).  The model is not changed."""
    tab = solver.method.tableau
    with torch_threads(threads) if threads else contextlib.nullcontext():
        out = [torch.stack(rk_step(tab, model.gradient, float(ts[i]), float(ts[i + 1] - ts[i]), states[i],
                                   keep_stages=True).inputs)
               for i in range(len(ts) - 1)]
    return torch.stack(out)


@dataclass(frozen=True)
class PlaneField:
    """f(t, h) on a grid of the PCA plane: points ``(u, v)`` (G, 2) and the field's projection
    ``(du, dv)`` (G, 2); ``off_plane`` (G,) is the fraction of ||f|| the plane does not show."""

    t: float
    points: torch.Tensor
    arrows: torch.Tensor
    off_plane: torch.Tensor


@torch.no_grad()
def plane_field(model: RKNet, fit: PCAFit, t: float, grid: int = 13, margin: float = 0.1,
                threads: int | None = 1) -> PlaneField:
    """The vector field on the first two PCs' plane through the data's mean at time ``t``:
    grid points ``h = mean + u pc1 + v pc2`` over the range of the coordinates, ``f(t, h)``
    projected onto pc1, pc2.  States off the plane (all real ones) feel a different field."""
    c = fit.coords[..., :2].reshape(-1, 2)
    lo, hi = c.min(0).values, c.max(0).values
    pad = (hi - lo) * margin
    us = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), grid)
    vs = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), grid)
    uu, vv = torch.meshgrid(us, vs, indexing="xy")
    uv = torch.stack([uu.flatten(), vv.flatten()], 1)
    ch = model.config.channels
    with torch_threads(threads) if threads else contextlib.nullcontext():
        h = fit.lift(uv).float().reshape(len(uv), ch, -1)
        side = int(round(h.shape[-1] ** 0.5))
        f = model.gradient(float(t), h.reshape(len(uv), ch, side, side)).flatten(1).double()
    proj = f @ fit.components[:2].T
    norm = f.norm(dim=1).clamp_min(1e-12)
    off = (1 - (proj.norm(dim=1) / norm) ** 2).clamp_min(0).sqrt()
    return PlaneField(float(t), uv, proj.float(), off.float())


@dataclass(frozen=True)
class StepStages:
    """One explicit RK step drawn stage by stage: stage times ``ts`` (s,), inputs ``ys`` (s, d),
    slopes ``ks`` (s, d), weights ``b``, the step's start ``(t, y)``, ``dt`` and ``y_next``."""

    t: float
    dt: float
    y: torch.Tensor
    ts: torch.Tensor
    ys: torch.Tensor
    ks: torch.Tensor
    b: tuple[float, ...]
    y_next: torch.Tensor


def rk_stages(method: RungeKuttaMethod, f: Callable[[float, torch.Tensor], torch.Tensor], t: float, dt: float,
              y: torch.Tensor) -> StepStages:
    """Every stage of one step of ``method`` from ``(t, y)``, in float64, by the solvers' own step routine
    (:func:`~odenet.ode.integrators.rk_step`), so ``y_next`` is ``method.step``'s."""
    tab = method.tableau
    y = torch.as_tensor(y, dtype=torch.float64)

    def f64(ti: float, yi: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(f(ti, yi), dtype=torch.float64)

    step = rk_step(tab, f64, t, dt, y, keep_stages=True)
    return StepStages(t, dt, y, torch.tensor([t + c * dt for c in tab.c], dtype=torch.float64),
                      torch.stack(step.inputs), torch.stack(step.ks), tab.b, step.y)
