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
    """Each test writes runs into its own temp directory, never into the project's runs/."""
    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    yield


@pytest.fixture(autouse=True)
def _streamlit_steady_navigation(monkeypatch):
    """AppTest re-detects Streamlit's legacy ``pages/`` mode on every run; a real server leaves
    it for good after its first request (see odenet.ui.ensure_app_navigation, tested for real
    in tests/test_browser.py).  Give AppTest the server's steady state."""
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
