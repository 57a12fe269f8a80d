"""AppTests for issue #16's views: the adaptive solver's inner life on the Integrators and
Trajectories pages (step log, per-image cost); the Robustness page's ODE-ness gap is checked in
tests/app/test_app.py."""

import re

from tests.support.apptest import page


def _counts(text: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) accepted and (\d+) rejected steps, (\d+) evaluations", text)
    assert m, text
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_integrators_adaptive_section_counts_follow_the_tolerance(runs):
    at = page("integrators")
    captions = [c.value for c in at.caption if "accepted and" in c.value]
    acc_loose, rej_loose, nfe_loose = _counts(captions[0])
    assert at.get("plotly_chart")  # the step-size timeline is drawn
    # dopri5 is FSAL: 6 new evaluations per attempted step, whatever its outcome, plus the first slope
    # and one trial evaluation that chooses the initial step size
    assert nfe_loose == 6 * (acc_loose + rej_loose) + 2
    at.select_slider(key="int_rtol").set_value(1e-8).run()
    assert not at.exception
    acc_tight, rej_tight, nfe_tight = _counts(next(c.value for c in at.caption if "accepted and" in c.value))
    assert acc_tight > 2 * acc_loose and nfe_tight == 6 * (acc_tight + rej_tight) + 2


def test_trajectories_adaptive_step_log_and_per_image_cost(runs):
    at = page("trajectories")
    at.slider(key="traj_n").set_value(5).run()
    at.checkbox(key="traj_adaptive").check().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Inside the adaptive solver" for s in at.subheader)
    assert at.caption[0].value.startswith("dopri5 adaptive")
    at.button(key="btn_traj_cost").click().run()
    assert not at.exception, [e.value for e in at.exception]
    df = at.dataframe[0].value
    assert len(df) == 16 and {"alone", "in batch", "accepted", "rejected"} <= set(df.columns)
    assert df["in batch"].nunique() == 1 and (df["alone"] >= 7).all()  # at least one dopri5 step each
    assert any("evaluations for every image" in c.value for c in at.caption)
