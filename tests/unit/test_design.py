"""Regression tests for the core design: no hidden shared state, the solver passed in, one
source of truth.  Each test failed on the code before these interfaces existed."""

import threading
import time

import pytest
import torch

from odenet import ModelConfig, RKNet, SolverSpec, TrainConfig
from odenet.data.mnist import load_mnist
from odenet.train.config import APP_SETTINGS, PRESETS
from odenet.train.jobs import JobLimits, JobManager
from odenet.train.runs import config_solver_label
from odenet.train.trainer import Ranks
from tests.support.concurrency import run_in_threads


def test_notebook_preset_is_exactly_the_notebook_recipe():
    cfg = TrainConfig.from_preset("notebook")
    # the seed notebook: torch.optim.Adam(params, lr=0.1), batch 128, 20 epochs, no schedule, fp32
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule) == ("adam", 0.1, 0.0, "constant")
    assert (cfg.batch_size, cfg.epochs, cfg.augment, cfg.amp, cfg.train_size) == (128, 20, False, False, 60_000)
    assert cfg.model == ModelConfig()  # RK4 x1 on [0, 1], 64 channels
    # the app's version of a preset differs only in the app's own run length and reporting
    app = TrainConfig.for_app("notebook")
    for key in set(PRESETS["notebook"]) - set(APP_SETTINGS):
        assert getattr(app, key) == getattr(cfg, key), key
    assert app.preset == "notebook" and app.eval_size == 1000


def test_overrides_of_a_preset_keep_the_preset_fields():
    cfg = TrainConfig.from_preset("notebook", integrator="euler", steps=3, epochs=2)
    assert cfg.weight_decay == 0.0 and cfg.epochs == 2 and cfg.model.label() == "euler x3"


def test_model_config_is_nested_and_every_model_field_round_trips():
    cfg = TrainConfig(model=ModelConfig(integrator="dopri5", adaptive=True, rtol=1e-2, max_steps=77))
    d = cfg.to_dict()
    assert d["model"]["max_steps"] == 77 and "integrator" not in d
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_json(cfg.to_json()).model.max_steps == 77
    # older checkpoints and the CLI use the flat form
    flat = TrainConfig.from_dict({"integrator": "euler", "steps": 2, "epochs": 1})
    assert flat.model.label() == "euler x2" and flat.epochs == 1
    assert cfg.replace(steps=4, adaptive=False).model.steps == 4


def test_one_solver_label_for_adaptive_runs():
    nested = TrainConfig(model=ModelConfig(integrator="dopri5", adaptive=True, rtol=1e-2)).to_dict()
    assert config_solver_label(nested) == "dopri5 adaptive (rtol 0.01)"
    assert config_solver_label({"integrator": "euler", "steps": 8}) == "euler x8"
    assert config_solver_label({"integrator": "nope"}) == "?"


def test_solver_passed_in_is_thread_safe_on_one_shared_model():
    torch.manual_seed(0)
    model = RKNet().eval()
    x = torch.randn(3, 1, 28, 28)
    specs = [SolverSpec("euler", steps=1), SolverSpec("rk4", steps=4), SolverSpec("midpoint", steps=2)]
    with torch.no_grad():
        expected = [model(x, solver=s) for s in specs]
    errors = []

    def worker(i: int) -> None:
        with torch.no_grad():
            for _ in range(5):
                if not torch.allclose(model(x, solver=specs[i]), expected[i], atol=1e-6):
                    errors.append(i)

    run_in_threads(worker, 3)
    assert errors == [] and model.config == ModelConfig()


def test_stop_before_the_trainer_exists_is_not_lost(tmp_path, monkeypatch):
    import odenet.train.jobs as jobs

    release = threading.Event()
    real = jobs.new_run_dir

    def slow_run_dir(*args, **kwargs):  # the window between "running" and the Trainer's creation
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "new_run_dir", slow_run_dir)
    train, test = load_mnist()
    m = JobManager(tmp_path / "runs", JobLimits(max_epochs=50, max_images=10**8), data_loader=lambda: (
        train.subset(2048), test.subset(256)))
    try:
        snap = m.submit(TrainConfig.from_preset("default", train_size=2048, epochs=20, batch_size=64, device="cpu"))
        deadline = time.monotonic() + 30
        while m.snapshot(snap.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.snapshot(snap.id).status == "running"
        assert m.stop(snap.id)  # before: returned False and the job trained all 20 epochs
        release.set()
        done = m.wait(snap.id, timeout=60)
        assert done.status == "stopped"
        assert max((e.step for e in done.events if e.kind == "batch"), default=0) <= 1
    finally:
        release.set()
        m.close()


def test_ranks_call_the_same_collectives_whatever_the_local_stop_flag():
    calls = []

    def fake_all_reduce(t: torch.Tensor) -> None:
        calls.append(t.clone())
        t.mul_(2)  # as if the other rank had the same flags

    ranks = Ranks(rank=1, world=2, sync_every=4, all_reduce=fake_all_reduce)
    loss = torch.tensor(1.0)
    # non-sync steps: a local stop is ignored and no collective runs (every rank takes this path)
    assert ranks.decide(3, True, loss) == (False, False) and calls == []
    # sync step: one reduction of both flags decides for everyone
    assert ranks.decide(4, True, loss) == (True, False) and len(calls) == 1
    assert ranks.decide(8, False, torch.tensor(float("nan"))) == (False, True) and len(calls) == 2
    single = Ranks()
    assert single.decide(3, True, loss) == (True, False)  # world size 1: act at once, no collectives


def test_trainer_construction_has_no_side_effects(monkeypatch):
    import torch.distributed as dist

    from odenet.train.trainer import Trainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    called = []
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: called.append(a))
    t = Trainer(TrainConfig.from_preset("default", train_size=256, batch_size=64, epochs=1, device="cpu"))
    assert called == [] and t.step == 0 and t.best_acc is None and t.final_acc is None


def test_cli_user_errors_are_one_line_but_bugs_keep_their_traceback(monkeypatch, capsys):
    import odenet.cli as cli

    assert cli.main(["evaluate", "no-such-model.pt"]) == 2
    assert "error: checkpoint no-such-model.pt does not exist" in capsys.readouterr().err

    def buggy() -> int:
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli, "_models", buggy)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["models"])
