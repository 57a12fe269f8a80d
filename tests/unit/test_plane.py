"""Flows in the plane: datasets, CSV input, the (augmented) Neural-ODE classifier, its flow and the CLI."""

import json
import subprocess
import sys
import threading

import pytest
import torch

from odenet.data.toy2d import DATASETS, DataError, load_csv, make_dataset, split, to_csv, train_test_points
from odenet.ode.integrators import custom_method
from odenet.ode.solvers import SolverSpec
from odenet.plane.classifier import PlaneConfig, accuracy, train_plane
from odenet.plane.job import PlaneJob
from odenet.plane.views import (
    REFERENCE,
    decision_regions,
    field_arrows,
    flow,
    grid_flow,
    min_pairwise_distance,
    round_trip_error,
    solver_sweep,
)


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_seeded_balanced_and_order_one(name):
    a, b = make_dataset(name, n=301, seed=5), make_dataset(name, n=301, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, make_dataset(name, n=301, seed=6).x)
    assert a.x.shape == (301, 2) and a.x.dtype == torch.float32
    counts = torch.bincount(a.y)
    assert len(counts) == a.classes and counts.max() - counts.min() <= 1
    assert float(a.x.abs().max()) < 3.0


def test_circles_are_concentric_and_split_holds_out_a_fraction():
    c = make_dataset("circles", n=1000, noise=0.0, seed=0)
    r = c.x.norm(dim=1)
    assert torch.allclose(r[c.y == 0], torch.ones(500), atol=1e-5)  # outer ring
    assert float(r[c.y == 1].max()) < 0.5  # inner ring inside it
    tr, te = split(c, 0.3, seed=1)
    assert (len(tr), len(te)) == (700, 300)
    both = torch.cat([tr.x, te.x])
    assert len(torch.unique(both, dim=0)) == 1000  # a partition: nothing lost or repeated


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("a,b,c\n1,2,0\n", "header x,y,label"),
    ("x,y,label\n1,abc,0\n2,3,1\n", "line 2: '1,abc,0' is not three numbers"),
    ("x,y,label\n1,nan,0\n2,3,1\n", "line 2: NaN or infinite"),
    ("x,y,label\n1,2,0\n2,3,0\n", "every point has label 0"),
    ("x,y,label\n1,2,0\n2,3,11\n", "at most 10 classes"),
    ("x,y,label\n1,2,0\n2,3,1.5\n", "not a whole number"),
    ("x,y,label\n1,2\n", "expected 3 values"),
])
def test_bad_csv_gets_one_line_naming_the_problem(text, words):
    with pytest.raises(DataError, match=None) as err:
        load_csv(text.encode(), name="pts.csv")
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_csv_row_limit_and_round_trip(tmp_path):
    big = "x,y,label\n" + "0,0,0\n0,1,1\n" * 50_001
    with pytest.raises(DataError, match="100,002 rows; at most 100,000"):
        load_csv(big.encode())
    pts = make_dataset("blobs", n=60, seed=2)
    path = tmp_path / "blobs.csv"
    path.write_text(to_csv(pts))
    back = load_csv(path)
    assert back.classes == 3 and torch.equal(back.y, pts.y) and torch.allclose(back.x, pts.x, atol=1e-5)
    with pytest.raises(DataError, match="label 3 is not one of the training file's classes 0..1"):
        train_test_points(data=b"x,y,label\n0,0,0\n1,1,1\n", test=b"x,y,label\n0,0,3\n")


def test_moons_trains_to_97_percent(moons_run):
    assert moons_run.test_accuracy >= 0.97 and moons_run.train_accuracy >= 0.97
    assert moons_run.nfe == 16  # rk4 x4
    assert [p.iteration for p in moons_run.history][-1] == 150
    assert moons_run.history[-1].loss < moons_run.history[0].loss


def test_trajectories_never_meet_and_the_flow_inverts(moons, moons_run):
    """An ODE's flow is a homeomorphism: distinct points stay apart and t1 -> t0 undoes it."""
    x = moons[1].x[:120]
    fine = SolverSpec(integrator="rk4", steps=32)
    states = flow(moons_run.model, x, fine).states  # (33, 120, 2)
    d0 = float(torch.pdist(x).min())
    assert min_pairwise_distance(states) > 0.05 * d0 > 0
    assert round_trip_error(moons_run.model, x, fine) < 1e-4


def test_views_have_the_promised_shapes(moons, moons_run):
    train, test = moons
    m, s = moons_run.model, moons_run.config.solver
    reg = decision_regions(m, s, train.bounds(), res=30)
    assert reg.label.shape == (30, 30) and float(reg.confidence.min()) >= 0.5 - 1e-6
    g = grid_flow(m, s, train.bounds(), lines=5, points=7)
    assert g.states.shape == (5, 70, 2) and g.lines == 10 and g.ts[0] == 0.0 and g.ts[-1] == 1.0
    arr = field_arrows(m, 0.5, train.bounds(), res=6)
    assert arr.at.shape == (36, 2) and arr.v.shape == (36, 2) and float(arr.v.norm(dim=1).max()) > 0
    sweep = solver_sweep(m, test, trained_with=s)
    assert list(sweep.loc[sweep["trained with"], "solver"]) == ["rk4 x4"]
    ref = sweep.set_index("solver").loc[REFERENCE.label()]
    assert ref["accuracy"] >= 0.95 and ref["nfe"] > 16  # moons stays an ODE under an accurate solver


def test_augmented_circles_and_every_gradient_method():
    train, test = split(make_dataset("circles", n=400, noise=0.05, seed=0), seed=0)
    run = train_plane(PlaneConfig(augment=1, iterations=120), train, test)
    assert run.model.dim == 3 and run.test_accuracy >= 0.95
    assert accuracy(run.model, test, REFERENCE)[0] >= 0.95
    g = flow(run.model, test.x[:5], run.config.solver).states
    assert torch.equal(g[0, :, 2], torch.zeros(5)) and float(g[-1, :, 2].abs().max()) > 0  # lifted off the plane
    losses = {}
    for method in ("backprop", "adjoint", "discrete_adjoint", "checkpoint"):
        r = train_plane(PlaneConfig(augment=1, iterations=3, gradient=method), train, test)
        losses[method] = [p.loss for p in r.history]
    for method in ("adjoint", "discrete_adjoint", "checkpoint"):
        assert losses[method][0] == pytest.approx(losses["backprop"][0], rel=1e-5)


def test_custom_tableau_adaptive_solver_and_stop():
    train, test = split(make_dataset("xor", n=200, seed=1), seed=1)
    heun = SolverSpec.for_method(custom_method("heun2", [[], [1.0]], [0.5, 0.5]), steps=3)
    assert train_plane(PlaneConfig(solver=heun, iterations=5), train, test).nfe == 6
    adaptive = SolverSpec(integrator="dopri5", adaptive=True, rtol=1e-4, atol=1e-5)
    assert train_plane(PlaneConfig(solver=adaptive, iterations=5), train, test).nfe >= 7
    stop = threading.Event()
    stop.set()
    run = train_plane(PlaneConfig(iterations=500), train, test, stop=stop)
    assert run.stopped and run.history[-1].iteration == 1


def test_job_reports_progress_result_and_busy():
    from odenet.app.access import Busy

    train, test = split(make_dataset("moons", n=200, seed=0), seed=0)
    job = PlaneJob(PlaneConfig(iterations=30), train, test)
    assert job.wait(60)
    view = job.snapshot()
    assert view.state == "finished" and len(view.history) == 3 and view.run is not None

    def busy():
        raise Busy("you already run 1 heavy job: wait for it")
    failed = PlaneJob(PlaneConfig(iterations=30), train, test, slot=busy)
    assert failed.wait(10)
    assert failed.snapshot().state == "failed" and "wait for it" in failed.snapshot().error


@pytest.mark.parametrize("field, value, words", [("augment", 5, "augment must be a whole number from 0 to 4"),
                                                 ("width", 1, "width"), ("gradient", "magic", "gradient must be one"),
                                                 ("lr", float("nan"), "lr must be a finite number")])
def test_config_validation(field, value, words):
    with pytest.raises(ValueError, match=words):
        PlaneConfig(**{field: value})


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odenet", "plane", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_json(tmp_path):
    r = _cli("--dataset", "blobs", "--n", "300", "--iterations", "60", "--steps", "2", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for k in ("train_accuracy", "test_accuracy", "seconds", "nfe", "augment", "integrator", "steps"):
        assert k in out
    assert out["integrator"] == "rk4" and out["steps"] == 2 and out["nfe"] == 8 and out["test_accuracy"] > 0.8


def test_cli_bad_csv_is_one_line_and_exit_2(tmp_path, capsys):
    from odenet.cli import main

    bad = tmp_path / "bad.csv"
    for text, words in [("x,y,label\n1,2,0\n3,x,1\n", "line 3"), ("x,y,label\n1,2,4\n3,4,4\n", "every point has"),
                        ("x,y,label\n1,2,0\n3,4,10\n", "at most 10 classes")]:
        bad.write_text(text)
        assert main(["plane", "--data", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert main(["plane", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["plane", "--test", str(bad)]) == 2
    assert "--test needs --data" in capsys.readouterr().err


def test_job_thread_is_never_a_daemon():
    """A job started from a page (a daemon thread) must still hold the interpreter open until it ends."""
    train, test = split(make_dataset("moons", n=100, seed=0), seed=0)
    out = {}
    runner = threading.Thread(target=lambda: out.setdefault("job", PlaneJob(PlaneConfig(iterations=2), train, test)),
                              daemon=True)
    runner.start()
    runner.join(30)
    assert out["job"].wait(30) and out["job"]._thread.daemon is False


def test_region_colours_are_the_class_colours(moons, moons_run):
    """The decision-region heatmap's colour bands are the points' class colours (a colorscale plotly
    accepts: it must end at exactly 1, or plotly silently falls back to its default)."""
    from odenet.app import plots

    train, test = moons
    fig = plots.plane_regions(decision_regions(moons_run.model, moons_run.config.solver, train.bounds(), res=20),
                              test.x, test.y, "regions")
    scale = fig.data[0].colorscale
    assert scale[0][0] == 0 and scale[-1][0] == 1
    assert [c for _, c in scale][1::2] == [plots._class_color(0, 0.45), plots._class_color(1, 0.45)]
    assert plots._class_color(0).startswith("rgba(31,119,180")  # PALETTE[0], the class-0 points' colour
