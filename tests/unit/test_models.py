import pytest
import torch

from benchmarks.training import notebook_reference as nb
from odenet import MaxStepsExceeded, RKNet, SolverSpec
from odenet.model.rknet import GradientNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return RKNet().eval()


def test_parameter_count_and_keys_match_notebook(model):
    ref = nb.RKNet(nb.FixedStepSolver, nb.RungeKutta4, 0.0, 1.0, 10)
    assert model.num_parameters() == 208_138
    assert list(model.state_dict()) == list(ref.state_dict())
    prefixes = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("gradient") else "")
                for k in model.state_dict()}
    assert prefixes == {"sampling", "gradient.block1", "gradient.block2", "output"}
    assert not any("optimizer" in k or "loss" in k for k in dir(model) if not k.startswith("_"))


@pytest.mark.parametrize("integ, steps, nb_method", [("rk4", 1, nb.RungeKutta4), ("euler", 3, nb.Euler)])
def test_notebook_weights_load_and_give_same_outputs(integ, steps, nb_method):
    torch.manual_seed(1)
    ref = nb.RKNet(nb.FixedStepSolver, nb_method, 0.0, 1.0, 10, steps=steps)
    x = torch.randn(5, 1, 28, 28)
    ref.train()
    ref(x)  # move BatchNorm running stats away from their init
    ref.eval()
    ours = RKNet(integrator=integ, steps=steps)
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_output_and_trajectory_shapes(model):
    x = torch.randn(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    assert model.features(x).shape == (4, 64, 6, 6)
    five = SolverSpec("rk4", steps=5)
    traj = model.trajectory(x, five)
    assert traj.states.shape == (6, 4, 64, 6, 6)
    assert traj.logits.shape == (6, 4, 10)
    assert traj.ts.tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert traj.stats.nfe == 20
    with torch.no_grad():
        final = model(x, solver=five)
        h0 = model.features(x)
    assert torch.allclose(traj.logits[-1], final, atol=1e-5)
    assert torch.allclose(traj.states[0], h0, atol=1e-6)


@pytest.mark.parametrize("spec, calls", [(SolverSpec("rk4", steps=8), 32 + 1), (SolverSpec("euler", steps=5), 5 + 1),
                                         (SolverSpec("dopri5", adaptive=True, rtol=1e-3, atol=1e-4), None)])
def test_trajectory_fields_reuse_the_steps_first_stages(model, spec, calls, monkeypatch):
    """f(t_i, h_i) at every state: equal to evaluating it afresh, at the cost of one evaluation
    (the last state) on top of a fixed-step solve instead of one per state (issue 31: the
    Trajectories page's field norms).  FSAL dopri5 starts its steps from reused slopes: it
    evaluates the states it did not start from, and stays exact."""
    x = torch.randn(3, 1, 28, 28)
    count = [0]
    real = model.gradient.prepared

    def counting(h):
        f = real(h)
        return lambda t, y: count.__setitem__(0, count[0] + 1) or f(t, y)

    monkeypatch.setattr(model.gradient, "prepared", counting)
    with torch.no_grad():
        traj = model.trajectory(x, spec, fields=True)
        fresh = torch.stack([model.gradient(float(t), h) for t, h in zip(traj.ts, traj.states)])
        plain = model.trajectory(x, spec)
    assert traj.fields.shape == traj.states.shape
    assert torch.allclose(traj.fields, fresh, atol=1e-5), float((traj.fields - fresh).abs().max())
    assert torch.equal(traj.states, plain.states) and plain.fields is None
    assert traj.stats.nfe == plain.stats.nfe  # the solve's own count, unchanged
    if calls is not None:
        assert count[0] - plain.stats.nfe == calls  # the solve with fields, then the plain solve
    else:
        assert traj.stats.nfe < count[0] - plain.stats.nfe < traj.stats.nfe + len(traj.ts)


def test_solver_is_passed_in_and_the_model_never_changes(model):
    x = torch.randn(2, 1, 28, 28)
    before = model.config
    with torch.no_grad():
        a = model(x)
        euler8 = model.config.solver.replace(integrator="euler", steps=8)
        b = model(x, solver=euler8)
        assert model.trajectory(x, euler8).stats.nfe == 8
        c = model(x, solver=SolverSpec("dopri5", adaptive=True, rtol=1e-3, atol=1e-3))
        again = model(x)
    assert model.last_stats.nfe == 0  # an eval-mode (shared) model is never written to by a call
    assert a.shape == b.shape == c.shape and not torch.equal(a, b)
    assert torch.equal(a, again)
    assert model.config is before and not hasattr(model, "set_solver")


def test_a_failing_call_leaves_nothing_behind(model):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a = model(x)
        with pytest.raises(MaxStepsExceeded):
            model(x, solver=SolverSpec("dopri5", adaptive=True, rtol=1e-12, atol=1e-12, max_steps=2))
        assert torch.equal(model(x), a)


def test_declared_provenance_attributes():
    m = RKNet()
    assert m.train_config is None and m.metrics == {} and m.source_path is None


def test_config_validation_messages():
    with pytest.raises(ValueError, match="unknown integrator 'nope'"):
        RKNet(integrator="nope")
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        RKNet(steps=0)
    with pytest.raises(ValueError, match="adaptive=True needs an embedded pair.*'rk4'"):
        RKNet(adaptive=True)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        RKNet(channels=0)


def test_channels_and_gradient_net_time_channel():
    m = RKNet(channels=16)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    g = GradientNet(4)
    x = torch.randn(2, 4, 6, 6)
    xt = g.concat_time(0.75, x)
    assert xt.shape == (2, 5, 6, 6) and torch.all(xt[:, 4] == 0.75) and torch.equal(xt[:, :4], x)


def test_gradients_flow_through_solver():
    m = RKNet(steps=2)
    loss = m(torch.randn(3, 1, 28, 28)).logsumexp(1).sum()
    loss.backward()
    assert m.gradient.block1[0].weight.grad is not None
    assert m.gradient.block1[0].weight.grad.abs().sum() > 0


def test_fused_time_channel_equals_concatenation():
    torch.manual_seed(3)
    g = GradientNet(8).eval()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    g = g.double()
    for t in (0.0, 0.37, -2.0):
        ref = g.block2(g.concat_time(t, g.block1(g.concat_time(t, x))))
        assert torch.allclose(g(t, x), ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda h: g(0.5, h), (x[:1].clone().requires_grad_(),))


def test_prepared_field_equals_the_module_and_keeps_gradients():
    """GradientNet.prepared (the per-solve split of the time channel, used by every solve) gives
    the module's values and the same parameter gradients, for both memory formats."""
    torch.manual_seed(0)
    net = GradientNet(8)
    for fmt in (torch.contiguous_format, torch.channels_last):
        net = net.to(memory_format=fmt)
        h = torch.randn(4, 8, 6, 6).to(memory_format=fmt)
        f = net.prepared(h)
        for t in (0.0, 0.37, 1.0):
            direct, prepped = net(t, h), f(t, h)
            assert torch.allclose(direct, prepped, atol=1e-6), float((direct - prepped).abs().max())
            g1 = torch.autograd.grad(net(t, h).square().sum(), list(net.parameters()))
            g2 = torch.autograd.grad(net.prepared(h)(t, h).square().sum(), list(net.parameters()))
            assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(g1, g2))
    assert not any(isinstance(v, torch.Tensor) for v in vars(net).values())  # nothing cached on the module


def _stem_pair(dtype=torch.float64, momentum=0.1):
    torch.manual_seed(4)
    a = RKNet(steps=1).to(dtype).train()
    a.sampling[1].momentum = momentum
    b = RKNet(steps=1).to(dtype).train()
    b.load_state_dict(a.state_dict())
    b.sampling[1].momentum = momentum
    return a, b


@pytest.mark.parametrize("momentum", [0.1, None])
def test_folded_first_batchnorm_equals_the_modules(momentum):
    """Training mode folds the first BatchNorm's batch statistics into the first convolution
    (from the input patches' moments): same output, same gradients (x included), same running
    statistics as running self.sampling, to float64 rounding."""
    a, b = _stem_pair(momentum=momentum)
    x1 = (torch.rand(16, 1, 28, 28, dtype=torch.float64) * 3 - 0.4).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    y = torch.randint(0, 10, (16,))
    for _ in range(2):  # the second batch checks the running-statistics update on top of the first
        ha, hb = a.sampling(x1), b.features(x2)
        assert ha.shape == hb.shape == (16, 64, 6, 6)
        assert torch.allclose(ha, hb, rtol=1e-10, atol=1e-12)
    loss_a = torch.nn.functional.cross_entropy(a.output(a.solve(a.sampling(x1)).y), y)
    loss_b = torch.nn.functional.cross_entropy(b(x2), y)
    loss_a.backward()
    loss_b.backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-9, atol=1e-14)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        if name == "sampling.0.bias":  # cancelled by BatchNorm: backprop gives rounding noise, the fold exact 0
            assert pa.grad.abs().max() < 1e-12 and torch.equal(pb.grad, torch.zeros_like(pb.grad))
            continue
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-9, atol=1e-14), name
    bn_a, bn_b = a.sampling[1], b.sampling[1]
    assert int(bn_a.num_batches_tracked) == int(bn_b.num_batches_tracked) == 3
    assert torch.allclose(bn_a.running_mean, bn_b.running_mean, rtol=1e-10, atol=1e-14)
    assert torch.allclose(bn_a.running_var, bn_b.running_var, rtol=1e-10, atol=1e-14)


def test_folded_first_batchnorm_in_float32_and_bf16_autocast():
    """In float32 the fold's gradients are closer to float64's than the module path's, and its
    statistics stay in float32 under bf16 autocast; eval mode uses the modules unchanged."""
    torch.manual_seed(5)
    ref = RKNet(steps=1).double().train()
    x = torch.rand(64, 1, 28, 28, dtype=torch.float64) * 3 - 0.4
    y = torch.randint(0, 10, (64,))
    torch.nn.functional.cross_entropy(ref(x), y).backward()  # ref.features folds too: exact in float64
    errors = {}
    for fold in (False, True):
        m = RKNet(steps=1)
        m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ref.state_dict().items()})
        m.sampling[1].num_batches_tracked.zero_()
        xf = x.float()
        logits = m(xf) if fold else m.output(m.solve(m.sampling(xf)).y)
        torch.nn.functional.cross_entropy(logits, y).backward()
        errors[fold] = max(float((p.grad.double() - q.grad).norm() / q.grad.norm())
                           for p, q in zip(m.parameters(), ref.parameters())
                           if q.grad.norm() > 1e-9)  # conv biases before a BatchNorm: rounding noise only
    assert errors[True] < 1e-4 and errors[True] < errors[False], errors  # measured: 8e-6 vs 1.1e-3
    m = RKNet(steps=1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = m.features(x.float())
    assert h.dtype == torch.bfloat16 and torch.isfinite(h).all()
    assert m.sampling[1].running_var.dtype == torch.float32
    with torch.no_grad():
        m.eval()
        assert torch.equal(m.features(x.float()), m.sampling(x.float()))


def test_fold_can_be_turned_off_for_benchmarks(monkeypatch):
    """ODENET_FOLD_BN=0 (read when a model is built) runs the notebook's modules in training too."""
    monkeypatch.setenv("ODENET_FOLD_BN", "0")
    off = RKNet(steps=1).train()
    monkeypatch.delenv("ODENET_FOLD_BN")
    on = RKNet(steps=1).train()
    on.load_state_dict(off.state_dict())
    assert (off.fold_first_batchnorm, on.fold_first_batchnorm) == (False, True)
    x = torch.randn(8, 1, 28, 28)
    ref = RKNet(steps=1).train()
    ref.load_state_dict(off.state_dict())
    assert torch.equal(off.features(x), ref.sampling(x))  # the very same computation
    assert not torch.equal(on.features(x), ref.sampling(x))  # the fold: equal only to rounding
