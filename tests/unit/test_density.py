"""Density flows: a continuous normalizing flow in the plane (change of variables, divergence, sampling,
gradient methods, baselines, the job and the CLI)."""

import json
import math
import subprocess
import sys
import threading

import pytest
import torch

from odenet.data.toy2d import DataError, load_csv, make_dataset, train_test_points
from odenet.ode.integrators import custom_method
from odenet.ode.solvers import SolverError, SolverSpec
from odenet.plane.density import (
    CNFDynamics,
    DensityConfig,
    DensityFlow,
    DensityRun,
    Velocity,
    evaluate_nll,
    gaussian_nll,
    kde_nll,
    train_density,
)
from odenet.plane.density_views import density_frames, probability_mass, sample_flow
from odenet.plane.job import PlaneJob
from odenet.plane.views import REFERENCE
from odenet.utils import torch_threads


def test_ringblobs_is_a_ring_and_three_blobs():
    p = make_dataset("ringblobs", n=800, noise=0.0, seed=0)
    r = p.x.norm(dim=1)
    assert torch.allclose(r[p.y == 0], torch.ones(200), atol=1e-5)  # the ring
    for k, centre in ((1, (0.0, 0.0)), (2, (1.6, 1.2)), (3, (-1.6, 1.2))):
        blob = p.x[p.y == k]
        assert torch.allclose(blob.mean(0), torch.tensor(centre), atol=0.04)
        assert 0.12 < float(blob.std(0).mean()) < 0.18


def test_density_csv_needs_no_labels_and_says_what_is_wrong():
    pts = load_csv(b"x,y\n" + b"0.5,1\n" * 9 + b"2,3\n", labelled=False)
    assert pts.x.shape == (10, 2) and int(pts.y.abs().sum()) == 0 and pts.classes == 1
    same = load_csv(b"x,y,label\n" + b"0.5,1,7\n" * 10, labelled=False)  # a label column is ignored
    assert same.x.shape == (10, 2) and int(same.y.sum()) == 0
    for text, words in [(b"x,y\n1,2\n", "1 data rows; at least 10 are needed"),
                        (b"x,y\n1,a\n" + b"1,2\n" * 10, "line 2: '1,a' is not two numbers"),
                        (b"x,y\n1,nan\n" + b"1,2\n" * 10, "line 2: NaN or infinite"),
                        (b"a,b\n1,2\n", "header x,y or x,y,label")]:
        with pytest.raises(DataError) as err:
            load_csv(text, labelled=False)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="header x,y,label"):
        load_csv(b"x,y\n1,2\n3,4\n")  # the classifier still needs labels
    train, test = train_test_points(data=b"x,y\n" + b"1,2\n3,5\n" * 10, test=b"x,y\n0,0\n", labelled=False)
    assert (len(train), len(test)) == (20, 1)


def _jacobians(velocity: Velocity, t: float, z: torch.Tensor) -> torch.Tensor:
    """df/dz per point, (n, 2, 2), one point at a time with autograd.functional (the slow, obvious way)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda p: velocity(t, p[None])[0], p) for p in z])


def test_exact_divergence_is_the_jacobian_trace_and_hutchinson_agrees_on_average():
    torch.manual_seed(0)
    vel = Velocity(16, 2)
    z = torch.randn(6, 2)
    s = torch.cat([z, torch.zeros(6, 3)], 1)
    jac = _jacobians(vel, 0.3, z)  # (6, 2, 2)
    out = CNFDynamics(vel, regularise=True)(0.3, s)  # (6, 5): [f, -div, |f|^2, |J|_F^2]
    assert torch.allclose(out[:, :2], vel(0.3, z), atol=1e-6)
    assert torch.allclose(-out[:, 2], jac.diagonal(dim1=1, dim2=2).sum(1), atol=1e-5)
    assert torch.allclose(out[:, 4], jac.pow(2).sum((1, 2)), atol=1e-5)
    # Hutchinson: eps^T J eps with a Rademacher eps is unbiased; it differs probe to probe but agrees on average
    g = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(4000):
        eps = torch.randint(0, 2, (6, 2), generator=g).float() * 2 - 1
        draws.append(CNFDynamics(vel, eps, regularise=True)(0.3, s)[:, [2, 4]])
    d = torch.stack(draws)  # (4000, 6, 2)
    d = d.detach()
    assert float(d[..., 0].std(0).min()) > 1e-3  # a real estimator: it varies
    err = (d.mean(0) - out[:, [2, 4]]).abs()
    sem = d.std(0) / math.sqrt(len(draws))
    assert bool((err <= 4 * sem + 1e-6).all()), (err, sem)


def test_the_density_integrates_to_one(rings, rings_run):
    """The change of variables, numerically: the model's density over a square covering the data is 1."""
    train = rings[0]
    bounds = train.bounds(0.5)
    model, solver = rings_run.model, rings_run.config.solver
    assert probability_mass(model, solver, bounds) == pytest.approx(1.0, abs=0.02)
    assert probability_mass(model, REFERENCE, bounds, res=100) == pytest.approx(1.0, abs=0.02)
    frames = density_frames(model, solver, bounds, frames=3, res=100)  # t0 (the Gaussian), halfway, t1
    assert frames.times == [0.0, 0.5, 1.0] and frames.nfe == [0, 8, 16]
    for k in range(3):
        assert frames.mass(k) == pytest.approx(1.0, abs=0.02)
    assert float(frames.log_p[0].max()) < float(frames.log_p[-1].max())  # the flow concentrates it
    assert bool(torch.isfinite(frames.log_p).all())


def test_training_beats_a_gaussian_and_stays_an_ode(rings, rings_run):
    train, test = rings
    run = rings_run
    assert run.test_nll < gaussian_nll(train.x, test.x) - 0.5
    assert run.reference_nll == pytest.approx(run.test_nll, abs=0.02)  # regularised: still an ODE
    assert run.history[-1].iteration == 150 and run.history[-1].train_nll < run.history[0].train_nll
    assert run.nfe == 16 and run.history[-1].kinetic > 0 and run.history[-1].jacobian > 0


def test_samples_match_the_data(rings, rings_run):
    train = rings[0]
    x = rings_run.model.sample(4000, rings_run.config.solver, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2)
    assert torch.allclose(x.mean(0), train.x.mean(0), atol=0.12)
    cov_s, cov_d = torch.cov(x.T), torch.cov(train.x.T)
    assert float((cov_s - cov_d).abs().max()) < 0.15 * float(cov_d.diagonal().max())
    fl = sample_flow(rings_run.model, rings_run.config.solver, 50, seed=0)
    assert fl.states.shape == (5, 50, 2) and fl.ts == [0.0, 0.25, 0.5, 0.75, 1.0] and fl.nfe == 16
    z0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fl.states[0], rings_run.model.to_data(z0))  # starts at the Gaussian's draws


def test_nll_is_in_the_data_own_coordinates(rings):
    """Standardising inside is undone: the same points 10x larger have a density 100x smaller (NLL + 2 ln 10)."""
    train, test = rings
    cfg = DensityConfig(iterations=5)
    a = train_density(cfg, train, test, reference=None)
    big = type(train)(train.x * 10, train.y, train.classes, train.name)
    b = train_density(cfg, big, type(test)(test.x * 10, test.y, test.classes, test.name), reference=None)
    assert b.test_nll - a.test_nll == pytest.approx(2 * math.log(10), abs=1e-3)
    assert b.train_nll - a.train_nll == pytest.approx(2 * math.log(10), abs=1e-3)


def _grads(model: DensityFlow, x: torch.Tensor, spec: SolverSpec, gradient: str) -> torch.Tensor:
    model.zero_grad()
    ll = model.log_prob(x, spec, gradient=gradient, regularise=True)
    (-ll.log_p.mean() + ll.kinetic + ll.jacobian).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@torch_threads(1)
def test_every_gradient_method_differentiates_the_likelihood_and_the_regularisers(rings):
    torch.manual_seed(0)
    model = DensityFlow.for_points(rings[0].x, width=16)
    x, spec = rings[0].x[:64], SolverSpec(integrator="rk4", steps=6)
    ref = _grads(model, x, spec, "backprop")
    assert float(ref.norm()) > 0
    for method, tol in (("checkpoint", 1e-5), ("discrete_adjoint", 1e-3), ("adjoint", 2e-2)):
        g = _grads(model, x, spec, method)
        assert float((g - ref).norm() / ref.norm()) < tol, method


def test_hutchinson_training_adaptive_and_custom_solvers_and_stop(rings):
    train, test = rings
    run = train_density(DensityConfig(iterations=3, divergence="hutchinson", gradient="adjoint"), train, test)
    assert math.isfinite(run.test_nll) and len(run.history) == 1
    heun = SolverSpec.for_method(custom_method("heun2", [[], [1.0]], [0.5, 0.5]), steps=3)
    assert train_density(DensityConfig(solver=heun, iterations=2), train, test, reference=None).nfe == 6
    adaptive = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-4, atol=1e-5)
    probed = train_density(DensityConfig(solver=adaptive, iterations=2), train, test, report_every=1, probe=REFERENCE)
    assert probed.nfe >= 7 and all(p.probe_nfe >= 7 and math.isfinite(p.probe_nll) for p in probed.history)
    stop = threading.Event()
    stop.set()
    run = train_density(DensityConfig(iterations=500), train, test, stop=stop)
    assert run.stopped and run.history[-1].iteration == 1


def test_a_blow_up_is_an_error_naming_the_iteration_never_nan(rings):
    train, test = rings
    with pytest.raises(SolverError, match=r"at iteration \d+;"):
        train_density(DensityConfig(iterations=50, lr=1e30, kinetic=0, jacobian=0), train, test)
    tight = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-9, atol=1e-9, max_steps=2)
    with pytest.raises(SolverError, match=r"^iteration 1: .*max_steps"):
        train_density(DensityConfig(solver=tight, iterations=5), train, test)
    broken = DensityFlow.for_points(train.x, width=8)
    with torch.no_grad():
        broken.velocity.net[0].weight.fill_(float("nan"))
    with pytest.raises(SolverError, match="the density at t=1 is NaN or infinite"):
        density_frames(broken, SolverSpec(integrator="rk4", steps=2), train.bounds(), frames=2, res=8)
    with pytest.raises(SolverError, match="NaN or infinite"):
        evaluate_nll(broken, test.x, SolverSpec(integrator="rk4", steps=2))
    with pytest.raises(DataError, match="no spread"):
        DensityFlow.for_points(torch.ones(20, 2))


def test_baselines_on_gaussian_points():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(3000, 2, generator=g), torch.randn(2000, 2, generator=g)
    gauss = gaussian_nll(train, test)
    assert gauss == pytest.approx(math.log(2 * math.pi) + 1, abs=0.05)  # the entropy of N(0, I)
    kde, h = kde_nll(train, test)
    assert 0.15 < h < 0.6 and 0 < kde - gauss < 0.15  # a KDE is close to, never better than, the true family


def test_plane_job_runs_a_density_training(rings):
    train, test = rings
    job = PlaneJob(DensityConfig(iterations=40), train, test, trainer=train_density)
    assert job.wait(60)
    view = job.snapshot()
    assert view.state == "finished" and isinstance(view.run, DensityRun)
    assert [p.iteration for p in view.history] == [20, 40]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odenet", "density", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_json_samples_and_one_line_errors(tmp_path):
    out = tmp_path / "samples.csv"
    r = _cli("--dataset", "ringblobs", "--n", "300", "--iterations", "20", "--integrator", "midpoint", "--steps", "3",
             "--seed", "2", "--json", "--samples", "200", "--out", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("test_nll", "train_nll", "seconds", "nfe", "gaussian_test_nll", "kde_test_nll", "reference_test_nll"):
        assert isinstance(d[key], (int, float)) and math.isfinite(d[key]), key
    assert d["nfe"] == 6 and d["integrator"] == "midpoint" and d["steps"] == 3 and d["iterations"] == 20
    samples = load_csv(out, labelled=False)
    assert len(samples) == 200 and float(samples.x.abs().max()) < 10
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,oops\n")
    for args, words in [(["--data", str(bad)], "bad.csv, line 3: '3,oops' is not two numbers"),
                        (["--samples", "10"], "--samples N (1 to 100,000) and --out FILE go together"),
                        (["--test", str(bad)], "--test needs --data")]:
        r = _cli(*args)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.strip() == f"error: {words}" or words in r.stderr and r.stderr.count("\n") == 1, r.stderr
