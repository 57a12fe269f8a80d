"""Resuming a run: a resumed run ends where an uninterrupted one of the same seed ends (the
optimizer, schedule, EMA, RNG and data order, step adaptation and position in the epoch are in the
resume checkpoint), a damaged last checkpoint falls back to the one before, bad paths are one line."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from odenet.data.mnist import load_mnist
from odenet.train.checkpoints import ResumeError, load_checkpoint, load_model, resume_files
from odenet.train.config import TrainConfig
from odenet.train.runs import list_runs
from odenet.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    train, test = load_mnist()
    return train.subset(384), test.subset(300)


def cfg(**kw) -> TrainConfig:
    """Everything a resume must carry at once: AdamW + one-cycle, EMA, augmentation (data-generator
    draws inside the epoch), label smoothing, mid-epoch evaluations, two epochs."""
    base = dict(epochs=2, train_size=384, batch_size=32, eval_every=3, eval_size=100, log_every=2, augment=True,
                device="cpu")
    return TrainConfig.from_preset("fast", **{**base, **kw})


def evals(run: Path) -> list[tuple[int, int, float, float]]:
    """(epoch, batch, test loss, test accuracy) of every evaluation in the run's metrics.jsonl."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["batch"], r["test_loss"], r["test_acc"]) for r in rows if r["kind"] == "eval"]


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if r["kind"] == "batch"]


def stop_at(step: int) -> tuple[threading.Event, callable]:
    ev = threading.Event()
    return ev, lambda e: ev.set() if e.kind == "batch" and e.step >= step else None


def same_weights(a: Path, b: Path) -> float:
    sa, sb = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


def test_resumed_run_ends_like_an_uninterrupted_one(tiny, tmp_path):
    config = cfg(adapt_every=4, adapt_threshold=-1.0, adapt_max_steps=2)  # adaptation doubles the steps at step 4
    whole = Trainer(config, data=tiny, run_dir=tmp_path / "whole", resume_every=0).run()
    ev, cb = stop_at(8)  # mid-epoch 1 (12 batches per epoch), after the adaptation
    cut = Trainer(config, data=tiny, run_dir=tmp_path / "cut", callback=cb, stop_event=ev, resume_every=0).run()
    assert cut.status == "stopped" and "epoch 1, batch 8" in cut.message
    assert [p.name for p in resume_files(tmp_path / "cut")] == ["resume-00000008.pt", "resume-00000006.pt"]
    resumed = Trainer.resume(tmp_path / "cut", data=tiny, resume_every=0)
    assert resumed.resume_point.step == 8 and resumed.config == config
    res = resumed.run()
    assert res.status == "finished" and res.final_test_acc == whole.final_test_acc
    assert res.model.config.steps == whole.model.config.steps == 2  # the adapted solver came back
    assert evals(tmp_path / "cut") == evals(tmp_path / "whole")  # same evaluations, same numbers, in order
    assert losses(tmp_path / "cut")[-8:] == losses(tmp_path / "whole")[-8:]
    assert same_weights(tmp_path / "cut" / "last.pt", tmp_path / "whole" / "last.pt") == 0.0
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status["status"] == "finished" and status["resumed_from"] == "resume-00000008.pt"


def test_damaged_last_checkpoint_falls_back_to_the_one_before(tiny, tmp_path):
    config = cfg(epochs=1)
    whole = Trainer(config, data=tiny, run_dir=tmp_path / "whole", resume_every=0).run()
    ev, cb = stop_at(10)
    Trainer(config, data=tiny, run_dir=tmp_path / "cut", callback=cb, stop_event=ev, resume_every=0).run()
    newest = resume_files(tmp_path / "cut")[0]
    assert newest.name == "resume-00000010.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated: a torn copy, a full disk
    resumed = Trainer.resume(tmp_path / "cut", data=tiny, resume_every=0)
    assert resumed.resume_point.path.name == "resume-00000008.pt"
    [note] = resumed.resume_notes
    assert "resume-00000010.pt is damaged" in note and "fell back to the checkpoint before it" in note
    assert (tmp_path / "cut" / "resume-00000010.pt.damaged").exists()
    res = resumed.run()
    assert res.final_test_acc == whole.final_test_acc and evals(tmp_path / "cut") == evals(tmp_path / "whole")
    start = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if '"start"' in x][-1]
    assert "resumed from resume-00000008.pt" in start["message"] and "damaged" in start["message"]


def test_a_run_stopped_before_a_due_evaluation_makes_it_when_resumed(tiny, tmp_path):
    config = cfg(epochs=1)
    Trainer(config, data=tiny, run_dir=tmp_path / "whole", resume_every=60).run()
    ev, cb = stop_at(6)  # an evaluation is due after batch 6 (eval_every=3); the stop comes first
    Trainer(config, data=tiny, run_dir=tmp_path / "cut", callback=cb, stop_event=ev, resume_every=60).run()
    assert [e[1] for e in evals(tmp_path / "cut")] == [3]
    Trainer.resume(tmp_path / "cut", data=tiny).run()
    assert evals(tmp_path / "cut") == evals(tmp_path / "whole")


def test_resume_refuses_what_it_cannot_continue(tiny, tmp_path):
    config = cfg(epochs=1)
    Trainer(config, data=tiny, run_dir=tmp_path / "done", resume_every=0).run()
    with pytest.raises(ResumeError, match="has finished"):
        Trainer.resume(tmp_path / "done")
    with pytest.raises(ResumeError, match="no such run directory"):
        Trainer.resume(tmp_path / "nope")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(config.to_json())
    with pytest.raises(ResumeError, match=r"no resume checkpoint \(resume-\*\.pt\)"):
        Trainer.resume(tmp_path / "old")
    for p in resume_files(tmp_path / "done"):  # a resume checkpoint is also an ordinary checkpoint
        assert load_model(p).config.steps == 1


def _cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odenet", "train", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, **kw)


@pytest.mark.parametrize("path, why", [("nope", "no such run directory"), ("file", "not a directory"),
                                       ("empty", "not an odenet run directory")])
def test_bad_resume_paths_are_one_line_errors(tmp_path, path, why):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    r = _cli("--resume", str(tmp_path / path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: cannot resume") and why in r.stderr


def test_resume_with_other_settings_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    r = _cli("--resume", str(tmp_path / "run"), "--epochs", "3", "--lr", "0.1")
    assert r.returncode == 2 and r.stderr.strip() == ("error: --resume continues a run with its own settings; drop "
                                                     "--epochs, --lr")


CLI_RUN = ["--train-size", "320", "--batch-size", "32", "--epochs", "1", "--eval-every", "4", "--eval-size", "200",
           "--log-every", "2", "--augment", "--ema", "0.99", "--device", "cpu", "--quiet", "--seed", "3"]


@pytest.mark.slow  # ~30 s: three processes, each evaluating on the full test set at the epoch's end
def test_killed_cli_run_resumes_to_the_uninterrupted_result(tmp_path):
    """A real ``python -m odenet train`` killed with SIGKILL mid-epoch, after its first mid-epoch resume
    checkpoint, then ``--resume``d, ends with the uninterrupted run's metrics and weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ODENET_RESUME_EVERY": "0"}
    whole = _cli(*CLI_RUN, "--runs-dir", str(tmp_path), "--name", "whole", env=env, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    victim = subprocess.Popen([sys.executable, "-m", "odenet", "train", *CLI_RUN, "--runs-dir", str(tmp_path),
                               "--name", "victim"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    run = tmp_path / "victim"
    deadline = time.monotonic() + 120
    while not resume_files(run) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    first = resume_files(run)
    assert first, "no resume checkpoint was written before the kill"
    assert not (run / "last.pt").exists(), "killed too late: the first epoch had ended"
    assert [(r.name, r.status) for r in list_runs(tmp_path)] == [("victim", "interrupted"), ("whole", "finished")]
    resumed = _cli("--resume", str(run), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from resume-" in resumed.stdout
    got, want = evals(run), evals(tmp_path / "whole")
    assert [e[:2] for e in got] == [e[:2] for e in want]
    assert torch.allclose(torch.tensor([e[2:] for e in got]), torch.tensor([e[2:] for e in want]), rtol=1e-5,
                          atol=1e-6)
    assert same_weights(run / "last.pt", tmp_path / "whole" / "last.pt") < 1e-5
    assert [(r.name, r.status) for r in list_runs(tmp_path)][0] == ("victim", "finished")
