"""Faults injected for real: SIGKILL during checkpoint writes and during training."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odenet import load_model
from odenet.train.runs import list_runs

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys, torch
from odenet import RKNet, save_checkpoint
torch.manual_seed(0)
m = RKNet()
i = 0
while True:
    with torch.no_grad():
        m.output[2].bias.fill_(float(i))
    save_checkpoint(sys.argv[1], m, metrics={"i": i})
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("round_", range(2))
def test_sigkill_during_checkpoint_writes_leaves_a_loadable_file(tmp_path, round_):
    path = tmp_path / "last.pt"
    rng = random.Random(round_)
    for _ in range(3):  # the same file survives several kills in a row
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT)
        for _ in range(3):
            proc.stdout.readline()  # a few complete writes
        time.sleep(rng.uniform(0, 0.05))  # then die at a random moment, usually mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model = load_model(path)
        i = model.metrics["i"]
        assert i >= 0 and float(model.output[2].bias[0].detach()) == float(i)  # weights and metrics from one write
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(n.startswith(".last.pt.") and n.endswith(".tmp") for n in leftovers)  # only hidden temp files


def test_killed_training_is_listed_interrupted_and_its_checkpoint_loads(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "odenet", "train", "--train-size", "640", "--batch-size", "64",
                             "--epochs", "50", "--runs-dir", str(tmp_path), "--name", "victim", "--quiet",
                             "--device", "cpu", "--eval-size", "200"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "victim" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ckpt.exists(), "no checkpoint was written"
    time.sleep(random.uniform(0.5, 3.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = list_runs(tmp_path)
    assert [(r.name, r.status) for r in runs] == [("victim", "interrupted")]
    model = load_model(ckpt)
    assert model.metrics["epoch"] >= 1
