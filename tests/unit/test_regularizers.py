"""Keep-it-an-ODE options: regularisers, STEER, step adaptation (odenet.model.regularizers + Trainer)."""

import pandas as pd
import pytest
import torch

import odenet.train.trainer as training
from odenet import TrainConfig, load_model
from odenet.cli import build_parser
from odenet.data.mnist import load_mnist
from odenet.model.regularizers import (
    RecordingField,
    jacobian_frobenius,
    kinetic_energy,
    solver_accuracies,
    steer_solver,
)
from odenet.model.rknet import RKNet
from odenet.ode.solvers import SolverSpec
from odenet.train.config import ConfigError
from odenet.train.trainer import Trainer

A = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.1, 0.3], [0.0, -0.4, 1.2]])


def linear_field(a: torch.Tensor):
    return lambda t, h: h @ a.T


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread avoids OpenMP stalls when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    train, test = load_mnist()
    return train.subset(1200), test.subset(100)


def tiny_cfg(**kw):
    base = dict(train_size=256, epochs=1, batch_size=32, log_every=2, device="cpu", channels=8, eval_size=100)
    return TrainConfig.from_preset("default", **{**base, **kw})


def test_kinetic_energy_closed_form_and_gradient():
    a = A.clone().requires_grad_(True)
    h0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    rec = RecordingField(linear_field(a))
    SolverSpec(integrator="euler", steps=1).build(rec).solve(h0)  # one evaluation, at h0
    ke = kinetic_energy(rec.outputs)
    exact = ((h0 @ A.T) ** 2).sum(1).mean()  # mean over the batch of ||A h||^2
    assert ke.item() == pytest.approx(exact.item(), rel=1e-6)
    (g,) = torch.autograd.grad(ke, a)
    assert torch.allclose(g, 2 * A @ (h0.T @ h0) / 5, rtol=1e-5)  # d/dA mean ||A h||^2 = 2 A H^T H / N
    # several steps and stages: the mean over every evaluation of the recorded states
    rec = RecordingField(linear_field(A))
    sol = SolverSpec(integrator="rk4", steps=3).build(rec).solve(h0)
    assert len(rec.outputs) == sol.stats.nfe == 12
    direct = torch.stack([((h @ A.T) ** 2).sum(1).mean() for h in rec.inputs]).mean()
    assert kinetic_energy(rec.outputs).item() == pytest.approx(direct.item(), rel=1e-6)


def test_hutchinson_jacobian_matches_frobenius_norm_and_its_gradient():
    exact = float((A ** 2).sum())  # every sample's Jacobian is A
    a = A.clone().requires_grad_(True)
    h = torch.randn(20000, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    est = jacobian_frobenius([h], [h @ a.T], generator=torch.Generator().manual_seed(2))
    assert est.item() == pytest.approx(exact, rel=0.03)  # 20,000 probes: ~1% standard error
    (g,) = torch.autograd.grad(est, a)  # d/dA ||A||_F^2 = 2A
    assert float((g - 2 * A).norm() / (2 * A).norm()) < 0.05
    with pytest.raises(ValueError, match="matching"):
        jacobian_frobenius([h], [])


def test_rknet_forward_regularized_matches_forward_and_direct_terms():
    torch.manual_seed(0)
    model = RKNet(channels=8).eval()
    x = torch.randn(6, 1, 28, 28)
    logits, terms = model.forward_regularized(x, kinetic=True, jacobian=True)
    assert model.last_stats.nfe == 4  # no extra evaluations: rk4 x1
    assert torch.allclose(logits, model(x), atol=1e-5)
    rec = RecordingField(model.gradient)
    model.config.solver.build(rec).solve(model.features(x))
    direct = torch.stack([(o ** 2).flatten(1).sum(1).mean() for o in rec.outputs]).mean()
    assert terms["kinetic"].item() == pytest.approx(direct.item(), rel=1e-5)
    assert terms["jacobian"].item() > 0
    model.train()
    _, terms = model.forward_regularized(x, kinetic=True, jacobian=True)
    (terms["kinetic"] + terms["jacobian"]).backward()
    assert float(model.gradient.block1[0].weight.grad.abs().sum()) > 0
    with torch.no_grad():
        _, terms = model.forward_regularized(x, kinetic=True, jacobian=True)
    assert set(terms) == {"kinetic"}  # no vjp without autograd


def test_steer_samples_within_band():
    spec = SolverSpec(integrator="rk4", steps=2, t1=1.0)
    gen = torch.Generator().manual_seed(0)
    ts = [steer_solver(spec, 0.25, gen).t1 for _ in range(2000)]
    assert min(ts) >= 0.75 and max(ts) <= 1.25
    assert min(ts) < 0.76 and max(ts) > 1.24 and abs(sum(ts) / len(ts) - 1.0) < 0.02
    assert steer_solver(spec, 0.0, gen) is spec


def test_trainer_steer_trains_in_band_evaluates_at_t1(tiny, monkeypatch):
    seen = []
    orig = RKNet.forward

    def spy(self, x, solver=None):
        seen.append((self.training, (solver or self.config.solver).t1))
        return orig(self, x, solver)

    monkeypatch.setattr(RKNet, "forward", spy)
    res = Trainer(tiny_cfg(steer=0.3), data=tiny).run()
    assert res.status == "finished"
    train_t1 = [t for tr, t in seen if tr]
    eval_t1 = [t for tr, t in seen if not tr]
    assert len(train_t1) == 8 and all(0.7 <= t <= 1.3 for t in train_t1) and len(set(train_t1)) == 8
    assert eval_t1 and set(eval_t1) == {1.0}


def test_regularized_training_reports_terms(tiny):
    res = Trainer(tiny_cfg(kinetic=1e-4, jacobian=1e-4, train_size=128), data=tiny).run()
    batch = [e for e in res.history if e.kind == "batch"]
    assert res.status == "finished" and all(e.kinetic > 0 and e.jacobian > 0 for e in batch)
    assert all(e.nfe == 4 for e in batch)


def test_step_adaptation_doubles_steps_and_records_it(tiny, tmp_path):
    cfg = tiny_cfg(adapt_every=2, adapt_threshold=-1.0, adapt_max_steps=4)  # a gap >= 0 always exceeds -1
    res = Trainer(cfg, data=tiny, run_dir=tmp_path / "r").run()
    solver = [e for e in res.history if e.kind == "solver"]
    assert [(e.step, e.solver_steps) for e in solver] == [(2, 2), (4, 4)]  # then capped at 4
    assert "steps 1 -> 2" in solver[0].message
    assert [e.nfe for e in res.history if e.kind == "batch"] == [4, 8, 16, 16]  # window means: batches 1-2, ...
    assert res.model.config.steps == 4 and load_model(tmp_path / "r" / "last.pt").config.steps == 4
    df = pd.read_json(tmp_path / "r" / "metrics.jsonl", lines=True)
    assert df[df["kind"] == "solver"]["solver_steps"].tolist() == [2, 4]


def test_step_adaptation_threshold_decides(tiny, monkeypatch):
    calls = []

    def fake(model, x, y, solvers):
        calls.append((len(x), [s.steps for s in solvers]))
        return [0.90, 0.88] if len(calls) == 1 else [0.90, 0.80]  # gap 2 points, then 10 points

    monkeypatch.setattr(training, "solver_accuracies", fake)
    res = Trainer(tiny_cfg(adapt_every=4, adapt_threshold=0.05), data=tiny).run()
    assert calls == [(240, [1, 2]), (240, [1, 2])]  # held out: the last 1200 // 5 training images
    assert [e.solver_steps for e in res.history if e.kind == "solver"] == [2]
    assert res.model.config.steps == 2


def test_solver_accuracies_on_held_out_batch():
    torch.manual_seed(0)
    model = RKNet(channels=8).train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    accs = solver_accuracies(model, x, y, [SolverSpec(steps=1), SolverSpec(steps=2)])
    assert model.training and len(accs) == 2 and all(0 <= a <= 1 for a in accs)
    model.eval()
    with torch.no_grad():
        assert accs[0] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))


@pytest.mark.parametrize("kw, msg", [
    (dict(kinetic=-0.1), "kinetic must be >= 0"),
    (dict(jacobian=0.1, gradient="adjoint"), "jacobian needs gradient='backprop'"),
    (dict(steer=1.0), r"steer must be in \[0, \|t1 - t0\|\) = \[0, 1\)"),
    (dict(adapt_every=-1), "adapt_every must be an integer >= 0"),
    (dict(adapt_every=5, integrator="dopri5", adaptive=True), "adapt_every needs a fixed-step solver"),
    (dict(adapt_threshold=2.0), r"adapt_threshold must be an accuracy difference in \[-1, 1\]"),
    (dict(adapt_max_steps=0), r"adapt_max_steps must be an integer in \[1, 1024\]"),
    (dict(adapt_every=2, steps=8, adapt_max_steps=4), r"adapt_max_steps \(4\) must be at least steps \(8\)"),
])
def test_config_validation_messages(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig.from_dict(kw)


def test_cli_flags_for_the_options():
    args = build_parser().parse_args(["train", "--kinetic", "0.01", "--jacobian", "0.02", "--steer", "0.5",
                                      "--adapt-every", "50", "--adapt-threshold", "0.01", "--adapt-max-steps", "8"])
    assert (args.kinetic, args.jacobian, args.steer) == (0.01, 0.02, 0.5)
    assert (args.adapt_every, args.adapt_threshold, args.adapt_max_steps) == (50, 0.01, 8)


def test_step_log_counts_equal_solver_stats_adaptive_rknet():
    torch.manual_seed(0)
    model = RKNet(channels=8).eval()
    x = torch.randn(4, 1, 28, 28)
    spec = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-6, atol=1e-8)
    traj = model.trajectory(x, spec)
    log, st = traj.log, traj.stats
    assert len(log) == st.steps > 1
    assert sum(r.accepted for r in log) == st.accepted == len(traj.ts) - 1
    assert sum(not r.accepted for r in log) == st.rejected
    assert sum(r.nfe for r in log) == st.nfe
    assert all(r.error_ratio is not None and (r.error_ratio <= 1) == r.accepted for r in log)
    accepted_dt = sum(r.dt for r in log if r.accepted)
    assert accepted_dt == pytest.approx(1.0)


def test_per_image_cost_and_step_timeline():
    from odenet.app import plots
    from odenet.inspect.analysis import per_image_cost

    torch.manual_seed(0)
    model = RKNet(channels=8).eval()
    x = torch.randn(5, 1, 28, 28)
    spec = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-5, atol=1e-7)
    df = per_image_cost(model, x, spec)
    assert len(df) == 5 and (df["in batch"] == model.solve(model.features(x), spec).stats.nfe).all()
    with torch.no_grad():
        assert df["alone"][1] == model.solve(model.features(x[1:2]), spec).stats.nfe == 86
    # the batch's RMS error norm averages over images: one image alone can need more than the batch
    assert df["in batch"][0] == 80 and df["alone"].max() > 80 > df["alone"].min()
    traj = model.trajectory(x, spec)
    fig = plots.step_size_timeline(traj.log, spec.method.tableau.c)
    ticks = next(t for t in fig.data if t.name.startswith("stage"))
    assert len(ticks.x) == 7 * len(traj.log)  # dopri5: 7 stage points per attempted step


def test_log_axis_ticks_are_readable():
    """Short log ranges get 1-2-5 ticks labelled in full, long ones powers of ten; the adaptive
    timeline and the convergence plot use them (plotly's own minor labels crowd as "2 3 4 .. 9")."""
    from odenet.app import plots
    from odenet.ode.problems import PROBLEMS, convergence
    from odenet.ode.solvers import SolverSpec

    assert plots.log_ticks([0.11, 0.5, 1.17]) == {"tickvals": [0.1, 0.2, 0.5, 1.0],
                                                  "ticktext": ["0.1", "0.2", "0.5", "1"]}
    assert plots.log_ticks([1e-4, 0.3])["ticktext"] == ["0.0001", "0.001", "0.01", "0.1"]
    assert plots.log_ticks([0.011, 0.9])["ticktext"] == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]
    assert plots.log_ticks([0.3, 0.45])["ticktext"] == ["0.3", "0.4", "0.5"]  # too narrow for 1-2-5: digits
    assert plots.log_ticks([1e-12, 1.0])["ticktext"] == ["1e-12", "1e-10", "1e-08", "1e-06", "0.0001", "0.01", "1"]
    assert plots.log_ticks([-0.2, -2.0, float("nan")])["ticktext"] == ["0.2", "0.5", "1", "2"]  # |dt|, finite only
    assert plots.log_ticks([]) == {} and plots.log_ticks([0.0, float("inf")]) == {}
    problem = PROBLEMS["decay"]
    sol = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-4, atol=1e-6, t0=problem.t0,
                     t1=problem.t1).build(problem.f).solve(problem.y0_tensor())
    fig = plots.step_size_timeline(sol.log, SolverSpec(integrator="dopri5").method.tableau.c)
    assert list(fig.layout.yaxis.ticktext) == ["0.1", "0.2", "0.5", "1"]  # decay at rtol 1e-4: dt 0.11-1.17
    conv = plots.convergence_plot([convergence(problem, "rk4"), convergence(problem, "euler")])
    runs = sorted(set(convergence(problem, "rk4").steps) | set(convergence(problem, "euler").steps))
    assert list(conv.layout.xaxis.tickvals) == runs and list(conv.layout.xaxis.ticktext) == [str(n) for n in runs]
    grid = pd.DataFrame([{"integrator": m, "steps": n, "accuracy": 0.99 - 0.01 * (n == 1)}
                         for m in ("euler", "rk4") for n in (1, 2, 4, 8)])
    fig = plots.accuracy_vs_step_size(grid, 1.0, 0.99, {"euler": 0.5, "rk4": 1.0}, trained=("rk4", 1))
    assert list(fig.layout.xaxis.ticktext) == ["0.125", "0.25", "0.5", "1"]  # the step sizes that were run
