import pytest
import torch

from benchmarks import notebook_reference as nb
from odenet import MaxStepsExceeded, RKNet, SolverSpec
from odenet.models import GradientNet


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
