import time

import pytest

from odenet import TrainConfig
from odenet.data.mnist import load_mnist
from odenet.train.jobs import JobLimits, JobManager, JobRejected, QueueFull
from odenet.train.runs import available_models, list_runs, read_metrics


@pytest.fixture(scope="module")
def small():
    train, test = load_mnist()
    return train.subset(1024), test.subset(256)


def cfg(**kw):
    base = dict(train_size=1024, epochs=1, batch_size=64, log_every=2, device="cpu")
    base.update(kw)
    return TrainConfig.from_preset("default", **base)


@pytest.fixture
def manager(tmp_path, small):
    m = JobManager(tmp_path / "runs", JobLimits(max_epochs=50, max_images=10**7, max_queue=2),
                   data_loader=lambda: small)
    yield m
    m.close()


def wait_for(pred, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_job_runs_to_completion_and_is_listed(manager):
    snap = manager.submit(cfg(), name="first")
    done = manager.wait(snap.id, timeout=120)
    assert done.status == "finished" and done.run_dir.name == "first"
    assert done.best_test_acc is not None and done.progress == 1.0
    runs = list_runs(manager.runs_dir)
    assert [r.name for r in runs] == ["first"] and runs[0].status == "finished"
    df = read_metrics(done.run_dir)
    assert "train_loss" in df and df["train_loss"].notna().any()
    assert any(m.key == "run:first" for m in available_models(manager.runs_dir))


def test_one_job_at_a_time_queue_and_second_poller(manager):
    a = manager.submit(cfg(epochs=40), owner="alice")
    assert wait_for(lambda: manager.snapshot(a.id).status == "running")
    b = manager.submit(cfg(), owner="bob")
    assert manager.snapshot(b.id).status == "queued" and manager.snapshot(b.id).queue_position == 1
    assert manager.current().id == a.id and manager.current().owner == "alice"
    assert manager.wait_until_start_estimate(b.id) > 0
    # a second poller (another tab) sees the same job state
    assert wait_for(lambda: manager.snapshot(a.id).last_batch is not None)
    other_view = manager.current()
    assert other_view.id == a.id and other_view.events[:1] == manager.snapshot(a.id).events[:1]
    assert other_view.eta_seconds is not None and other_view.eta_seconds > 0
    t0 = time.monotonic()
    assert manager.stop(a.id)
    stopped = manager.wait(a.id, timeout=30)
    assert stopped.status == "stopped" and time.monotonic() - t0 < 10
    assert (stopped.run_dir / "last.pt").exists()
    assert manager.wait(b.id, timeout=120).status == "finished"


def test_cancel_queued_and_queue_cap(manager):
    a = manager.submit(cfg(epochs=40))
    assert wait_for(lambda: manager.snapshot(a.id).status == "running")
    q1 = manager.submit(cfg())
    manager.submit(cfg())
    with pytest.raises(QueueFull, match="already waiting"):
        manager.submit(cfg())
    assert manager.stop(q1.id) and manager.snapshot(q1.id).status == "cancelled"
    manager.stop(a.id)


def test_caps(tmp_path):
    m = JobManager(tmp_path, JobLimits(max_epochs=3, max_images=5000))
    with pytest.raises(JobRejected, match="epochs=4 is over this server's cap of 3"):
        m.submit(cfg(epochs=4))
    with pytest.raises(JobRejected, match="6,000 images is over this server's cap of 5,000"):
        m.submit(cfg(epochs=3, train_size=2000))


def test_failing_job_reports_error_and_next_job_runs(tmp_path, small):
    calls = {"n": 0}

    def loader():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("forced failure for the test")
        return small

    m = JobManager(tmp_path / "runs", JobLimits(), data_loader=loader)
    bad = m.submit(cfg())
    res = m.wait(bad.id, timeout=60)
    assert res.status == "failed" and "forced failure for the test" in res.message
    assert [r.status for r in list_runs(tmp_path / "runs")] == ["failed"]
    good = m.submit(cfg())
    assert m.wait(good.id, timeout=120).status == "finished"
    m.close()


def test_nan_job_reports_divergence(manager):
    s = manager.submit(cfg(optimizer="sgd", lr=1e6, schedule="constant", momentum=0.0))
    res = manager.wait(s.id, timeout=60)
    assert res.status == "failed" and "training diverged" in res.message


def test_worker_returns_freed_memory_after_every_job(manager, monkeypatch):
    """After each job (finished or failed) the worker hands the allocator's free pages back
    (glibc malloc_trim), so a long-running server's memory does not ratchet up job by job."""
    import odenet.train.jobs
    from odenet.utils import release_free_memory

    assert release_free_memory() is True  # glibc: the call exists here (Debian, the CI's image)
    calls = []
    monkeypatch.setattr(odenet.train.jobs, "release_free_memory", lambda: calls.append(time.time()) or True)
    first = manager.wait(manager.submit(cfg()).id, timeout=120)
    second = manager.wait(manager.submit(cfg(optimizer="sgd", lr=1e6, schedule="constant", momentum=0.0)).id,
                          timeout=120)
    assert first.status == "finished" and second.status == "failed"
    assert wait_for(lambda: len(calls) == 2, timeout=10)
    assert calls[0] >= first.ended and calls[1] >= second.ended


def test_only_the_newest_ended_jobs_stay_in_memory(manager, monkeypatch):
    """Ended jobs beyond KEEP_ENDED_JOBS are forgotten by the manager (their runs stay on disk)."""
    import odenet.train.jobs

    monkeypatch.setattr(odenet.train.jobs, "KEEP_ENDED_JOBS", 2)
    ids = [manager.wait(manager.submit(cfg(train_size=256), name=f"j{i}").id, timeout=120).id for i in range(3)]
    assert [j.id for j in manager.jobs()] == ids[:0:-1]  # newest first, the oldest gone
    assert manager.snapshot(ids[0]) is None and manager.snapshot(ids[2]).status == "finished"
    assert manager.wait(ids[0], timeout=1) is None and manager.stop(ids[0]) is False
    assert sorted(r.name for r in list_runs(manager.runs_dir)) == ["j0", "j1", "j2"]


def _thread_nice(tid: int) -> int:
    """The nice value of one thread of this process (Linux: /proc/self/task/<tid>/stat, field 19)."""
    stat = open(f"/proc/self/task/{tid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_train_nice_comes_from_the_environment_and_is_clamped(monkeypatch):
    for raw, want in (("10", 10), ("40", 19), ("-5", 0)):
        monkeypatch.setenv("ODENET_TRAIN_NICE", raw)
        assert JobLimits.from_env().train_nice == want
    monkeypatch.delenv("ODENET_TRAIN_NICE")
    assert JobLimits.from_env().train_nice == 0


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_the_training_worker_runs_at_the_configured_nice_value(tmp_path, small):
    """ODENET_TRAIN_NICE=10: the worker thread (and so the intra-op threads it starts) runs at nice 10 while
    the server's own threads keep theirs, so visitors' reruns get the cores first when the machine is busy."""
    import threading

    base = _thread_nice(threading.get_native_id())
    m = JobManager(tmp_path / "runs", JobLimits(max_epochs=50, max_images=10**7, train_nice=10),
                   data_loader=lambda: small)
    try:
        snap = m.submit(cfg(epochs=40))
        assert wait_for(lambda: m.snapshot(snap.id).status == "running")
        assert _thread_nice(m._worker.native_id) == max(base, 10)
        assert _thread_nice(threading.get_native_id()) == base  # the calling thread is untouched
        m.stop(snap.id)
    finally:
        m.close()
