"""A shared demo that stays safe: presenter token, per-visitor limits, runs that are never lost."""

import errno
import json
import threading

import pytest

from odenet import TrainConfig, load_model
from odenet.app.access import Busy, Limits, WorkLimiter, is_public_address, presenter_token, token_matches
from odenet.data.mnist import load_mnist
from odenet.train.runs import RunBusy, delete_run, list_runs, remove_stale_temp_files
from odenet.train.trainer import Trainer
from tests.support.concurrency import run_in_threads


@pytest.fixture(scope="module")
def small():
    train, test = load_mnist()
    return train.subset(512), test.subset(128)


def test_public_addresses_need_the_token():
    assert not is_public_address("localhost") and not is_public_address("127.0.0.1") and not is_public_address("::1")
    assert is_public_address("0.0.0.0") and is_public_address("192.168.1.20")
    assert is_public_address("") and is_public_address(None)  # Streamlit without an address listens everywhere
    assert not is_public_address("127.0.0.2") and not is_public_address("[::1]")  # all of 127/8 is loopback
    assert is_public_address("10.0.0.5") and is_public_address("demo.example.org")


def test_shared_override_from_the_environment(monkeypatch):
    from odenet.app.access import shared_override
    from odenet.errors import OdenetError

    monkeypatch.delenv("ODENET_SHARED", raising=False)
    assert shared_override() is None
    for raw, want in (("1", True), ("yes", True), ("0", False), ("off", False)):
        monkeypatch.setenv("ODENET_SHARED", raw)
        assert shared_override() is want
    monkeypatch.setenv("ODENET_SHARED", "maybe")
    with pytest.raises(OdenetError, match="ODENET_SHARED='maybe'"):
        shared_override()


def test_token_from_env_or_generated_once(monkeypatch, capsys):
    monkeypatch.setenv("ODENET_PRESENTER_TOKEN", "s3cret-token")
    assert presenter_token() == "s3cret-token"
    assert token_matches("s3cret-token", presenter_token()) and token_matches(" s3cret-token ", "s3cret-token")
    assert not token_matches("s3cret-tokeN", "s3cret-token") and not token_matches("", "s3cret-token")
    assert not token_matches(None, "s3cret-token")
    monkeypatch.delenv("ODENET_PRESENTER_TOKEN")
    import odenet.app.access as access

    monkeypatch.setattr(access, "_generated", None)
    first = presenter_token()
    assert presenter_token() == first and len(first) >= 16
    err = capsys.readouterr().err
    assert err.count(first) == 1  # printed once to the terminal, for the presenter


def test_work_limiter_caps_each_visitor_and_the_server():
    lim = WorkLimiter(Limits(per_visitor=1, server=2))
    with lim.slot("alice", "robustness grid"):
        with pytest.raises(Busy, match="you already have 1 computation"):
            with lim.slot("alice", "robustness grid"):
                pass
        with lim.slot("bob", "gradients"):
            with pytest.raises(Busy, match="server is busy with 2 computations"):
                with lim.slot("carol", "trajectories"):
                    pass
            assert lim.running() == 2
    assert lim.running() == 0
    with lim.slot("alice", "again"):  # released after an error too
        pass


def test_work_limiter_is_thread_safe():
    lim = WorkLimiter(Limits(per_visitor=1, server=3))
    gate = threading.Barrier(8)
    got, refused = [], []

    def visitor(i: int) -> None:
        gate.wait()
        try:
            with lim.slot(f"v{i % 4}", "x"):
                got.append(i)
                threading.Event().wait(0.2)
        except Busy:
            refused.append(i)

    run_in_threads(visitor, 8)
    assert len(got) <= 3 and len(got) + len(refused) == 8 and lim.running() == 0


def _finished_run(tmp_path, small, name="r"):
    cfg = TrainConfig.from_preset("default", train_size=256, batch_size=64, epochs=1, device="cpu", eval_size=64)
    res = Trainer(cfg, data=small, run_dir=tmp_path / "runs" / name).run()
    assert res.status == "finished"
    return tmp_path / "runs" / name


def test_delete_refuses_a_training_run_and_paths_outside(tmp_path, small):
    run = _finished_run(tmp_path, small)
    status = json.loads((run / "status.json").read_text())
    with pytest.raises(RunBusy, match="is training; stop it first"):
        delete_run("r", active={run}, runs_dir=tmp_path / "runs")
    with pytest.raises(RunBusy, match="not a run directory"):
        delete_run("../../etc", runs_dir=tmp_path / "runs")
    assert run.is_dir() and status["status"] == "finished"
    delete_run("r", active=set(), runs_dir=tmp_path / "runs")
    assert not run.exists()


def test_temp_files_of_killed_writes_are_removed(tmp_path, small):
    run = _finished_run(tmp_path, small)
    junk = run / ".last.pt.abc123.tmp"
    junk.write_bytes(b"half a checkpoint")
    assert remove_stale_temp_files(tmp_path / "runs") == [junk]
    assert not junk.exists() and (run / "last.pt").exists()


def test_disk_full_fails_the_run_and_keeps_the_last_checkpoint(tmp_path, small, monkeypatch):
    import odenet.train.trainer as training

    real = training.save_checkpoint
    calls = {"n": 0}

    def full_disk(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # best.pt and last.pt of epoch 1 are written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", full_disk)
    cfg = TrainConfig.from_preset("default", train_size=256, batch_size=64, epochs=3, device="cpu", eval_size=64)
    res = Trainer(cfg, data=small, run_dir=tmp_path / "runs" / "full").run()  # no exception reaches the caller
    assert res.status == "failed" and "No space left on device" in res.message
    assert "last complete checkpoint is kept" in res.message
    model = load_model(tmp_path / "runs" / "full" / "last.pt")
    assert model.metrics["epoch"] == 1
    [info] = list_runs(tmp_path / "runs")
    assert info.status == "failed" and "No space left" in info.message


def test_a_job_belongs_to_its_session(tmp_path, small):
    from odenet.train.jobs import JobLimits, JobManager, NotYourJob

    m = JobManager(tmp_path / "runs", JobLimits(max_epochs=50, max_images=10**8), data_loader=lambda: small)
    try:
        snap = m.submit(TrainConfig.from_preset("default", train_size=512, batch_size=64, epochs=30, device="cpu"),
                        owner="alice")
        with pytest.raises(NotYourJob, match="started by another visitor"):
            m.stop(snap.id, requester="bob", presenter=False)
        assert m.snapshot(snap.id).status in ("queued", "running")
        assert m.stop(snap.id, requester="alice", presenter=False)
        assert m.wait(snap.id, timeout=60).status in ("stopped", "cancelled")
    finally:
        m.close()


def test_manager_start_removes_temp_files_left_by_a_killed_server(tmp_path, small):
    from odenet.train.jobs import JobManager

    run = _finished_run(tmp_path, small)
    (run / ".best.pt.x1y2.tmp").write_bytes(b"torn")
    JobManager(tmp_path / "runs")
    assert not list(run.glob(".*.tmp"))


def test_train_page_on_a_shared_server_needs_the_presenter_token(tmp_path, monkeypatch):
    import odenet.app.visitor as visitor
    from tests.support.apptest import page

    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ODENET_PRESENTER_TOKEN", "correct horse")
    monkeypatch.setattr(visitor, "server_is_public", lambda: True)
    at = page("train")
    assert at.button(key="btn_start").disabled
    at.text_input(key="_presenter_token").set_value("wrong").run()
    assert any("not the presenter token" in e.value for e in at.error) and at.button(key="btn_start").disabled
    at.text_input(key="_presenter_token").set_value("correct horse").run()
    assert not at.button(key="btn_start").disabled
    assert "correct horse" not in str(dict(at.query_params))  # never in a link


def test_train_page_reads_and_writes_its_settings_in_the_url(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.support.apptest import APP

    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page("pages/train.py")
    at.query_params.update({"integrator": "euler", "steps": "3", "preset": "notebook", "epochs": "abc"})
    at.run()
    assert not at.exception
    assert at.selectbox(key="tr_integ").value == "euler" and at.number_input(key="tr_steps").value == 3
    assert at.selectbox(key="tr_optimizer").value == "adam"  # the notebook recipe came with the link
    assert any("Ignored epochs='abc'" in w.value for w in at.warning)
    at.number_input(key="tr_steps").set_value(5).run()
    assert at.query_params["steps"] == "5" and at.query_params["integrator"] == "euler"
    from odenet.train.jobs import get_manager

    assert get_manager().jobs() == []  # a link never starts a job


def test_stopping_another_visitors_job_needs_a_confirmation(tmp_path, monkeypatch):
    from odenet.train.jobs import get_manager
    from tests.support.apptest import page
    from tests.support.jobs import stop_from_page, stopped_after

    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    mgr = get_manager()
    cfg = TrainConfig.from_preset("default", train_size=1024, batch_size=64, epochs=20, device="cpu")
    with stopped_after(mgr, mgr.submit(cfg, owner="alice")) as job:
        at = page("train")
        assert at.button(key="btn_stop").disabled  # someone else's job
        at.checkbox(key="confirm_stop_other").check().run()
        assert not at.button(key="btn_stop").disabled
        stop_from_page(at, mgr, job)


def test_expensive_page_work_is_limited_per_visitor(tmp_path, monkeypatch):
    from odenet.app.access import work_limiter
    from tests.support.apptest import page

    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    at = page("robustness")
    at.session_state["owner"] = "visitor-under-test"
    at.run()
    with work_limiter().slot("visitor-under-test", "another tab's grid"):  # the same visitor, busy elsewhere
        at.button(key="rob_run").click().run()
    assert not at.exception
    assert any("you already have 1 computation" in w.value for w in at.warning)
    assert work_limiter().running() == 0
