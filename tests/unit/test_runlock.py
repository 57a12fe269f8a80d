"""One job trains at a time across the processes sharing a runs directory (the lock in it, released
when its holder dies), and what another process trains is read from its run directory."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odenet.data.mnist import load_mnist
from odenet.train.config import TrainConfig
from odenet.train.jobs import JobLimits, JobManager, snapshot_from_run_dir
from odenet.train.runs import TrainLock, holder_text, list_runs, lock_holder
from odenet.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    train, test = load_mnist()
    return train.subset(256), test.subset(200)


def cfg(**kw) -> TrainConfig:
    return TrainConfig.from_preset("default", **{**dict(epochs=1, train_size=256, batch_size=32, log_every=2,
                                                       eval_every=4, eval_size=100, device="cpu"), **kw})


def test_lock_records_its_holder_and_excludes_a_second_one(tmp_path):
    with TrainLock(tmp_path) as first:
        assert first.acquire("run-a")
        assert not TrainLock(tmp_path).acquire()  # flock is per open file: conflicts within a process too
        holder = lock_holder(tmp_path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["run"] == "run-a"
        assert holder_text(holder) == f"run run-a (pid {os.getpid()} on host {socket.gethostname()})"
        first.record("run-b")
        assert lock_holder(tmp_path)["run"] == "run-b"
    assert lock_holder(tmp_path) is None
    assert TrainLock(tmp_path).acquire()


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = ("import sys, time; from odenet.train.runs import TrainLock; l = TrainLock(sys.argv[1]); "
            "assert l.acquire('victim'); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path)["pid"] == proc.pid and not TrainLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_holder(tmp_path) is None  # the kernel dropped the flock with the process
    assert TrainLock(tmp_path).acquire("next")


def test_snapshot_from_run_dir_is_the_jobs_own(tiny, tmp_path):
    events = []
    Trainer(cfg(), data=tiny, run_dir=tmp_path / "run", callback=events.append).run()
    snap = snapshot_from_run_dir(tmp_path / "run")
    assert snap.status == "finished" and snap.config == cfg()
    assert [e.to_dict() for e in snap.events] == [e.to_dict() for e in events]
    assert snap.progress == 1.0 and snap.best_test_acc == events[-1].test_acc
    # mid-run: cut the file after the first mid-epoch evaluation's batch report
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines(keepends=True)
    k = next(i for i, x in enumerate(lines) if json.loads(x).get("batch") == 4 and json.loads(x)["kind"] == "batch")
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(lines[:k + 1]) + '{"kind": "ba')  # a torn last line
    live = snapshot_from_run_dir(tmp_path / "run", status="running")
    assert live.phase == "evaluating" and live.eval_images == 100  # eval_every=4 on eval_size=100
    assert live.progress == 0.5 and live.eta_seconds is not None and live.eta_seconds > 0
    assert snapshot_from_run_dir(tmp_path / "nothing") is None


def test_a_job_waits_queued_while_another_process_trains(tiny, tmp_path):
    Trainer(cfg(), data=tiny, run_dir=tmp_path / "theirs").run()  # the other process's run, on disk
    status = json.loads((tmp_path / "theirs" / "status.json").read_text())
    (tmp_path / "theirs" / "status.json").write_text(json.dumps({**status, "status": "running",
                                                                 "pid": os.getpid(), "host": "other-host"}))
    other = TrainLock(tmp_path)
    assert other.acquire("theirs")  # as another server holds it (flock conflicts across open files)
    other_holder = lock_holder(tmp_path)
    mgr = JobManager(tmp_path, limits=JobLimits(max_queue=4), data_loader=lambda: tiny)
    try:
        job = mgr.submit(cfg(seed=1), name="mine")
        time.sleep(1.5)
        snap = mgr.snapshot(job.id)
        assert snap.status == "queued" and snap.queue_position == 1
        assert snap.message == (f"waiting: another process trains in {tmp_path} now, {holder_text(other_holder)}; "
                                "this job starts when it ends")
        there = mgr.elsewhere()
        assert there.status == "running" and there.run_dir == tmp_path / "theirs" and there.owner.startswith("pid")
        assert there.progress == 1.0
        assert mgr.wait_until_start_estimate(job.id) is not None
        # the holder's run is listed as running although its pid is on another host
        assert {r.name: r.status for r in list_runs(tmp_path)}["theirs"] == "running"
        other.release()
        done = mgr.wait(job.id, timeout=120)
        assert done.status == "finished" and done.run_dir == tmp_path / "mine"
        assert lock_holder(tmp_path) is None and mgr.elsewhere() is None
    finally:
        other.release()
        mgr.close()


def test_resume_through_the_job_manager_shows_the_whole_run(tiny, tmp_path):
    mgr = JobManager(tmp_path, limits=JobLimits(max_queue=4), data_loader=lambda: tiny)
    try:
        first = mgr.submit(cfg(epochs=2), name="r")
        while not any(e.kind == "batch" and e.step >= 6 for e in mgr.snapshot(first.id).events):
            time.sleep(0.02)
        mgr.stop(first.id)
        assert mgr.wait(first.id, timeout=60).status == "stopped"
        assert [r.name for r in list_runs(tmp_path) if r.resumable] == ["r"]
        job = mgr.resume(tmp_path / "r")
        with pytest.raises(ValueError, match="already being resumed"):
            mgr.resume(tmp_path / "r")
        done = mgr.wait(job.id, timeout=120)
        assert done.status == "finished" and done.progress == 1.0
        steps = [e.step for e in done.events if e.kind == "batch"]
        assert steps[0] == 2 and steps[-1] == 16  # the reports before the stop, then the resumed ones
        assert not [r for r in list_runs(tmp_path) if r.resumable]
    finally:
        mgr.close()
