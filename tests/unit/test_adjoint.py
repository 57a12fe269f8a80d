"""Gradients through a solve (odenet.ode.gradients): adjoint and checkpoint against backprop and
closed forms, memory, BatchNorm running statistics, counts and failure modes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from odenet.model.rknet import RKNet
from odenet.ode.gradients import (
    GRADIENT_METHODS,
    RECONSTRUCTION_REFINEMENTS,
    BackwardStats,
    gradient_comparison,
    saved_tensor_bytes,
    solve_with_gradient,
)
from odenet.ode.integrators import get_method
from odenet.ode.solvers import MaxStepsExceeded, NonFiniteState, SolverError


class LinearField(nn.Module):
    """y' = y A^T for a batch of row vectors y (N, D); A (D, D) is the parameter."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return y @ self.a.T


class ScalarRate(nn.Module):
    """y' = theta * y."""

    def __init__(self, theta: float, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=dtype))

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.theta * y


class TinyMLP(nn.Module):
    """A small time-dependent nonlinear field for adaptive tests: (N, 2) -> (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(3, 16)
        self.l2 = nn.Linear(16, 2)

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        ty = torch.cat([y, y.new_full((y.shape[0], 1), t)], 1)  # (N, 3)
        return self.l2(torch.tanh(self.l1(ty)))


A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=torch.float64)  # a damped rotation
Y0 = torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.0, 0.0]], dtype=torch.float64)  # (3, 2)
W = torch.tensor([[1.0, 3.0], [-2.0, 0.5], [0.7, 0.1]], dtype=torch.float64)  # loss weights (3, 2)


def exact_linear_grads() -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dA and dL/dy0 for L = sum(W * y(1)), y(1) = y0 expm(A)^T, by autograd through matrix_exp."""
    a = A.clone().requires_grad_(True)
    y0 = Y0.clone().requires_grad_(True)
    loss = (W * (y0 @ torch.linalg.matrix_exp(a).T)).sum()
    ga, gy = torch.autograd.grad(loss, (a, y0))
    return ga, gy


def linear_grads(gradient: str, method: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    f = LinearField(A)
    y0 = Y0.clone().requires_grad_(True)
    y1 = solve_with_gradient(f, y0, 0.0, 1.0, method, gradient=gradient, steps=steps)
    (W * y1).sum().backward()
    return f.a.grad, y0.grad


def log2_slope(ns: list[int], errs: list[float]) -> float:
    xs = [math.log2(n) for n in ns]
    ys = [math.log2(e) for e in errs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


@pytest.mark.parametrize("name", ["euler", "midpoint", "rk4"])
def test_adjoint_gradient_converges_at_method_order(name):
    """The adjoint gradient is the continuous one discretised: its error falls like dt^order."""
    exact_a, exact_y = exact_linear_grads()
    ns = [8, 16, 32, 64]
    errs_a, errs_y = [], []
    for n in ns:
        ga, gy = linear_grads("adjoint", name, n)
        errs_a.append(float((ga - exact_a).norm()))
        errs_y.append(float((gy - exact_y).norm()))
    order = get_method(name).order
    assert abs(-log2_slope(ns, errs_a) - order) <= 0.3, (name, errs_a)
    assert abs(-log2_slope(ns, errs_y) - order) <= 0.3, (name, errs_y)


def test_backprop_and_checkpoint_are_the_discrete_gradient():
    """Backprop and checkpoint differentiate the same discrete solve: identical gradients."""
    ga_b, gy_b = linear_grads("backprop", "rk4", 5)
    ga_c, gy_c = linear_grads("checkpoint", "rk4", 5)
    torch.testing.assert_close(ga_c, ga_b, rtol=1e-12, atol=0)
    torch.testing.assert_close(gy_c, gy_b, rtol=1e-12, atol=0)


def test_discrete_adjoint_is_backprops_gradient_up_to_reconstruction():
    """The discrete adjoint differentiates the solver's own steps (at reconstructed states):
    on RK4 x5 it is 60x closer to backprop than the continuous adjoint, and it converges to the
    exact gradient at the method's order like backprop does."""
    ga_b, gy_b = linear_grads("backprop", "rk4", 5)
    ga_c, _ = linear_grads("adjoint", "rk4", 5)
    ga_d, gy_d = linear_grads("discrete_adjoint", "rk4", 5)
    err_d = float((ga_d - ga_b).norm() / ga_b.norm())
    err_c = float((ga_c - ga_b).norm() / ga_b.norm())
    assert err_d < 2e-6 and err_c > 3e-5, (err_d, err_c)  # 8.7e-7 vs 5.4e-5
    torch.testing.assert_close(gy_d, gy_b, rtol=1e-12, atol=0)  # linear: dL/dy0 does not depend on the states
    exact_a, _ = exact_linear_grads()
    for name in ("euler", "midpoint", "rk4"):
        ns = [8, 16, 32, 64]
        errs = [float((linear_grads("discrete_adjoint", name, n)[0] - exact_a).norm()) for n in ns]
        assert abs(-log2_slope(ns, errs) - get_method(name).order) <= 0.3, (name, errs)


def test_reversed_interval():
    """t1 < t0 integrates backwards; the adjoint then runs forwards in time."""
    grads = {}
    for g in ("backprop", "adjoint"):
        f = ScalarRate(0.4)
        y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        y1 = solve_with_gradient(f, y0, 1.0, -0.5, "rk4", gradient=g, steps=32)
        y1.sum().backward()
        grads[g] = (f.theta.grad, y0.grad)
    exact_theta = -1.5 * math.exp(-0.6) * 3.0  # d/dtheta of sum(y0) e^{-1.5 theta}
    assert grads["adjoint"][0].item() == pytest.approx(exact_theta, rel=1e-6)
    torch.testing.assert_close(grads["adjoint"][1], grads["backprop"][1], rtol=1e-6, atol=0)


# -- RKNet -------------------------------------------------------------------------------
def rknet_batch(n: int = 16, channels: int = 64, seed: int = 0) -> tuple[RKNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = RKNet(channels=channels)
    x = torch.randn(n, 1, 28, 28)  # (N, 1, 28, 28)
    y = torch.randint(0, 10, (n,))  # (N,)
    return model, x, y


def rknet_loss(model: RKNet, x: torch.Tensor, y: torch.Tensor, gradient: str, steps: int,
               stats: BackwardStats | None = None, method: str = "rk4") -> torch.Tensor:
    h1 = solve_with_gradient(model.gradient, model.sampling(x), 0.0, 1.0, method, gradient=gradient, steps=steps,
                             stats=stats)
    return F.cross_entropy(model.output(h1), y)


def flat_grads(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])  # (P,)


def test_rknet_adjoint_and_checkpoint_match_backprop():
    model, x, y = rknet_batch()
    model.eval()
    grads = {g: flat_grads(model, rknet_loss(model, x, y, g, 8)) for g in GRADIENT_METHODS}
    ref = grads["backprop"]
    rel = {}
    for g in ("adjoint", "discrete_adjoint", "checkpoint"):
        cos = F.cosine_similarity(grads[g], ref, dim=0).item()
        rel[g] = ((grads[g] - ref).norm() / ref.norm()).item()
        assert cos >= 0.999 and rel[g] <= 0.02, (g, cos, rel[g])
    torch.testing.assert_close(grads["checkpoint"], ref, rtol=1e-5, atol=1e-7)
    assert rel["discrete_adjoint"] < 1e-6 < rel["adjoint"], rel  # 3.6e-8 vs 1.2e-4 (eval mode)


def test_rknet_discrete_adjoint_train_mode():
    """Train mode (BatchNorm on batch statistics, as in training), RK4 x8: the discrete
    adjoint's gradient is within 0.1% of backprop's, the continuous adjoint's 0.5% away."""
    model, x, y = rknet_batch()
    model.train()
    ref = flat_grads(model, rknet_loss(model, x, y, "backprop", 8))
    stats = BackwardStats()
    g_d = flat_grads(model, rknet_loss(model, x, y, "discrete_adjoint", 8, stats))
    g_c = flat_grads(model, rknet_loss(model, x, y, "adjoint", 8))
    rel_d = float((g_d - ref).norm() / ref.norm())
    rel_c = float((g_c - ref).norm() / ref.norm())
    assert rel_d < 1e-3 < rel_c, (rel_d, rel_c)  # 1.0e-4 vs 5.3e-3
    assert 0 < stats.reconstruction_residual < 1e-4, stats
    assert stats.nfe_backward == (3 + RECONSTRUCTION_REFINEMENTS) * 4 * 8


def test_memory_adjoint_constant_backprop_linear():
    model, x, y = rknet_batch(n=8)
    model.eval()
    b = {(g, n): saved_tensor_bytes(lambda g=g, n=n: rknet_loss(model, x, y, g, n), backward=False)
         for g in ("backprop", "adjoint", "discrete_adjoint") for n in (4, 16)}
    assert b[("adjoint", 16)] <= 1.5 * b[("adjoint", 4)], b
    assert b[("discrete_adjoint", 16)] == b[("adjoint", 16)], b
    assert b[("backprop", 16)] >= 2.5 * b[("backprop", 4)], b
    assert b[("adjoint", 16)] < b[("backprop", 4)], b
    # the ODE block alone: adjoint keeps only y(t1); backprop is linear in the step count
    h0 = model.sampling(x).detach().requires_grad_(True)  # (N, C, 6, 6)

    def block(g: str, n: int) -> int:
        return saved_tensor_bytes(lambda: solve_with_gradient(model.gradient, h0, 0.0, 1.0, "rk4", gradient=g,
                                                              steps=n).sum())

    assert block("adjoint", 16) == block("adjoint", 4) == h0.numel() * h0.element_size()
    assert block("discrete_adjoint", 16) == block("discrete_adjoint", 4) == h0.numel() * h0.element_size()
    assert 3.5 <= block("backprop", 16) / block("backprop", 4) <= 4.0


@pytest.mark.parametrize("gradient", ["adjoint", "discrete_adjoint", "checkpoint"])
def test_batchnorm_running_stats_updated_once(gradient):
    """Train mode: running stats after forward+backward equal those after the forward alone
    (and those of a plain backprop forward): backward re-evaluations leave them alone."""
    model, x, y = rknet_batch(n=8, channels=8)
    model.train()
    fwd_only, bp_fwd = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        rknet_loss(fwd_only, x, y, gradient, 3)
    rknet_loss(bp_fwd, x, y, "backprop", 3)
    stats = BackwardStats()
    rknet_loss(model, x, y, gradient, 3, stats).backward()
    per_eval = 3 + RECONSTRUCTION_REFINEMENTS if gradient == "discrete_adjoint" else 1
    assert stats.nfe_backward == 12 * per_eval
    for (name, b), b1, b2 in zip(model.named_buffers(), fwd_only.buffers(), bp_fwd.buffers()):
        torch.testing.assert_close(b, b1, rtol=0, atol=0, msg=name)
        torch.testing.assert_close(b, b2, rtol=1e-6, atol=1e-7, msg=name)
    assert int(model.gradient.block1[1].num_batches_tracked) == 4 * 3  # once per stage evaluation


def test_every_gradient_method_under_bf16_autocast():
    """Training with bf16 autocast (the default where it pays) works with every method: the
    adjoints' backward solves run under the forward's autocast setting (before the fix they
    failed with a bf16-input/fp32-weight error).  Gradients stay close to backprop's at bf16
    precision (cosine 0.99976, 2.2% here)."""
    model, x, y = rknet_batch(n=16, channels=16)
    model.train()
    grads = {}
    for g in GRADIENT_METHODS:
        twin = copy.deepcopy(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = rknet_loss(twin, x, y, g, 4)
        grads[g] = flat_grads(twin, loss)
        assert torch.isfinite(grads[g]).all(), g
    ref = grads["backprop"]
    torch.testing.assert_close(grads["checkpoint"], ref)
    for g in ("adjoint", "discrete_adjoint"):
        cos = F.cosine_similarity(grads[g], ref, dim=0).item()
        rel = ((grads[g] - ref).norm() / ref.norm()).item()
        assert cos >= 0.999 and rel <= 0.05, (g, cos, rel)


def test_checkpoint_train_mode_matches_backprop():
    """Recomputation in train mode (batch statistics) reproduces the forward exactly."""
    model, x, y = rknet_batch(n=8, channels=8)
    model.train()
    twin = copy.deepcopy(model)
    g_b = flat_grads(model, rknet_loss(model, x, y, "backprop", 3))
    g_c = flat_grads(twin, rknet_loss(twin, x, y, "checkpoint", 3))
    torch.testing.assert_close(g_c, g_b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("gradient", GRADIENT_METHODS)
def test_nfe_counts_fixed(name, gradient):
    f = ScalarRate(0.3)
    y0 = torch.ones(4, dtype=torch.float64, requires_grad=True)
    stats = BackwardStats()
    solve_with_gradient(f, y0, 0.0, 1.0, name, gradient=gradient, steps=5, stats=stats).sum().backward()
    stages = get_method(name).stages
    assert stats.nfe_forward == stages * 5 and stats.steps_forward == 5
    if gradient == "backprop":
        assert stats.nfe_backward == stats.steps_backward == 0
    else:  # the discrete adjoint: reconstruction, its residual, refinements, the recomputed step
        per_stage = 3 + RECONSTRUCTION_REFINEMENTS if gradient == "discrete_adjoint" else 1
        assert stats.nfe_backward == per_stage * stages * 5
        assert stats.steps_backward == stats.accepted_backward == 5 and stats.rejected_backward == 0


def test_no_grad_is_a_plain_solve():
    f = ScalarRate(0.3)
    with torch.no_grad():
        outs = [solve_with_gradient(f, torch.ones(3, dtype=torch.float64), 0.0, 1.0, "rk4", gradient=g, steps=4)
                for g in GRADIENT_METHODS]
    for out in outs:
        assert not out.requires_grad
        torch.testing.assert_close(out, outs[0])


# -- adaptive ----------------------------------------------------------------------------
def adaptive_grads(gradient: str, rtol: float, atol: float, seminorm: bool = True, method: str = "dopri5"
                   ) -> tuple[torch.Tensor, BackwardStats]:
    torch.manual_seed(1)
    f = TinyMLP().double()
    y0 = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    stats = BackwardStats()
    y1 = solve_with_gradient(f, y0, 0.0, 2.0, method, gradient=gradient, adaptive=True, rtol=rtol, atol=atol,
                             seminorm=seminorm, stats=stats)
    grads = torch.autograd.grad((y1 ** 2).sum(), [y0, *f.parameters()])
    return torch.cat([g.reshape(-1) for g in grads]), stats


def test_adaptive_adjoint_seminorm():
    g_ref, _ = adaptive_grads("adjoint", 1e-10, 1e-12)
    g_semi, s_semi = adaptive_grads("adjoint", 1e-5, 1e-7, seminorm=True)
    g_full, s_full = adaptive_grads("adjoint", 1e-5, 1e-7, seminorm=False)
    assert s_semi.steps_backward < s_full.steps_backward, (s_semi, s_full)  # 2 vs 6 here
    # the backward solve is the plain solvers' loop: f at t1 once, then 6 per attempted step (FSAL, first_step given)
    assert s_semi.nfe_backward == 1 + (get_method("dopri5").stages - 1) * s_semi.steps_backward
    for g in (g_semi, g_full):
        assert ((g - g_ref).norm() / g_ref.norm()).item() < 1e-3
    # backprop through the tight solve is the same gradient to discretisation error
    g_bp, _ = adaptive_grads("backprop", 1e-10, 1e-12)
    assert ((g_bp - g_ref).norm() / g_ref.norm()).item() < 1e-6


def test_adaptive_checkpoint_equals_adaptive_backprop():
    g_bp, s_bp = adaptive_grads("backprop", 1e-4, 1e-6, method="bosh3")
    g_ck, s_ck = adaptive_grads("checkpoint", 1e-4, 1e-6, method="bosh3")
    torch.testing.assert_close(g_ck, g_bp, rtol=1e-10, atol=1e-12)
    assert s_ck.nfe_forward == s_bp.nfe_forward
    assert s_ck.steps_backward == s_ck.accepted_backward == s_bp.steps_forward - s_bp.rejected_forward  # recomputed


def test_adaptive_discrete_adjoint_replays_the_accepted_steps():
    g_bp, s_bp = adaptive_grads("backprop", 1e-4, 1e-6, method="bosh3")
    g_da, s_da = adaptive_grads("discrete_adjoint", 1e-4, 1e-6, method="bosh3")
    assert float((g_da - g_bp).norm() / g_bp.norm()) < 1e-5  # 8.5e-7: reconstruction error only
    assert s_da.steps_backward == s_da.accepted_backward == s_bp.steps_forward - s_bp.rejected_forward
    assert s_da.rejected_backward == 0


# -- failures ----------------------------------------------------------------------------
@pytest.mark.parametrize("gradient", ["adjoint", "discrete_adjoint"])
def test_adjoint_needs_parameters(gradient):
    y0 = torch.ones(3, requires_grad=True)
    with pytest.raises(SolverError, match=f"gradient='{gradient}' needs f to be an nn.Module with at least one "
                                          "parameter that requires grad"):
        solve_with_gradient(lambda t, y: -y, y0, 0.0, 1.0, "rk4", gradient=gradient, steps=2)
    frozen = ScalarRate(0.1, torch.float32).requires_grad_(False)
    with pytest.raises(SolverError, match="parameter that requires grad"):
        solve_with_gradient(frozen, y0, 0.0, 1.0, "rk4", gradient=gradient, steps=2)
    # backprop is fine with a parameter-free field
    solve_with_gradient(lambda t, y: -y, y0, 0.0, 1.0, "rk4", gradient="backprop", steps=2).sum().backward()
    assert y0.grad is not None


@pytest.mark.parametrize("kwargs, match", [
    ({"gradient": "magic", "steps": 2}, "gradient must be one of"),
    ({"gradient": "adjoint"}, "steps is required"),
    ({"gradient": "adjoint", "adaptive": True}, "embedded pair"),
    ({"gradient": "adjoint", "steps": 0}, "steps must be a positive integer"),
    ({"gradient": "adjoint", "adaptive": True, "max_steps": 0, "method": "dopri5"}, "max_steps"),
])
def test_bad_arguments(kwargs, match):
    kwargs = {"method": "rk4", **kwargs}
    method = kwargs.pop("method")
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(SolverError, match=match):
        solve_with_gradient(ScalarRate(0.1), y0, 0.0, 1.0, method, **kwargs)


def test_adjoint_backward_non_finite_raises():
    """Stiff decay: the forward Euler solve is stable (|1 - 1.9| < 1) but reconstructing h
    backwards multiplies it by 2.9 per step and overflows; the adjoint says so, no silent NaN."""
    f = ScalarRate(-1900.0)
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    y1 = solve_with_gradient(f, y0, 0.0, 1.0, "euler", gradient="adjoint", steps=1000)
    assert torch.isfinite(y1).all()
    with pytest.raises(NonFiniteState, match="adjoint backward solve became NaN or infinite"):
        y1.sum().backward()
    # the discrete adjoint reconstructs h with the same backward steps: it overflows too, and says so
    y1 = solve_with_gradient(ScalarRate(-1900.0), y0, 0.0, 1.0, "euler", gradient="discrete_adjoint", steps=1000)
    with pytest.raises(NonFiniteState, match="discrete adjoint became NaN or infinite at t=.*reconstruction residual"):
        y1.sum().backward()


@pytest.mark.parametrize("gradient", ["adjoint", "discrete_adjoint"])
def test_adjoint_non_finite_incoming_gradient_raises(gradient):
    f = ScalarRate(0.1)
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    y1 = solve_with_gradient(f, y0, 0.0, 1.0, "rk4", gradient=gradient, steps=2)
    with pytest.raises(NonFiniteState, match="incoming gradient"):
        (y1 * torch.tensor([1.0, math.nan], dtype=torch.float64)).sum().backward()


def test_adjoint_backward_max_steps():
    """y0 = 0 stays 0 (a few growing steps forward), but the adjoint a' = -theta a is a fast
    exponential backwards: the backward solve hits max_steps and says which solve did."""
    f = ScalarRate(40.0)
    y0 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    stats = BackwardStats()
    y1 = solve_with_gradient(f, y0, 0.0, 1.0, "dopri5", gradient="adjoint", adaptive=True, rtol=1e-8, atol=1e-8,
                             max_steps=20, stats=stats)
    assert stats.steps_forward < 20
    with pytest.raises(MaxStepsExceeded, match="adjoint backward solve"):
        y1.sum().backward()


# -- the comparison table ----------------------------------------------------------------
def test_gradient_comparison_table():
    model, x, y = rknet_batch(n=4, channels=8)
    model.train()
    seen = []
    df = gradient_comparison(model, x, y, "rk4", [1, 2], GRADIENT_METHODS,
                             progress=lambda frac, msg: seen.append((frac, msg)))
    assert model.training  # mode restored
    assert len(df) == 2 * len(GRADIENT_METHODS) and set(df["method"]) == set(GRADIENT_METHODS)
    assert seen[-1][0] == pytest.approx(1.0) and len(seen) == 2 * len(GRADIENT_METHODS)
    bp = df[df.method == "backprop"]
    assert (bp.grad_rel_error == 0).all() and (bp.nfe_backward == 0).all()
    adj = df[df.method == "adjoint"].set_index("steps")
    assert (adj.grad_cosine > 0.99).all()
    assert list(adj.nfe_forward) == [4, 8] and list(adj.nfe_backward) == [4, 8]
    assert (df.saved_bytes > 0).all()
    assert all(p.grad is None for p in model.parameters())  # the table does not touch .grad
    from odenet.app.plots import gradient_costs

    fig = gradient_costs(df)  # the page's four panels: ticks at the measured step counts only
    assert [list(ax.tickvals) for ax in (fig.layout.xaxis, fig.layout.xaxis4)] == [[1, 2], [1, 2]]
    assert {t.name for t in fig.data if t.showlegend is not False} == set(GRADIENT_METHODS)


def test_rknet_trains_with_each_gradient_method_and_config_round_trips():
    from odenet import ModelConfig, RKNet, TrainConfig

    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    grads = {}
    for method in ("backprop", "adjoint", "checkpoint"):
        torch.manual_seed(1)
        model = RKNet(ModelConfig(integrator="rk4", steps=64 if method == "adjoint" else 4, gradient=method)).eval()
        if method == "adjoint":
            model.train()  # last_stats is kept for the Trainer, i.e. in training mode
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            assert model.last_stats.nfe == 4 * 64
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
            continue
        loss = F.cross_entropy(model(x), y)
        grads[method] = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(grads["backprop"], grads["checkpoint"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    cfg = TrainConfig.from_dict({"gradient": "adjoint", "steps": 4})
    assert cfg.model.gradient == "adjoint" and TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="gradient must be one of backprop, adjoint, discrete_adjoint, checkpoint"):
        ModelConfig(gradient="reverse")
