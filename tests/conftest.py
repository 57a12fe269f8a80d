"""Settings every test group shares (tests/unit, tests/app, tests/browser; each runs on its own:
``make test-unit``, ``make test-app``, ``make test-browser``): a fixed Hypothesis profile, two torch
threads, a private runs directory per test, Streamlit's steady navigation for AppTest, and the
``runs`` fixture.  Helpers shared with the benchmarks live in tests/support/."""

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Hypothesis: CI runs a fixed, derandomised profile (the same examples every run); set
# HYPOTHESIS_PROFILE=explore locally for fresh random examples (or pass --hypothesis-seed=N).
_COMMON = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("explore", **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Each test writes runs into its own temp directory, never into the project's runs/; the Train
    page's background speed probe stays off (tests/app/test_train_room.py turns it on on purpose)."""
    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ODENET_SPEED_PROBE", "0")
    yield


@pytest.fixture(autouse=True)
def _streamlit_steady_navigation(monkeypatch):
    """AppTest re-detects Streamlit's legacy ``pages/`` mode on every run; a real server leaves
    it for good after its first request (see odenet.app.nav.ensure_app_navigation, tested for real
    in tests/browser/test_browser.py).  Give AppTest the server's steady state."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.testing.v1 import app_test
    except ImportError:  # pragma: no cover
        yield
        return

    class SteadyPagesManager(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", SteadyPagesManager)
    yield


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A runs dir holding one finished run, so model pickers always have a choice (page tests)."""
    from odenet import RKNet, TrainConfig, save_checkpoint

    root = tmp_path / "runs"
    run = root / "fixture-run"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict(dict(train_size=1000, epochs=1, integrator="rk4", steps=1))
    save_checkpoint(run / "last.pt", RKNet(cfg.model).eval(), cfg, {"test_acc": 0.1})
    (run / "status.json").write_text(json.dumps({"status": "finished", "config": cfg.to_dict(),
                                                 "best_test_acc": 0.1, "duration": 1.0}))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "batch", "epoch": 1, "batch": 5, "batches_per_epoch": 7,
                                                   "step": 5, "train_loss": 2.0, "train_acc": 0.2}) + "\n")
    monkeypatch.setenv("ODENET_RUNS", str(root))
    return root
