"""The Train page on the shared link helper: a lesson link locks the controls and names the settings,
Reset keeps the lesson, a link reproduces its recipe, and Stop's target is read in one call."""

import threading
import time

from odenet.train.config import APP_DEFAULT_RECIPE, TrainConfig
from odenet.train.jobs import JobManager, get_manager
from tests.support.apptest import open_link, page


def test_a_train_lesson_link_names_its_settings_and_reset_keeps_the_lesson(runs):
    at = open_link("train", preset="classroom", integrator="euler", steps="4", lesson="1")
    named = [c.value for c in at.caption if c.value.startswith("Recipe **classroom**")]
    assert named, [c.value for c in at.caption]
    assert "solver **euler x4**" in named[0] and "batch 64" in named[0] and "20,000 images" in named[0]
    at.button(key="btn_reset").click().run()
    assert not at.exception
    assert at.query_params["lesson"] == "1" and "preset" not in at.query_params  # defaults, still a lesson
    assert at.selectbox(key="tr_preset").value == APP_DEFAULT_RECIPE == "speedrun"
    assert at.selectbox(key="tr_integ").value == "rk4"
    assert any(c.value.startswith("Recipe **speedrun**") for c in at.caption)


def test_a_link_reproduces_its_recipe_over_the_visitors_own_changes(runs):
    at = page("train")
    at.number_input(key="tr_epochs").set_value(3).run()  # this visitor's own change to the default recipe
    at.query_params.clear()
    at.query_params.update({"preset": "default", "integrator": "euler"})  # a link opened in the same session
    at.run()
    assert at.selectbox(key="tr_integ").value == "euler"
    assert at.number_input(key="tr_epochs").value == TrainConfig.for_app("default").epochs  # the link's recipe


def test_stop_takes_its_target_in_one_read_of_the_manager(runs, monkeypatch):
    """The running job, else the first queued one, read at once: two reads (the queue, then the
    running job) could see the worker start or end a job in between."""
    def separate_read(self):
        raise AssertionError("the Train page read the queue apart from the running job")

    monkeypatch.setattr(JobManager, "queued", separate_read)
    mgr = get_manager()
    monkeypatch.setattr(mgr, "_ensure_worker", lambda: None)  # no worker: the job stays queued
    job = mgr.submit(TrainConfig.for_app("default", train_size=1024, device="cpu"), owner="alice")
    try:
        at = page("train")
        assert not at.exception
        assert at.button(key="btn_stop").disabled  # alice's job: a confirmation first
        at.checkbox(key="confirm_stop_other").check().run()
        at.button(key="btn_stop").click().run()
        assert mgr.snapshot(job.id).status == "cancelled"
    finally:
        mgr.stop(job.id)


def test_current_or_next_is_the_running_job_else_the_first_queued(tmp_path, monkeypatch):
    cfg = TrainConfig.for_app("default", train_size=1024, device="cpu")
    idle = JobManager(tmp_path / "idle")
    monkeypatch.setattr(idle, "_ensure_worker", lambda: None)  # no worker: nothing starts
    assert idle.current_or_next() is None
    a = idle.submit(cfg, owner="a")
    idle.submit(cfg, owner="b")
    nxt = idle.current_or_next()
    assert (nxt.id, nxt.status, nxt.queue_position) == (a.id, "queued", 1)
    idle.close()

    gate = threading.Event()

    def held_loader():  # keeps the first job "running" until the test lets it fail
        gate.wait(60)
        raise RuntimeError("released by the test")

    busy = JobManager(tmp_path / "busy", data_loader=held_loader)
    try:
        a, b = busy.submit(cfg, owner="a"), busy.submit(cfg, owner="b")
        deadline = time.monotonic() + 30
        while busy.current() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first = busy.current_or_next()
        assert (first.id, first.status) == (a.id, "running") and busy.snapshot(b.id).status == "queued"
    finally:
        gate.set()
        busy.close()
