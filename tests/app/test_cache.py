"""The app's one cache (odenet.app.cache.get_or_compute on odenet.utils.BoundedLRU): bounded, safe
under concurrent use, and a miss of expensive work (an ONNX export too) needs a work slot."""

import threading
import time

import pytest

from odenet.app import cache, visitor
from odenet.app.access import Busy, work_limiter
from odenet.inspect.digitcheck import digit_stats
from odenet.ode.integrators import get_method
from odenet.train.checkpoints import load_model
from odenet.train.runs import available_models
from odenet.utils import BoundedLRU
from tests.support.apptest import page
from tests.support.concurrency import run_in_threads

VISITOR = "visitor-under-test"


@pytest.fixture
def as_visitor(monkeypatch):
    """Outside a Streamlit session: this test's computations count against one visitor."""
    monkeypatch.setattr(visitor, "visitor_id", lambda: VISITOR)
    return VISITOR


def test_concurrent_misses_of_one_key_compute_once():
    lru, calls = BoundedLRU(4), []
    start = threading.Barrier(8)
    results = []

    def compute():
        calls.append(1)
        time.sleep(0.2)  # long enough for every other thread to arrive while it runs
        return object()

    def ask(_: int) -> None:
        start.wait()
        results.append(lru.get_or_compute("k", compute))

    run_in_threads(ask, 8)
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)


def test_a_slow_key_does_not_hold_up_another_and_a_failed_compute_is_retried():
    lru = BoundedLRU(4)
    release, started = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "slow"

    t = threading.Thread(target=lambda: lru.get_or_compute("slow", slow))
    t.start()
    assert started.wait(10)
    t0 = time.monotonic()
    assert lru.get_or_compute("fast", lambda: "fast") == "fast"
    assert time.monotonic() - t0 < 1.0  # not queued behind the slow key
    release.set()
    t.join()
    with pytest.raises(RuntimeError):
        lru.get_or_compute("flaky", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert "flaky" not in lru and lru.get_or_compute("flaky", lambda: 42) == 42


def test_each_kind_keeps_at_most_its_bound(as_visitor):
    cache.clear("step_view")
    bound = cache.KINDS["step_view"].max_entries
    for i in range(bound + 3):
        assert cache.get_or_compute(("step_view", "bound-test", i), lambda i=i: i * i) == i * i
    kept = [i for i in range(bound + 3) if cache.peek(("step_view", "bound-test", i)) is not None]
    assert kept == list(range(3, bound + 3))  # the least recently used went first
    with pytest.raises(KeyError, match="starting with one of"):
        cache.get_or_compute(("no such kind", 1), lambda: 1)
    cache.clear("step_view")


def test_a_miss_takes_a_work_slot_and_a_hit_does_not(as_visitor):
    cache.clear("robustness")
    seen = []
    value = cache.get_or_compute(("robustness", "slot-test", 1), lambda: seen.append(work_limiter().running()) or "v")
    assert value == "v" and seen == [1]  # computed inside one slot
    assert work_limiter().running() == 0  # and the slot is back
    with work_limiter().slot(VISITOR, "another tab's grid"):  # this visitor is busy elsewhere
        assert cache.get_or_compute(("robustness", "slot-test", 1), lambda: "never") == "v"  # a hit: no slot
        with pytest.raises(Busy, match="Robustness grid: you already have 1 computation"):
            cache.get_or_compute(("robustness", "slot-test", 2), lambda: "never", on_busy="raise")
        assert cache.get_or_compute(("model", "cheap-test", 1), lambda: "cheap") == "cheap"  # cheap kinds need none
    cache.clear("robustness")
    cache.clear("model")


def test_waiting_for_a_computation_under_way_needs_no_work_slot(as_visitor):
    """A second tab (the same visitor, its one slot taken by the first) asking for the grid the
    first is computing waits for that result instead of being refused."""
    cache.clear("robustness")
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "grid"

    first = threading.Thread(target=lambda: cache.get_or_compute(("robustness", "shared", 1), slow, on_busy="raise"))
    first.start()
    assert started.wait(10) and work_limiter().running() == 1
    threading.Timer(0.3, release.set).start()
    assert cache.get_or_compute(("robustness", "shared", 1), lambda: "again", on_busy="raise") == "grid"
    first.join()
    assert work_limiter().running() == 0
    cache.clear("robustness")


def test_an_onnx_export_waits_for_a_work_slot_like_other_heavy_work(as_visitor):
    cache.clear("onnx")
    model, rk4 = load_model("rk4_1step"), get_method("rk4")
    with work_limiter().slot(VISITOR, "another tab's grid"):
        with pytest.raises(Busy, match="ONNX export: you already have 1 computation"):
            cache.cached_onnx_bytes(model, rk4, 1, 0.0, 1.0, key=("slot-test", 1))
    first = cache.cached_onnx_bytes(model, rk4, 1, 0.0, 1.0, key=("slot-test", 1))
    with work_limiter().slot(VISITOR, "another tab's grid"):  # now a hit: served without a slot
        assert cache.cached_onnx_bytes(model, rk4, 1, 0.0, 1.0, key=("slot-test", 1)) is first
    assert cache.cached_onnx_bytes(model, get_method("euler"), 2, 0.0, 1.0, key=("slot-test", 1)) != first
    cache.clear("onnx")


def test_the_draw_page_classifies_on_the_server_while_no_slot_is_free_for_its_export():
    cache.clear("onnx")
    at = page("draw")
    assert any("Predictions run in your browser" in c.value for c in at.caption)  # after a free export
    cache.clear("onnx")
    at.session_state["owner"] = VISITOR
    with work_limiter().slot(VISITOR, "another tab's grid"):
        at.run()
    assert not at.exception
    told = [c.value for c in at.caption if c.value.startswith("Predictions run on the server")]
    assert told and "ONNX export: you already have 1 computation" in told[0], [c.value for c in at.caption]
    assert work_limiter().running() == 0
    digit_stats(cache.cached_model(available_models()[0].path))  # the page's background fit ends here, not at exit


def test_live_curves_are_built_once_per_report_for_every_watcher(monkeypatch):
    """The Train page's live charts: every visitor watching a job between two reports gets the same
    figures (built once), and a new report builds new ones."""
    from odenet.app import plots
    from odenet.train.config import TrainConfig
    from odenet.train.jobs import JobSnapshot
    from odenet.train.trainer import TrainEvent

    cache.clear("live")
    built: list[int] = []
    real = plots.training_curves
    monkeypatch.setattr(plots, "training_curves", lambda runs: built.append(1) or real(runs))

    def snap(n: int) -> JobSnapshot:
        events = tuple(TrainEvent("batch", epoch=1, batch=b, batches_per_epoch=10, step=b, total_steps=10,
                                  elapsed=float(b), train_loss=2.0 / b, train_acc=0.1 * b) for b in range(1, n + 1))
        return JobSnapshot(7, TrainConfig(), "someone", "running", None, 0.0, 0.0, None, events, "", None, None)

    watchers = [cache.cached_live_curves(snap(3)) for _ in range(5)]  # five visitors' refreshes, one report
    assert len(built) == 1 and all(w[1] is watchers[0][1] and w[2] is watchers[0][2] for w in watchers)
    df, loss, _ = cache.cached_live_curves(snap(4))  # the next report
    assert len(built) == 2 and len(df) == 4 and loss is not watchers[0][1]
    assert list(loss.data[0].y) == pytest.approx([2.0, 1.0, 2 / 3, 0.5])
