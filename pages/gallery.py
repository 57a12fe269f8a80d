"""Class gallery: the drawings the room shares, live, for the presenter; Clear and New class."""

from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from odenet.app.nav import ensure_app_navigation
from odenet.app.room import NewClassPlan, NotPresenter, gallery, new_class, plan_new_class
from odenet.app.room_ui import SHARE_TEXT, drawing_wall
from odenet.app.state import keep
from odenet.app.visitor import presenter_access
from odenet.train.jobs import get_manager

ensure_app_navigation()
keep("gal_n")
st.title("Class gallery")
presenter = presenter_access()  # always on localhost; on a shared server after the presenter token
if not presenter:
    st.info("This is the presenter's view of the drawings the room shares, for the projector. To share yours, "
            "open **Draw a digit** and turn on *Share my drawings with the room*. " + SHARE_TEXT)
    st.caption("Presenter: enter the presenter token in the sidebar.")
    st.stop()

_MSG = "_gal_message"  # session key: the last action's outcome, shown once


def _clear() -> None:
    try:
        n = gallery().clear(presenter)
        st.session_state[_MSG] = ("success", f"Cleared {n} drawing{'s' if n != 1 else ''} from the gallery.")
    except NotPresenter as exc:
        st.session_state[_MSG] = ("error", str(exc))


def _new_class(runs: Sequence[Path], confirm_key: str) -> None:
    mgr = get_manager()
    try:
        res = new_class(presenter, active=mgr.active_run_dirs(), runs_dir=mgr.runs_dir, only=runs)
    except NotPresenter as exc:
        st.session_state[_MSG] = ("error", str(exc))
        return
    st.session_state.pop(confirm_key, None)
    text = (f"New class: deleted {len(res.deleted)} run{'s' if len(res.deleted) != 1 else ''} and cleared "
            f"{res.cleared} drawing{'s' if res.cleared != 1 else ''}.")
    if res.kept:
        text += " Kept: " + "; ".join(res.kept.values())
    st.session_state[_MSG] = ("warning" if res.kept else "success", text)


st.caption("The newest drawings the room shared from **Draw a digit**, updating every 3 s. Marked: 🚫 not a digit "
           "(red frame), ❌ not what the sharer said they drew (red), ⚠️ confidence under 60% (amber). "
           "Nothing here is written to disk.")
n = st.select_slider("Show the last", options=[24, 48, 96, 200], value=48, key="gal_n")
_NAMED = "_gal_named"  # session key: what the New class confirmation below names (drawings, runs)


def new_class_plan() -> tuple[NewClassPlan, tuple]:
    mgr = get_manager()
    plan = plan_new_class(active=mgr.active_run_dirs(), runs_dir=mgr.runs_dir)
    return plan, (plan.drawings, plan.fingerprint, len(plan.training))


plan, st.session_state[_NAMED] = new_class_plan()


@st.fragment(run_every="3s")
def wall(n: int) -> None:
    drawing_wall(n)
    if new_class_plan()[1] != st.session_state.get(_NAMED):  # a drawing or a run came or went: the
        st.rerun(scope="app")  # confirmation below must name what New class would delete now


wall(int(n))

st.divider()
if (msg := st.session_state.pop(_MSG, None)) is not None:
    getattr(st, msg[0])(msg[1])
left, right = st.columns(2)
with left:
    st.subheader("Clear the wall")
    st.caption("Takes every shared drawing down (students can share again).")
    st.button("Clear gallery", key="gal_clear", on_click=_clear, icon=":material/delete_sweep:")
with right:
    st.subheader("New class")
    st.caption("Start afresh for the next group: clear the gallery and delete the runs trained since this "
               "server started. Shipped models and runs from before the server started stay.")
    if plan.runs:
        with st.expander(f"The {len(plan.runs)} run(s) it deletes"):
            st.markdown("\n".join(f"- `{p.name}`" for p in plan.runs))
    # the key names the runs shown: a confirmation never covers runs that appeared after it was given
    confirm_key = f"gal_confirm_{plan.fingerprint}"
    sure = st.checkbox(f"Yes, {plan.summary()}", key=confirm_key)
    st.button("New class", key="gal_new_class", type="primary", disabled=not sure, on_click=_new_class,
              args=(plan.runs, confirm_key), icon=":material/restart_alt:")
