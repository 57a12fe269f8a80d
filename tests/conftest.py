import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Each test writes runs into its own temp directory, never into the project's runs/."""
    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    yield
