"""A continuous normalizing flow (CNF) on points in the plane, on odenet's own solvers.

A learned time-dependent vector field ``f(t, z)`` (a small tanh MLP on ``[z, t]``) carries the
standard Gaussian at ``t0`` into the data density at ``t1`` (Chen et al. 2018; FFJORD, Grathwohl
et al. 2019).  Along a trajectory the log-density changes by minus the divergence of the field,
``d log p(z(t)) / dt = -div f(t, z(t))``, so the log-likelihood of a point ``x`` is one solve of
the state ``[z, l]`` from ``t1`` back to ``t0`` with ``z(t1) = x``, ``l(t1) = 0`` and
``l' = -div f``:  ``log p(x) = log N(z(t0); 0, I) - l(t0)``.

- **Divergence**: exact in 2-D from two Jacobian-vector products (the two columns of ``df/dz``),
  or the Hutchinson estimator ``eps^T (df/dz) eps`` with one Rademacher probe per point, fixed for
  a solve (one product; unbiased, the option that scales to high dimensions).
- **Solvers and gradients**: any :class:`~odenet.ode.solvers.SolverSpec` (fixed steps, adaptive,
  custom tableaux) and any gradient method of :func:`odenet.ode.gradients.solve_spec`, the adjoint
  included: the state is one ``(n, 3)`` tensor (``(n, 5)`` with the regularisers).
- **Regularisers** (RNODE, Finlay et al. 2020): the kinetic energy ``||f||^2`` and the Jacobian
  Frobenius norm ``||df/dz||_F^2``, the quantities of :mod:`odenet.model.regularizers`, here
  integrated over ``[t0, t1]`` as two more state columns, as Finlay et al. do, so every gradient
  method (the adjoint too) differentiates them; the MNIST model's evaluation-recording form works
  with backprop only.  The Jacobian norm comes for free from the same products as the divergence.
  Unregularised flows grow the evaluations an adaptive solver needs as they train; regularised
  ones stay cheap and stay ODEs under the few fixed steps they train with.
- **Coordinates**: points are standardised inside (per-axis mean and scale of the training
  points); every NLL reported is in nats per point **in the data's own coordinates** (the
  standardisation's log-determinant ``sum(log scale)`` is added back).

Training is full-batch Adam with a cosine schedule on one thread (measured fastest for a few
thousand points on 2 cores: a 512-point minibatch reached a worse test NLL in the same 60 s);
larger data sets (CSV input up to 100,000 rows) train on random batches of ``batch_size`` points.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from odenet.data.toy2d import DataError, PointSet
from odenet.errors import ConfigError
from odenet.inspect.analysis import REFERENCE_SOLVER
from odenet.ode.gradients import solve_spec
from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.settings import SEED_RANGE, PlaneSettings
from odenet.utils import torch_threads

__all__ = ["DIVERGENCES", "DensityConfig", "Velocity", "CNFDynamics", "DensityFlow", "LogLikelihood",
           "DensityProgress", "DensityRun", "train_density", "evaluate_nll", "until", "backwards", "one_thread",
           "gaussian_nll", "kde_bandwidth", "kde_log_prob", "kde_nll", "KDE_SEARCH_POINTS", "MAX_WIDTH", "MAX_DEPTH",
           "REPORT_EVERY"]

DIVERGENCES = ("exact", "hutchinson")
MAX_WIDTH = 256
MAX_DEPTH = 4
MAX_ITERATIONS = 20_000
REPORT_EVERY = 20  # iterations between progress reports (and probe solves)
LOG_2PI = math.log(2 * math.pi)
F = TypeVar("F", bound=Callable[..., Any])


def one_thread(fn: F) -> F:
    """Run ``fn`` with one torch thread: these tensors are small, and on a busy 2-core machine a
    second thread only spins (a KDE bandwidth search: 0.7 s on one thread, 2 s on two)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@dataclass(frozen=True)
class DensityConfig(PlaneSettings):
    """Everything a density training needs besides the points; validated on construction.

    The defaults fit the ring-plus-blobs mixture (1,000 points) to a test NLL within a few
    hundredths of a nat of a Gaussian kernel density estimate's in under a minute on 2 CPU cores
    (``benchmarks/plane/density.py``): rk4 x4 on [0, 1], the kinetic regulariser at 0.05 and the
    Jacobian one at 0.1, which keep the flow an ODE (its NLL under an accurate adaptive solve
    stays within a few thousandths of a nat of the training solver's) and generalise better."""

    width: int = 64
    depth: int = 2  # hidden layers of the MLP
    solver: SolverSpec = field(default_factory=lambda: SolverSpec(integrator="rk4", steps=4))
    gradient: str = "backprop"
    divergence: str = "exact"
    kinetic: float = 0.05
    jacobian: float = 0.1
    iterations: int = 800
    lr: float = 3e-3
    batch_size: int = 2048  # training points per iteration (all of them when there are fewer)
    seed: int = 0

    _WHOLE = {"width": (2, MAX_WIDTH), "depth": (1, MAX_DEPTH), "iterations": (1, MAX_ITERATIONS),
              "batch_size": (2, 100_000), "seed": SEED_RANGE}
    _NON_NEGATIVE = ("lr", "kinetic", "jacobian")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.divergence not in DIVERGENCES:
            raise ConfigError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {self.divergence!r}")

    @property
    def regularised(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0


class Velocity(nn.Module):
    """``f(t, z)``: a tanh MLP on ``[z, t]`` with ``depth`` hidden layers -> ``dz/dt`` (n, 2)."""

    def __init__(self, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d_in = 3
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.Tanh()]
            d_in = width
        self.net = nn.Sequential(*layers, nn.Linear(d_in, 2))

    def forward(self, t: float, z: torch.Tensor) -> torch.Tensor:
        tt = torch.full_like(z[:, :1], float(t))  # (n, 1): time as an input
        return self.net(torch.cat([z, tt], 1))  # (n, 2)

    def jvp(self, t: float, z: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(t, z)`` (n, 2) and the Jacobian-vector products ``(df/dz) u`` (n, k, 2) for the ``k``
        directions ``u = directions[:, i]`` (n, k, 2), carried through the layers beside the activations
        (forward mode by hand: a Linear maps a tangent by its weight, tanh scales it by ``1 - tanh^2``).
        Plain autograd operations, so the result differentiates like ``f`` under every gradient method."""
        h = torch.cat([z, torch.full_like(z[:, :1], float(t))], 1)  # (n, 3)
        tan = torch.cat([directions, directions.new_zeros(*directions.shape[:2], 1)], 2)  # (n, k, 3): dt = 0
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                h = layer(h)
                tan = tan @ layer.weight.T  # (n, k, out)
            else:
                h = torch.tanh(h)
                tan = tan * (1 - h * h)[:, None, :]
        return h, tan


class CNFDynamics(nn.Module):
    """The CNF's right-hand side on the state ``s = [z (2), l (1)]`` (+ ``[kinetic, jacobian]``
    accumulators when ``regularise``): ``[f, -div f]`` (+ ``[||f||^2, ||df/dz||_F^2]``), shape (n, 3) or (n, 5).

    Exact divergence (``probe`` None): the two Jacobian-vector products with the axes give the whole
    2 x 2 Jacobian, so its trace and Frobenius norm are exact.  Hutchinson (``probe`` (n, 2), fixed
    for the solve it serves): one product ``J eps`` gives ``eps . J eps`` (the divergence) and
    ``|J eps|^2`` (the Frobenius norm), unbiased for a Rademacher ``eps``.  The products run forward
    through the MLP (:meth:`Velocity.jvp`) rather than as ``autograd.grad`` calls inside ``f``: that
    way the field is an ordinary differentiable function, which torch's checkpointing (re-running a
    step in backward) requires, and evaluation needs no autograd graph at all."""

    def __init__(self, velocity: Velocity, probe: torch.Tensor | None = None, regularise: bool = False) -> None:
        super().__init__()
        self.velocity, self.probe, self.regularise = velocity, probe, regularise

    def forward(self, t: float, s: torch.Tensor) -> torch.Tensor:
        z = s[:, :2]  # (n, 2)
        if self.probe is None:
            axes = torch.eye(2, dtype=z.dtype).expand(len(z), 2, 2)  # (n, 2, 2): e_1, e_2 for every point
            v, jac = self.velocity.jvp(t, z, axes)  # jac[n, k, j] = dv_j / dz_k
            div = jac[:, 0, 0] + jac[:, 1, 1]  # (n,)
        else:
            v, jac = self.velocity.jvp(t, z, self.probe[:, None, :])  # (n, 1, 2): J eps
            div = (jac[:, 0] * self.probe).sum(1)
        parts = [v, -div[:, None]]
        if self.regularise:
            parts += [v.pow(2).sum(1, keepdim=True), jac.pow(2).sum((1, 2))[:, None]]
        return torch.cat(parts, 1)


@dataclass
class LogLikelihood:
    """``log p`` of points (n,) in data coordinates, the regulariser integrals (batch means over
    ``[t0, t]``; None unless asked for) and the evaluations of the solve."""

    log_p: torch.Tensor  # (n,)
    kinetic: torch.Tensor | None
    jacobian: torch.Tensor | None
    nfe: int


class DensityFlow(nn.Module):
    """The CNF: a :class:`Velocity` plus the standardisation of the data (``mean``, ``scale``: (2,))."""

    def __init__(self, width: int = 64, depth: int = 2, mean: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None) -> None:
        super().__init__()
        self.velocity = Velocity(width, depth)
        self.register_buffer("mean", torch.zeros(2) if mean is None else mean.detach().clone().float())
        self.register_buffer("scale", torch.ones(2) if scale is None else scale.detach().clone().float())

    @classmethod
    def for_points(cls, x: torch.Tensor, width: int = 64, depth: int = 2) -> DensityFlow:
        """A flow standardising like the points ``x`` (n, 2): their mean and per-axis standard deviation."""
        mean, scale = x.mean(0), x.std(0) if len(x) > 1 else torch.zeros(2)
        if not bool((scale > 1e-6 * (1 + mean.abs())).all()):
            raise DataError("the training points have no spread along one axis (all on one line or one point); "
                            "a density in the plane needs points that vary in both x and y")
        return cls(width, depth, mean, scale)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def to_data(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.mean

    def log_prob(self, x: torch.Tensor, solver: SolverSpec, t: float | None = None, divergence: str = "exact",
                 gradient: str = "backprop", regularise: bool = False,
                 generator: torch.Generator | None = None) -> LogLikelihood:
        """``log p_t(x)`` for points ``x`` (n, 2) in data coordinates: the density the flow has carried
        the Gaussian into by time ``t`` (default ``solver.t1``: the model's density).

        One solve of ``[z, l]`` from ``t`` back to ``solver.t0`` (a fixed grid keeps its step size:
        ``t`` halfway gets half the steps, at least one).  ``divergence="hutchinson"`` draws one
        Rademacher probe per point from ``generator``.  Differentiable the ``gradient`` way when
        autograd is on."""
        t = solver.t1 if t is None else float(t)
        z = self.to_latent(x)  # (n, 2)
        log_det = self.scale.log().sum()  # the standardisation's: p_x(x) = p_z(z) / prod(scale)
        cols = 3 if regularise else 1
        if t == solver.t0:
            log_p = -0.5 * z.pow(2).sum(1) - LOG_2PI - log_det
            zero = log_p.new_zeros(()) if regularise else None
            return LogLikelihood(log_p, zero, zero, 0)
        s = torch.cat([z, z.new_zeros(len(z), cols)], 1)  # (n, 3) or (n, 5)
        probe = None
        if divergence == "hutchinson":
            probe = torch.randint(0, 2, z.shape, generator=generator).to(z) * 2 - 1  # (n, 2) of +-1
        elif divergence != "exact":
            raise ConfigError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")
        dyn = CNFDynamics(self.velocity, probe, regularise)
        sol = solve_spec(dyn, s, backwards(solver, t), gradient)
        end = sol.y  # (n, 3 or 5) at t0
        log_p = -0.5 * end[:, :2].pow(2).sum(1) - LOG_2PI - end[:, 2] - log_det
        kin = jac = None
        if regularise:  # integrated from t back to t0: minus the forward-time integrals
            kin, jac = -end[:, 3].mean(), -end[:, 4].mean()
        return LogLikelihood(log_p, kin, jac, sol.stats.nfe)

    @torch.no_grad()
    def push(self, z0: torch.Tensor, solver: SolverSpec, trajectory: bool = False) -> Any:
        """Carry latent points ``z0`` (n, 2) from ``t0`` to ``t1`` (the velocity alone, no density):
        the :class:`~odenet.ode.solvers.Solution` in latent coordinates."""
        return solver.build(self.velocity, check_finite=False).solve(z0, trajectory=trajectory)

    @one_thread
    @torch.no_grad()
    def sample(self, n: int, solver: SolverSpec, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` points (n, 2) drawn from the model: Gaussian draws carried from ``t0`` to ``t1``."""
        z0 = torch.randn(n, 2, generator=generator)
        x = self.to_data(self.push(z0, solver).y)
        if not bool(torch.isfinite(x).all()):
            raise SolverError(f"sampling with {solver.label()} gave NaN or infinite points; use more steps or an "
                              "adaptive solver")
        return x


def until(solver: SolverSpec, t: float) -> SolverSpec:
    """``solver`` on ``[t0, t]``; a fixed grid keeps its step size (``t`` halfway: half the steps, at least one)."""
    if solver.adaptive or t == solver.t1:
        return solver.replace(t1=t)
    frac = abs(t - solver.t0) / abs(solver.t1 - solver.t0)
    return solver.replace(t1=t, steps=max(1, math.ceil(solver.steps * frac - 1e-9)))


def backwards(solver: SolverSpec, t: float) -> SolverSpec:
    """``solver`` run from ``t`` back to its ``t0`` (:func:`until` reversed)."""
    fwd = until(solver, t)
    return fwd.replace(t0=t, t1=solver.t0)


@one_thread
def evaluate_nll(model: DensityFlow, x: torch.Tensor, solver: SolverSpec, chunk: int = 4096) -> tuple[float, int]:
    """Mean NLL (nats per point, data coordinates) of ``x`` (n, 2) under ``solver`` with the exact
    divergence, and the evaluations of one solve; raises :class:`SolverError` if it is not finite."""
    total, nfe = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            ll = model.log_prob(x[i:i + chunk], solver)
            total += float(ll.log_p.sum())
            nfe = max(nfe, ll.nfe)
    nll = -total / max(len(x), 1)
    if not math.isfinite(nll):
        raise SolverError(f"the log-density under {solver.label()} is NaN or infinite; use more steps or an "
                          "adaptive solver")
    return nll, nfe


# -- baselines ----------------------------------------------------------------------------------
@one_thread
def gaussian_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL (nats per point) of the Gaussian fitted to the training points (mean, covariance)."""
    mean = train.double().mean(0)
    cov = torch.cov(train.double().T) + 1e-9 * torch.eye(2, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mean, cov)
    return float(-dist.log_prob(test.double()).mean())


def _kde_from_sq(d2: torch.Tensor, h: float) -> torch.Tensor:
    """KDE log-density from squared distances ``d2`` (n, m) to the ``m`` kernel centres, bandwidth ``h``."""
    return torch.logsumexp(d2 / (-2 * h * h), 1) - math.log(d2.shape[1]) - math.log(2 * math.pi * h * h)


@one_thread
def kde_log_prob(fit: torch.Tensor, x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Log-density (n,) at ``x`` of the isotropic Gaussian kernel density estimate on ``fit`` (m, 2)
    (float64, in chunks of about 2**22 distances)."""
    fit, x = fit.double(), x.double()
    chunk = max(1, 2**22 // len(fit))
    return torch.cat([_kde_from_sq(torch.cdist(x[i:i + chunk], fit).pow(2), bandwidth)
                      for i in range(0, len(x), chunk)])


KDE_SEARCH_POINTS = 5000  # the bandwidth search uses at most this many training points


@one_thread
def kde_bandwidth(train: torch.Tensor, holdout: float = 0.2, seed: int = 0) -> float:
    """The KDE bandwidth that maximises the likelihood of ``holdout`` of the training points under
    a KDE on the rest (a log-spaced grid of 40 widths from 0.2% to 100% of the data's spread, 17%
    apart; a random subset of :data:`KDE_SEARCH_POINTS` points stands in for a larger training set)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=g)[:KDE_SEARCH_POINTS]
    k = min(max(1, round(len(order) * holdout)), len(order) - 1)
    d2 = torch.cdist(train[order[:k]].float(), train[order[k:]].float()).pow(2)  # (k, m), once for every width
    spread = float(train.double().std(0).mean())
    widths = [spread * 10 ** (-2.7 + 2.7 * i / 39) for i in range(40)]
    scores = [float(_kde_from_sq(d2, h).mean()) for h in widths]
    return widths[max(range(len(widths)), key=scores.__getitem__)]


def kde_nll(train: torch.Tensor, test: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Test NLL of a Gaussian KDE on all training points, with its bandwidth chosen on held-out
    training points (:func:`kde_bandwidth`); returns ``(nll, bandwidth)``."""
    h = kde_bandwidth(train, seed=seed)
    return float(-kde_log_prob(train, test, h).mean()), h


# -- training -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DensityProgress:
    """One point of the training curve (NLLs in nats per point, data coordinates)."""

    iteration: int
    iterations: int
    loss: float  # the objective: NLL of the batch + the weighted regularisers
    train_nll: float  # of this iteration's batch, under the training solver and divergence
    test_nll: float | None  # under the training solver, exact divergence
    seconds: float
    nfe: int  # evaluations of f in this iteration's forward solve
    kinetic: float | None  # the regulariser integrals of this batch (None when off)
    jacobian: float | None
    probe_nfe: int | None = None  # evaluations the probe solver needed for the test points (None: no probe)
    probe_nll: float | None = None  # test NLL under the probe solver


@dataclass
class DensityRun:
    """A finished (or stopped) density training: the flow, its curve and its final numbers."""

    model: DensityFlow
    config: DensityConfig
    history: list[DensityProgress]
    train_nll: float  # under the training solver, exact divergence
    test_nll: float | None
    reference_nll: float | None  # test NLL under the reference solver (adaptive dopri5, rtol 1e-5)
    reference_nfe: int | None
    seconds: float
    nfe: int  # evaluations per forward solve at the end of training
    stopped: bool = False

    def summary(self) -> dict[str, Any]:
        """What the CLI's ``--json`` prints (plain numbers and names)."""
        s, c = self.config.solver, self.config
        return {"train_nll": self.train_nll, "test_nll": self.test_nll, "reference_test_nll": self.reference_nll,
                "reference_nfe": self.reference_nfe, "seconds": round(self.seconds, 3), "nfe": self.nfe,
                "integrator": s.integrator, "steps": None if s.adaptive else s.steps, "adaptive": s.adaptive,
                "gradient": c.gradient, "divergence": c.divergence, "kinetic": c.kinetic, "jacobian": c.jacobian,
                "width": c.width, "depth": c.depth, "iterations": len(self.history) and self.history[-1].iteration,
                "stopped": self.stopped}


def train_density(config: DensityConfig, train: PointSet, test: PointSet | None = None,
                  on_progress: Callable[[DensityProgress], None] | None = None, report_every: int = REPORT_EVERY,
                  stop: threading.Event | None = None, probe: SolverSpec | None = None,
                  reference: SolverSpec | None = REFERENCE_SOLVER) -> DensityRun:
    """Fit a :class:`DensityFlow` to the points of ``train`` (labels ignored) by maximum likelihood.

    ``on_progress`` receives a :class:`DensityProgress` every ``report_every`` iterations and at
    the end; with a ``probe`` solver (an adaptive one shows how hard the flow is to solve) each
    report also solves the test points with it.  Setting ``stop`` ends training after the current
    iteration (the run is marked ``stopped``).  A solve that blows up raises
    :class:`~odenet.ode.solvers.SolverError` naming the iteration, never a NaN curve.  At the end
    the test NLL is also measured under ``reference`` (None: skipped)."""
    with torch_threads(1):  # a tiny model: more threads only spin (20-80x slower on a busy 2-core machine)
        return _train(config, train, test, on_progress, report_every, stop, probe, reference)


def _train(config: DensityConfig, train: PointSet, test: PointSet | None,
           on_progress: Callable[[DensityProgress], None] | None, report_every: int, stop: threading.Event | None,
           probe: SolverSpec | None, reference: SolverSpec | None) -> DensityRun:
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = DensityFlow.for_points(train.x, config.width, config.depth)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.iterations, eta_min=config.lr * 0.02)
    n = len(train)
    history: list[DensityProgress] = []
    started = time.perf_counter()
    stopped = False
    for it in range(1, config.iterations + 1):
        xb = train.x if n <= config.batch_size else train.x[torch.randint(0, n, (config.batch_size,), generator=gen)]
        try:
            ll = model.log_prob(xb, config.solver, divergence=config.divergence, gradient=config.gradient,
                                regularise=config.regularised, generator=gen)
        except SolverError as exc:
            raise type(exc)(f"iteration {it}: {exc}") from None
        nll = -ll.log_p.mean()
        loss = nll
        if ll.kinetic is not None and ll.jacobian is not None:
            loss = loss + config.kinetic * ll.kinetic + config.jacobian * ll.jacobian
        if not torch.isfinite(loss):
            raise SolverError(f"the loss became NaN or infinite at iteration {it}; use more steps, an adaptive "
                              "solver, a smaller learning rate or the regularisers")
        opt.zero_grad(set_to_none=True)
        try:
            loss.backward()
        except SolverError as exc:  # the adjoint's backward solve
            raise type(exc)(f"iteration {it}: {exc}") from None
        opt.step()
        sched.step()
        stopped = stop is not None and stop.is_set()
        if it % report_every == 0 or it == config.iterations or stopped:
            test_nll = probe_nll = probe_nfe = None
            try:
                if test is not None:
                    test_nll = evaluate_nll(model, test.x, config.solver)[0]
                    if probe is not None:
                        probe_nll, probe_nfe = evaluate_nll(model, test.x, probe)
            except SolverError as exc:
                raise type(exc)(f"iteration {it}: {exc}") from None
            point = DensityProgress(it, config.iterations, loss.item(), nll.item(), test_nll,
                                    time.perf_counter() - started, ll.nfe,
                                    None if ll.kinetic is None else ll.kinetic.item(),
                                    None if ll.jacobian is None else ll.jacobian.item(), probe_nfe, probe_nll)
            history.append(point)
            if on_progress is not None:
                on_progress(point)
        if stopped:
            break
    seconds = time.perf_counter() - started
    model.eval()
    train_nll, nfe = evaluate_nll(model, train.x, config.solver)
    test_nll = ref_nll = ref_nfe = None
    if test is not None:
        test_nll = evaluate_nll(model, test.x, config.solver)[0]
        if reference is not None:
            try:
                ref_nll, ref_nfe = evaluate_nll(model, test.x, reference)
            except SolverError:  # the reference solve gave up: the flow is no ODE it can solve; reported as None
                pass
    return DensityRun(model, config, history, train_nll, test_nll, ref_nll, ref_nfe, seconds, nfe, stopped)
