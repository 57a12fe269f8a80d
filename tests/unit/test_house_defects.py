"""Defects from issue 27's review, each with a test that failed before its fix."""

import functools
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from odenet.data.mnist import load_mnist
from odenet.train.config import OPTIMIZERS, TrainConfig
from odenet.train.jobs import JobManager
from odenet.train.runs import list_runs
from odenet.train.trainer import Trainer
from tests.support.server import ServerDidNotStart, start_server

ROOT = Path(__file__).resolve().parents[2]


def test_cancelling_a_queued_job_wakes_its_waiter(tmp_path):
    release = threading.Event()

    def slow_data():  # the first job holds the worker, using no CPU, until released
        release.wait(60)
        return load_mnist()

    mgr = JobManager(runs_dir=tmp_path / "runs", data_loader=slow_data)
    cfg = TrainConfig.for_app("default", train_size=256, batch_size=128, device="cpu")
    first, queued = mgr.submit(cfg), mgr.submit(cfg)
    result = {}

    def waiter():
        t = time.monotonic()
        result["snap"] = mgr.wait(queued.id, timeout=30)
        result["seconds"] = time.monotonic() - t

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    assert mgr.stop(queued.id)
    thread.join(35)
    try:
        assert result["snap"].status == "cancelled" and result["seconds"] < 5  # not the 30-s timeout
    finally:
        mgr.stop(first.id)
        release.set()
        mgr.wait(first.id, timeout=120)


def test_a_run_deleted_while_listing_is_skipped(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    (root / "b").mkdir(parents=True)
    ghost = root / "a"  # listed as a directory, deleted (another visitor, New class) before it is sorted
    real_iterdir, real_is_dir = Path.iterdir, Path.is_dir
    seen = {"ghost": 0}

    def iterdir(self):
        return iter([*real_iterdir(self), ghost] if self == root else list(real_iterdir(self)))

    def is_dir(self):
        if self == ghost:
            seen["ghost"] += 1
            return seen["ghost"] == 1  # a directory when listed, gone afterwards
        return real_is_dir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(Path, "is_dir", is_dir)
    assert [r.name for r in list_runs(root)] == ["b"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_makefile_has_a_rule_for_every_phony_target():
    text = (ROOT / "Makefile").read_text()
    phony = next(line for line in text.splitlines() if line.startswith(".PHONY:")).split(":", 1)[1].split()
    for target in phony:
        out = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "No rule to make target" not in out.stderr, (target, out.stderr)
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "bench-quick"], capture_output=True, text=True, timeout=60)
    assert "benchmarks/run.py --quick" in dry.stdout


def test_one_version_for_the_package_and_its_metadata():
    import importlib.metadata

    import odenet

    assert importlib.metadata.version("odenet") == odenet.__version__
    assert "version = " not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_weight_decay_only_on_conv_and_linear_weights(optimizer):
    """The CLI says weight decay is not applied to biases and BatchNorm: for every optimizer the
    RKNet's conv/linear weights sit in a decaying group and every bias / BN parameter in a
    zero-decay one (adam used to decay all 22 tensors)."""
    cfg = TrainConfig.from_dict(dict(optimizer=optimizer, weight_decay=1e-3, device="cpu"))
    model, opt, _ = Trainer(cfg)._build(total=10)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    weights = {name for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    norms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    kinds = {"decayed": 0, "bias": 0, "norm": 0}
    assert len(decay_of) == len(list(model.parameters()))  # every parameter is optimised exactly once
    for name, p in model.named_parameters():
        owner, leaf = name.rsplit(".", 1)
        if owner in weights and leaf == "weight":
            assert decay_of[id(p)] == 1e-3, name
            kinds["decayed"] += 1
        else:
            assert decay_of[id(p)] == 0.0, name
            kinds["norm" if owner in norms else "bias"] += 1
    assert kinds == {"decayed": 6, "bias": 6, "norm": 10}


def _stub(tmp_path: Path, code: str) -> list[str]:
    """A 'server' that writes its pid, prints a line naming its port, then runs ``code``; it never listens."""
    pid_file = str(tmp_path / "pid")
    return [sys.executable, "-c", f"import os, sys, time; open({pid_file!r}, 'w').write(str(os.getpid())); "
            f"print('stub for port {{port}}: warming up', flush=True); {code}"]


def test_server_start_gives_up_at_its_deadline_and_says_why(tmp_path):
    """The health wait has a deadline: past it the error names the port and quotes the server's
    last output, and the server process is gone (benchmarks/run.py used to wait forever)."""
    t = time.monotonic()
    with pytest.raises(ServerDidNotStart) as err:
        start_server(command=_stub(tmp_path, "time.sleep(120)"), deadline_s=1.5)
    assert 1.5 <= time.monotonic() - t < 15
    msg = str(err.value)
    port = int(re.search(r"server on port (\d+) not healthy after 1.5 s", msg).group(1))
    assert f"stub for port {port}: warming up" in msg and f"127.0.0.1:{port}/_stcore/health" in msg
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped, no orphan
    with pytest.raises(ServerDidNotStart, match=r"exited with code 3[\s\S]*warming up"):
        t = time.monotonic()
        start_server(command=_stub(tmp_path, "sys.exit(3)"), deadline_s=60)
    assert time.monotonic() - t < 15  # an exit is reported at once, not at the deadline


def test_benchmark_app_start_has_a_deadline(tmp_path, monkeypatch):
    import benchmarks.run as bench

    stub = _stub(tmp_path, "time.sleep(120)")
    monkeypatch.setattr(bench, "start_server", functools.partial(start_server, command=stub))
    with pytest.raises(ServerDidNotStart, match="not healthy after 1 s"):
        bench.bench_app(deadline_s=1)
    assert not Path(f"/proc/{int((tmp_path / 'pid').read_text())}").exists()
