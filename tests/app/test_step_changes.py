"""Step adaptation is visible after the fact: the runs table names the solver a run ended
with, and the loss/accuracy curves mark where the step count changed (issue #16)."""

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from odenet import TrainConfig
from odenet.app.plots import training_curves
from odenet.train.runs import list_runs
from tests.support.apptest import APP


def _adapted_run(root, name="adapted"):
    """A finished run that started at rk4 x1 and whose step adaptation moved it to x4."""
    run = root / name
    run.mkdir(parents=True)
    cfg = TrainConfig.from_dict(dict(train_size=1000, epochs=2, integrator="rk4", steps=1, adapt_every=5))
    (run / "status.json").write_text(json.dumps({"status": "finished", "config": cfg.to_dict(), "best_test_acc": 0.9,
                                                 "final_test_acc": 0.9, "duration": 3.0, "final_solver": "rk4 x4"}))
    rows = [{"kind": "batch", "epoch": 1, "batch": b, "batches_per_epoch": 8, "train_loss": 2.0 / b,
             "train_acc": 0.1 * b} for b in range(1, 9)]
    rows.insert(2, {"kind": "solver", "epoch": 1, "batch": 2, "batches_per_epoch": 8, "solver_steps": 2})
    rows.insert(7, {"kind": "solver", "epoch": 1, "batch": 6, "batches_per_epoch": 8, "solver_steps": 4})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_runs_list_names_the_final_solver_and_where_it_started(tmp_path):
    _adapted_run(tmp_path)
    (info,) = list_runs(tmp_path)
    assert info.final_solver == "rk4 x4"
    assert info.solver_label == "rk4 x4 (from rk4 x1)"


def test_unchanged_solver_reads_as_before(tmp_path):
    run = _adapted_run(tmp_path)
    status = json.loads((run / "status.json").read_text())
    status["final_solver"] = "rk4 x1"
    (run / "status.json").write_text(json.dumps(status))
    assert list_runs(tmp_path)[0].solver_label == "rk4 x1"


def test_curves_mark_each_step_change(tmp_path):
    run = _adapted_run(tmp_path)
    df = pd.read_json(run / "metrics.jsonl", lines=True)
    loss, acc = training_curves({"adapted": df})
    for fig in (loss, acc):
        xs = sorted(shape.x0 for shape in fig.layout.shapes)
        assert xs == pytest.approx([2 / 8, 6 / 8])  # epoch fractions of the two changes
        assert sorted(a.text for a in fig.layout.annotations) == ["2 steps", "4 steps"]
    plain = df[df["kind"] != "solver"].drop(columns="solver_steps")
    loss, _ = training_curves({"plain": plain})
    assert not loss.layout.shapes


def test_train_page_keep_it_an_ode_controls_and_runs_table(runs, tmp_path):
    _adapted_run(tmp_path / "runs")
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.number_input(key="tr_kinetic").set_value(1e-3).run()
    at.number_input(key="tr_adapt_every").set_value(10).run()
    assert not at.sidebar.error and not at.button(key="btn_start").disabled
    at.number_input(key="tr_steer").set_value(1.0).run()  # t1 - t0 = 1: the end time could reach t0
    assert any(e.value.startswith("steer") for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert at.button(key="btn_start").disabled
    table = at.dataframe[0].value
    row = table[table["run"] == "adapted"].iloc[0]
    assert row["solver"] == "rk4 x4 (from rk4 x1)"
