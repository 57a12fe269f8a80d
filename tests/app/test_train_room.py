"""Issue 26 on the Train page: control follows the person, watchers see the end, recipes say
what they run (and how long it takes here), lesson links, downloads that always work, and the
small traps of the runs list."""

import json
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

import odenet.app.visitor as app_visitor
from odenet.app.identity import browser_owner, forget_presenters, is_remembered_presenter
from odenet.app.links import link_box_key
from odenet.app.training_view import FEW_IMAGES, verdict
from odenet.train.config import APP_PURPOSE, PRESETS, TrainConfig
from odenet.train.jobs import JobManager, get_manager
from odenet.train.throughput import (
    TEST_SIZE,
    Speed,
    SpeedBook,
    describe_run,
    evaluations,
    expected_seconds,
    probe_speed,
    speed_from_events,
)
from tests.support.apptest import APP, page
from tests.support.jobs import stop_from_page, stopped_after


def tiny(**kw) -> TrainConfig:
    return TrainConfig.for_app("default", train_size=1024, batch_size=128, device="cpu", **kw)


def as_browser(monkeypatch, owner: str | None) -> None:
    """Make every session in this test look like it comes from one browser (the cookie's owner)."""
    monkeypatch.setattr(app_visitor, "browser_id", lambda: owner)


# -- who controls a job ---------------------------------------------------------------------------

def test_browser_owner_is_a_hash_of_a_valid_cookie_only():
    a = browser_owner("0123456789abcdef0123456789abcdef")
    assert a is not None and a.startswith("browser-") and "0123456789abcdef" not in a  # never the cookie itself
    assert browser_owner("0123456789abcdef0123456789abcdef") == a  # stable: a reload is the same browser
    assert browser_owner("fedcba9876543210fedcba9876543210") != a  # another browser
    for bad in (None, "", "short", "../../x", "Z" * 32, 12345, object()):
        assert browser_owner(bad) is None


def test_the_starter_keeps_stop_after_a_reload_another_browser_does_not(runs, monkeypatch):
    mgr = get_manager()
    as_browser(monkeypatch, "browser-teacher")
    at = page("train")
    at.select_slider(key="tr_train_size").set_value(60000)  # long enough to still run after the reload
    at.button(key="btn_start").click().run()
    with stopped_after(mgr, mgr.current() or mgr.queued()[0]) as job:
        assert job.owner == "browser-teacher"
        reloaded = page("train")  # a new session: what a reload or a second tab is
        assert not reloaded.button(key="btn_stop").disabled  # no "another visitor's job" in the way
        assert not [c for c in reloaded.checkbox if c.key == "confirm_stop_other"]
        as_browser(monkeypatch, "browser-student")
        other = page("train")
        assert other.button(key="btn_stop").disabled  # localhost: allowed, but only after the confirmation
        assert [c for c in other.checkbox if c.key == "confirm_stop_other"]
        as_browser(monkeypatch, "browser-teacher")
        reloaded.run()
        stop_from_page(reloaded, mgr, job)


def test_the_presenter_stays_the_presenter_after_a_reload(runs, monkeypatch):
    forget_presenters()
    monkeypatch.setenv("ODENET_PRESENTER_TOKEN", "correct horse")
    monkeypatch.setattr(app_visitor, "server_is_public", lambda: True)
    as_browser(monkeypatch, "browser-presenter")
    at = page("train")
    at.text_input(key="_presenter_token").set_value("correct horse").run()
    assert not at.button(key="btn_start").disabled
    assert is_remembered_presenter("browser-presenter")
    reloaded = page("train")  # the session is new, the browser is not
    assert not reloaded.button(key="btn_start").disabled
    as_browser(monkeypatch, "browser-visitor")
    visitor = page("train")
    assert visitor.button(key="btn_start").disabled
    as_browser(monkeypatch, None)  # a browser that has not reported its id yet: a visitor too
    assert page("train").button(key="btn_start").disabled
    forget_presenters()


def test_a_watcher_sees_the_final_verdict_and_the_new_run(runs, monkeypatch):
    mgr = get_manager()
    as_browser(monkeypatch, "browser-watcher")
    watcher = page("train")
    job = mgr.submit(tiny(), owner="browser-teacher")
    deadline = time.monotonic() + 60
    while (mgr.snapshot(job.id).status == "queued") and time.monotonic() < deadline:
        time.sleep(0.1)
    watcher.run()  # the watcher's live view shows the teacher's job ...
    assert any(f"Job #{job.id}" in p.proto.text for p in watcher.get("progress"))
    done = mgr.wait(job.id, timeout=180)
    assert done.status == "finished"
    watcher.run()  # ... and, after it ended, how it ended, not "no job is running"
    assert not watcher.exception
    assert not any("No training job is running" in i.value for i in watcher.info)
    ended = [m.value for m in [*watcher.success, *watcher.warning] if "It is now selectable" in m.value]
    assert ended and done.run_dir.name in ended[0]
    assert "Only 1,024 training images were seen" in ended[0]  # the real cause of a short run's low accuracy
    assert done.run_dir.name in list(watcher.dataframe[0].value["run"])


# -- recipes ---------------------------------------------------------------------------------------

def test_app_recipes_differ_and_say_what_they_run():
    cfgs = {name: TrainConfig.for_app(name) for name in PRESETS}
    assert cfgs["fast"].train_size == 60_000 and cfgs["default"].train_size == 30_000  # fast is not default again
    assert cfgs["speedrun"].train_size == 45_000  # the speedrun budget
    assert cfgs["classroom"].train_size == 20_000 and cfgs["classroom"].batch_size == 64
    assert all(c.epochs == 1 for c in cfgs.values())
    assert "20 epochs" in APP_PURPOSE["notebook"] and set(APP_PURPOSE) == set(PRESETS)
    # the CLI's presets are the full recipes
    assert TrainConfig.from_preset("notebook").epochs == 20 and TrainConfig.from_preset("fast").epochs == 3
    assert TrainConfig.from_preset("speedrun").train_size == 45_000


def test_expected_time_counts_training_and_every_evaluation():
    cfg = TrainConfig.for_app("classroom")  # 312 batches of 64, evaluations every 78 batches
    assert evaluations(cfg) == [1000, 1000, 1000, TEST_SIZE]
    speed = Speed(train_ips=300.0, eval_ips=1000.0, source="test")
    assert expected_seconds(cfg, speed) == pytest.approx(1.0 + 312 * 64 / 300 + 13_000 / 1000)
    text = describe_run(cfg, speed)
    assert "1 epoch × 20,000 training images" in text and "about 1 min 21 s on this server" in text
    assert "3 evaluations on 1,000 test images and 1 on all 10,000" in text
    assert "not measured yet" in describe_run(cfg, None) and "measuring" in describe_run(cfg, None, probing=True)


def test_the_recipe_picker_shows_the_time_measured_here(runs, monkeypatch):
    from odenet.train.throughput import speed_book

    at = page("train")
    opts = at.selectbox(key="tr_preset").options
    assert "fast · 1 epoch × 60,000 images" in opts and "speedrun · 1 epoch × 45,000 images" in opts
    assert "classroom · 1 epoch × 20,000 images" in opts, opts
    speed_book().record(TrainConfig.for_app("classroom"), Speed(300.0, 1000.0, "test"))
    at.selectbox(key="tr_preset").set_value("classroom").run()
    assert any(c.value.startswith("This run: 1 epoch × 20,000 training images") and "1 min 21 s" in c.value
               for c in at.caption)


def test_a_probe_measures_this_machine_and_waits_for_a_quiet_moment(monkeypatch):
    cfg = TrainConfig.for_app("default", train_size=2048, batch_size=32, device="cpu")
    speed = probe_speed(cfg, batches=4)
    assert speed.train_ips > 10 and speed.eval_ips > speed.train_ips  # inference is faster than training
    monkeypatch.setenv("ODENET_SPEED_PROBE", "1")
    book = SpeedBook()
    assert book.request(cfg, busy=True) is False and book.get(cfg) is None  # never while a job trains
    assert book.request(cfg, busy=False) is True
    deadline = time.monotonic() + 120
    while book.get(cfg) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert book.get(cfg) is not None and book.request(cfg, busy=False) is False  # measured once


def test_a_finished_job_records_its_speed(tmp_path):
    mgr = JobManager(runs_dir=tmp_path / "runs")
    cfg = tiny()
    done = mgr.wait(mgr.submit(cfg).id, timeout=180)
    speed = speed_from_events(done.events, cfg, "job")
    assert speed is not None and speed.train_ips > 10 and speed.eval_ips > 10
    from odenet.train.throughput import speed_book

    assert speed_book().get(cfg) is not None


def test_short_run_verdict_names_too_few_images():
    from odenet.train.trainer import TrainEvent
    from tests.support.jobs import snapshot

    cfg = TrainConfig.for_app("default", train_size=1000)
    events = [TrainEvent("batch", epoch=1, batch=7, batches_per_epoch=7, step=7, train_loss=2.0, train_acc=0.2),
              TrainEvent("eval", epoch=1, batch=7, batches_per_epoch=7, step=7, test_acc=0.19)]
    why = verdict(snapshot(events, status="finished", config=cfg, best=0.19))
    assert why.startswith("Only 896 training images were seen") and "learning rate" not in why
    assert FEW_IMAGES == 10_000


# -- links, downloads, the runs list ---------------------------------------------------------------

def open_train(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.query_params.update(query)
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_lesson_link_and_copy_link_box(runs):
    at = open_train(preset="classroom", integrator="euler", steps="4", lesson="1")
    assert any("Lesson view" in c.value for c in at.sidebar.caption)
    assert any("odenet_locked" in str(h.proto) for h in at.get("html"))
    assert at.selectbox(key="tr_preset").value == "classroom" and at.selectbox(key="tr_integ").value == "euler"
    assert at.query_params["lesson"] == "1" and at.query_params["steps"] == "4"
    assert at.number_input(key="tr_batch").value == 64  # the recipe came with the link
    at.session_state[link_box_key("train")] = True
    at.run()
    links = [c.value for c in at.code]
    assert len(links) == 2 and "/train?" in links[0] and "preset=classroom" in links[0] and "lesson=1" in links[1]


def _second_run(runs):
    src = runs / "fixture-run"
    dst = runs / "20261203-101500-rk4x1"
    shutil.copytree(src, dst)
    status = json.loads((dst / "status.json").read_text())
    status["config"]["preset"] = "classroom"
    (dst / "status.json").write_text(json.dumps(status))
    return dst


def test_downloads_keep_their_address_across_reruns(runs):
    _second_run(runs)
    at = page("train")
    urls = [b.proto.url for b in at.get("download_button")]
    assert len(urls) == 2 and all(urls)
    at.multiselect(key="cmp_runs").set_value(["fixture-run", "20261203-101500-rk4x1"]).run()
    assert [b.proto.url for b in at.get("download_button")] == urls  # a click during the rerun still finds them


def test_runs_list_shows_no_none_and_names_runs_by_recipe_and_solver(runs):
    _second_run(runs)
    at = page("train")
    df = at.dataframe[0].value
    assert "None" not in df.astype(str).to_numpy().ravel().tolist() and "nan" not in df.astype(str).to_numpy().ravel()
    at.multiselect(key="cmp_runs").set_value(["fixture-run", "20261203-101500-rk4x1"]).run()
    names = {t.get("name", "") for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]}
    assert any(n.startswith("classroom · rk4 x1 · 10:15:00") for n in names), names
    assert any(n.startswith("default · rk4 x1 · fixture-run") for n in names), names
    assert at.number_input(key="tr_kinetic").proto.format == "%g"  # 0, not "0e+0"


def test_after_a_delete_the_confirmation_is_unticked(runs):
    second = _second_run(runs)
    at = page("train")
    at.selectbox(key="del_run").set_value(second.name).run()
    at.checkbox(key=f"del_confirm_{second.name}").check().run()
    at.button(key="btn_delete").click().run()
    assert not second.exists()
    boxes = [c for c in at.checkbox if c.key.startswith("del_confirm_")]
    assert boxes and not any(c.value for c in boxes) and "fixture-run" in boxes[0].label
    assert at.button(key="btn_delete").disabled


def test_every_recipe_size_is_on_the_training_images_slider(runs):
    at = page("train")
    for name in PRESETS:
        at.selectbox(key="tr_preset").set_value(name).run()
        assert at.select_slider(key="tr_train_size").value == TrainConfig.for_app(name).train_size, name


def test_a_starting_job_stops_the_probe_and_no_probe_starts_while_it_trains(monkeypatch):
    monkeypatch.setenv("ODENET_SPEED_PROBE", "1")
    cfg = TrainConfig.for_app("default", train_size=60_000, batch_size=32, device="cpu")
    book = SpeedBook()
    real_probe = probe_speed

    def slow_probe(c, **kw):  # 400 batches: would run for a while unless stopped
        return real_probe(c, batches=400, **kw)

    monkeypatch.setattr("odenet.train.throughput.probe_speed", slow_probe)
    assert book.request(cfg, busy=False)
    time.sleep(1.0)
    t = time.monotonic()
    book.give_way()  # what the job manager does before a job
    assert time.monotonic() - t < 20 and not book.probing()
    assert book.get(cfg) is None  # a stopped probe measured nothing
    assert book.request(cfg, busy=False) is False  # not while the job trains
    book.job_done()
    assert book.request(cfg, busy=False) is True  # afterwards it may run again
    book.give_way()
    book.job_done()


def test_runs_table_mixes_missing_and_measured_values(runs):
    """A run without an accuracy or duration beside one with them: one table, text cells, no None."""
    second = _second_run(runs)
    status = json.loads((second / "status.json").read_text())
    status.pop("best_test_acc")
    status.pop("duration")
    (second / "status.json").write_text(json.dumps(status))
    at = page("train")
    assert not at.exception
    df = at.dataframe[0].value
    row = df[df["run"] == second.name].iloc[0]
    assert row["test acc (%)"] == "" and row["duration (s)"] == ""
    assert df[df["run"] == "fixture-run"].iloc[0]["test acc (%)"] == "10.00"
