"""Train RKNet live: controls -> TrainConfig -> background job; a fragment polls and plots."""

import time
from glob import escape as glob_escape

import pandas as pd
import streamlit as st

from odenet.app import plots
from odenet.app.cache import cached_live_curves, cached_model, file_version, get_or_compute, peek
from odenet.app.links import PageLink, locked_controls
from odenet.app.nav import ensure_app_navigation
from odenet.app.state import all_methods, forget, keep
from odenet.app.training_view import (
    FEW_IMAGES,
    TRAIN_SIZES,
    elsewhere_text,
    end_text,
    eta_text,
    eval_label,
    progress_text,
    queued_text,
    recipe_line,
    recipe_values,
    resumable_runs,
    resume_label,
    runs_table,
    setting_warnings,
    settings_line,
)
from odenet.app.urlstate import Param
from odenet.app.visitor import owner_id, presenter_access
from odenet.app.widgets import require_mnist
from odenet.data.mnist import TEST_SIZE
from odenet.inspect.analysis import REFERENCE_SOLVER, adaptive_cost
from odenet.model.rknet import ModelConfig
from odenet.ode.gradients import GRADIENT_METHODS
from odenet.ode.integrators import METHODS as BUILTIN
from odenet.ode.integrators import method_spec
from odenet.train.config import (
    APP_DEFAULT_RECIPE,
    APP_PURPOSE,
    APP_TOLERANCE,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    ConfigError,
    TrainConfig,
)
from odenet.train.jobs import JobRejected, get_manager
from odenet.train.runs import RunBusy, delete_run, list_runs, read_metrics
from odenet.train.throughput import describe_run, speed_book
from odenet.train.trainer import ADAPT_HOLDOUT

ensure_app_navigation()
keep("tr_*")
st.title("Train RKNet live")
mgr = get_manager()
owner = owner_id()  # the browser: a reload or a second tab keeps control of a job, another browser does not
model_defaults, train_defaults = ModelConfig(), TrainConfig()


def apply_preset() -> None:
    st.session_state.update(recipe_values(st.session_state["tr_preset"]))


# the form's fields travel in the URL (a link reproduces the settings; it never starts a job); the
# recipe's fields default to the recipe's values (None here)
URL_PARAMS = [Param("preset", "choice", APP_DEFAULT_RECIPE, choices=list(PRESETS)),
              Param("integrator", "choice", model_defaults.integrator, choices=lambda: list(all_methods())),
              Param("steps", "int", model_defaults.steps, lo=1, hi=32),
              Param("t1", "float", model_defaults.t1, lo=-1e3, hi=1e3),
              Param("gradient", "choice", model_defaults.gradient, choices=list(GRADIENT_METHODS)),
              Param("epochs", "int", None, lo=1, hi=mgr.limits.max_epochs), Param("batch", "int", None, lo=8, hi=1024),
              Param("lr", "float", None, lo=1e-8, hi=10.0), Param("train_size", "choice", None, choices=TRAIN_SIZES),
              Param("seed", "int", train_defaults.seed, lo=0, hi=10**6)]
URL_KEYS = {"integrator": "tr_integ", "steps": "tr_steps", "t1": "tr_t1", "gradient": "tr_gradient",
            "epochs": "tr_epochs", "batch": "tr_batch", "lr": "tr_lr", "train_size": "tr_train_size", "seed": "tr_seed"}

link = PageLink("train", URL_PARAMS)
if "tr_preset" not in st.session_state or link.fresh:  # a link's recipe first, then the fields it names
    st.session_state["tr_preset"] = link.values["preset"]
    apply_preset()
link.seed({key: link.values[name] for name, key in URL_KEYS.items() if link.values[name] is not None})
METHODS = all_methods()  # built-in plus this visitor's own methods from the Integrators page

with st.sidebar, locked_controls(link.lesson):
    st.header("Run settings")
    st.selectbox("Recipe", list(PRESETS), key="tr_preset", on_change=apply_preset, format_func=recipe_line,
                 help="What each recipe runs in this app and how long it takes on this server is shown under the "
                      "picker; the CLI runs the full recipes (python -m odenet train --preset NAME).")
    st.caption(f"**{st.session_state['tr_preset']}**: {APP_PURPOSE[st.session_state['tr_preset']]}.")
    integ = st.selectbox("Integrator", list(METHODS), key="tr_integ",
                         index=list(METHODS).index(model_defaults.integrator),
                         format_func=lambda k: f"{k} ({METHODS[k].name}, order {METHODS[k].order})")
    adaptive = METHODS[integ].adaptive and st.checkbox("Adaptive steps", key="tr_adaptive",
                                                       help="Use the embedded error estimate.")
    if adaptive:
        c1, c2 = st.columns(2)
        rtol = c1.number_input("rtol", value=APP_TOLERANCE, format="%.0e", key="tr_rtol")
        atol = c2.number_input("atol", value=APP_TOLERANCE, format="%.0e", key="tr_atol")
        steps = model_defaults.steps
    else:
        rtol, atol = model_defaults.rtol, model_defaults.atol
        steps = st.number_input("Steps", min_value=1, max_value=32, value=model_defaults.steps, key="tr_steps")
    t1 = st.number_input("t1 (integrate from 0 to t1)", value=model_defaults.t1, step=0.5, key="tr_t1")
    slots = {"t1": st.empty()}
    gradient = st.selectbox("Gradient", GRADIENT_METHODS, key="tr_gradient",
                            help="backprop: store every stage (memory grows with steps). adjoint: solve backwards "
                                 "in time, constant memory. discrete_adjoint: constant memory too, and backprop's "
                                 "gradient up to the error of reconstructing the states backwards (slower). "
                                 "checkpoint: recompute each step. See Gradients & memory.")
    c1, c2 = st.columns(2)
    epochs = c1.number_input("Epochs", min_value=1, max_value=mgr.limits.max_epochs, key="tr_epochs")
    batch = c2.number_input("Batch size", min_value=8, max_value=1024, step=32, key="tr_batch")
    slots["batch_size"] = slots["epochs"] = st.empty()
    c1, c2 = st.columns(2)
    optimizer = c1.selectbox("Optimizer", OPTIMIZERS, key="tr_optimizer")
    schedule = c2.selectbox("LR schedule", SCHEDULES, key="tr_schedule")
    lr = st.number_input("Learning rate", min_value=0.0, format="%.3g", step=1e-3, key="tr_lr")
    slots["lr"] = st.empty()
    train_size = st.select_slider("Training images", TRAIN_SIZES, key="tr_train_size",
                                  help=f"Below {FEW_IMAGES:,} images RKNet does not get far (1,000 end near 20%); the "
                                       "classroom recipe's 20,000 reach 97%; 60,000 is the full set.")
    slots["train_size"] = st.empty()
    augment = st.checkbox("Augmentation (small shifts/rotations)", key="tr_augment")
    seed = st.number_input("Seed", min_value=0, value=train_defaults.seed, key="tr_seed")
    with st.expander("Keep it an ODE", expanded=False):
        st.caption("Train a model that any accurate solver agrees with, and that the adaptive solver finds cheap.")
        kinetic = st.number_input("Kinetic energy weight", min_value=0.0, value=0.0, format="%g", step=1e-4,
                                  key="tr_kinetic", help="λ · mean ||f(t, h)||² over the solve (Finlay et al. 2020).")
        jacobian = st.number_input("Jacobian norm weight", min_value=0.0, value=0.0, format="%g", step=1e-4,
                                   key="tr_jacobian", help="λ · Hutchinson estimate of ||∂f/∂h||²_F (Finlay et al. "
                                                           "2020); about doubles the cost of a batch.")
        steer = st.number_input("STEER half-width b", min_value=0.0, value=0.0, step=0.1, key="tr_steer",
                                help="Each batch integrates to t1 + U(-b, b); evaluation uses t1 (Ghosh et al. 2020).")
        adapt_every = st.number_input("Step adaptation every N batches (0 = off)", min_value=0, value=0,
                                      key="tr_adapt_every", help="Compare accuracy with the steps and twice the steps "
                                      f"on {ADAPT_HOLDOUT} held-out training images; double the steps when they differ "
                                      "by more than the threshold (Ott et al. 2021).")
        adapt_threshold = st.number_input("Adaptation threshold (accuracy points)", min_value=0.0, max_value=100.0,
                                          value=100 * train_defaults.adapt_threshold, step=0.1, key="tr_adapt_thr")
    slots["kinetic"] = slots["jacobian"] = slots["steer"] = slots["adapt_every"] = slots["adapt_threshold"] = \
        slots["adapt_max_steps"] = st.empty()
    name = st.text_input("Run name (optional)", key="tr_name", placeholder="e.g. euler-demo")
    slots["other"] = st.empty()

config, problem = None, None
try:
    config = TrainConfig.for_app(
        st.session_state["tr_preset"], integrator=integ, steps=int(steps),
        custom_tableau=None if integ in BUILTIN else method_spec(METHODS[integ]), t1=float(t1), adaptive=adaptive,
        gradient=gradient, rtol=float(rtol), atol=float(atol), epochs=int(epochs), batch_size=int(batch),
        optimizer=optimizer, lr=float(lr), schedule=schedule, train_size=int(train_size), augment=augment,
        seed=int(seed), kinetic=float(kinetic), jacobian=float(jacobian), steer=float(steer),
        adapt_every=int(adapt_every), adapt_threshold=float(adapt_threshold) / 100,
        adapt_max_steps=max(train_defaults.adapt_max_steps, int(steps)))
    mgr.limits.check(config)
except (ConfigError, JobRejected) as exc:
    problem = str(exc)
if problem:  # next to the control it concerns (the message starts with the field's name)
    slots[next((f for f in slots if problem.startswith(f)), "other")].error(problem)
else:
    for field, text in setting_warnings(float(t1), float(lr), optimizer).items():
        slots[field].warning(text)

recipe = recipe_values(st.session_state["tr_preset"])
link.publish({"preset": st.session_state["tr_preset"], "integrator": integ, "steps": int(steps), "t1": float(t1),
              "gradient": gradient, "seed": int(seed), "epochs": int(epochs), "batch": int(batch), "lr": float(lr),
              "train_size": int(train_size)},
             defaults={"epochs": recipe["tr_epochs"], "batch": recipe["tr_batch"], "lr": recipe["tr_lr"],
                       "train_size": recipe["tr_train_size"]})
if config is not None:  # what this run does and how long it takes on this server (measured: odenet.train.throughput)
    if link.lesson:  # the settings are hidden: say what the link chose
        st.caption(settings_line(config))
    book = speed_book()
    probing = book.request(config, busy=mgr.current() is not None)
    st.caption(f"This run: {describe_run(config, book.get(config), probing)}")

can_control = presenter_access()  # always on localhost; on a shared server after the presenter token
mine = st.session_state.get("watch_job")
bar = st.container(horizontal=True, vertical_alignment="center", gap="small")  # the buttons side by side
c1, c2, c3, c4 = (bar.container(width="content") for _ in range(4))  # filled below in another order
if c1.button("▶ Start", type="primary", disabled=config is None or not can_control, key="btn_start",
             help=None if can_control else "On this shared server only the presenter starts runs.") \
        and can_control and config is not None:  # checked again: a disabled button is not enforced server-side
    if require_mnist() is not None:
        try:
            mine = st.session_state["watch_job"] = mgr.submit(config, name=name.strip() or None, owner=owner).id
            time.sleep(0.3)  # let the worker pick it up so the first render shows it running
        except (JobRejected, ValueError) as exc:
            st.error(str(exc))
all_runs = list_runs(active=mgr.active_run_dirs())
if can_control and (resumable := {r.name: r for r in resumable_runs(all_runs)}):
    r1, r2 = st.columns([4, 1], vertical_alignment="bottom")
    again = r1.selectbox("Resume an interrupted or stopped run from its last checkpoint", list(resumable),
                         key="tr_resume_run", format_func=lambda n: resume_label(resumable[n]) if n in resumable else n)
    if r2.button("⏵ Resume", key="btn_resume", disabled=again not in resumable) and again in resumable:
        try:
            mine = st.session_state["watch_job"] = mgr.resume(resumable[again].path, owner=owner).id
            time.sleep(0.3)
        except (JobRejected, ValueError) as exc:
            st.error(str(exc))
target_job = mgr.snapshot(mine) if mine is not None else None
if target_job is None or target_job.status not in ("queued", "running"):
    target_job = mgr.current_or_next()  # one read: the worker may start or end a job at any moment
others = target_job is not None and target_job.owner != owner
confirm = True
if others and can_control:
    confirm = c4.checkbox("Stop another visitor's job", key="confirm_stop_other",
                          help="This job was started in another browser session.")
if c2.button("■ Stop", disabled=target_job is None or (others and not (can_control and confirm)), key="btn_stop"):
    try:
        if mgr.stop(target_job.id, requester=owner, presenter=can_control):
            st.toast("Stopping after the current batch ...")
    except JobRejected as exc:
        st.error(str(exc))
c3.button("↺ Reset", on_click=link.reset, args=("tr_*", "watch_job", "tr_seen_job"), key="btn_reset",
          help="Restore the default settings and clear the view.")

# 1 s until this visitor's view has drawn the watched job's first report (Start -> first point within
# ~2 s), then 2 s: every refresh redraws two charts here and in the browser, and on a 2-core CPU a 1-s
# refresh slowed the classroom run's 97% from 39.0 to 51.9 s (one run each, benchmarks/training/train_live.py)
LIVE_FAST, LIVE_SLOW = 1.0, 2.0
running = mgr.current()
_watched = st.session_state.get("watch_job") or (running.id if running is not None else None)


@st.fragment(run_every=LIVE_SLOW if _watched is not None and st.session_state.get("tr_charted") == _watched
             else LIVE_FAST)
def live_view() -> None:
    job_id = st.session_state.get("watch_job")
    cur = mgr.current()
    snap = (mgr.snapshot(job_id) if job_id is not None else None) or cur
    if snap is None and (seen := st.session_state.get("tr_seen_job")) is not None:
        snap = mgr.snapshot(seen)  # the job this visitor was watching ended: everyone sees how it ended
    if snap is None and (snap := mgr.elsewhere()) is not None:  # another server (or the CLI) trains: its run dir
        st.info(elsewhere_text(snap))
    if snap is None:
        st.info("No training job is running. Choose settings in the sidebar and press Start.")
        return
    if snap.id:
        st.session_state["tr_seen_job"] = snap.id
    if cur is not None and cur.id != snap.id:
        st.warning(f"Another visitor's job (#{cur.id}, {cur.config.model.label()}) is running; "
                   f"it should end in about {eta_text(cur.eta_seconds)}.")
    if snap.status == "queued":
        st.info(queued_text(snap, mgr.wait_until_start_estimate(snap.id)))
        return
    st.progress(snap.progress, text=progress_text(snap))
    if snap.status == "failed":
        st.error(f"Training failed: {snap.message}")
    elif snap.status in ("stopped", "finished"):
        fine, text = end_text(snap)
        (st.success if fine else st.warning)(text)
        if st.session_state.get("tr_done_seen") != snap.id:  # show it in the Runs table and disable Stop now
            st.session_state["tr_done_seen"] = snap.id
            st.rerun(scope="app")
    df, loss, acc = cached_live_curves(snap)  # built once per report for everyone watching
    if df.empty or "kind" not in df or not (df["kind"] == "batch").any():
        st.caption("Starting: the first report arrives after a few batches ..." if snap.status == "running"
                   else "No reports were recorded.")
        return
    m1, m2, m3, m4 = st.columns(4)
    if (ev := snap.last_batch) is not None:
        m1.metric("train loss", f"{ev.train_loss:.4f}")
        m2.metric("batch accuracy", f"{100 * ev.train_acc:.1f}%")
        m3.metric("NFE / forward", f"{ev.nfe:.1f}")
    evs = df[df["kind"] == "eval"]
    if not evs.empty:
        last_eval = evs.iloc[-1]
        m4.metric(eval_label(snap, full=last_eval["batch"] == last_eval["batches_per_epoch"]),
                  f"{100 * last_eval['test_acc']:.2f}%",
                  help="Mid-epoch evaluations use a fixed subset of the test set so training is not slowed; "
                       f"the end of every epoch uses all {TEST_SIZE:,} test images.")
    g1, g2 = st.columns(2)
    g1.plotly_chart(loss, key="live_loss", width="stretch")
    g2.plotly_chart(acc, key="live_acc", width="stretch")
    if snap.config.model.adaptive:
        st.plotly_chart(plots.nfe_curve(df), key="live_nfe", width="stretch")
    if snap.status == "running" and st.session_state.get("tr_charted") != snap.id:
        st.session_state["tr_charted"] = snap.id  # the first point is on screen: refresh every LIVE_SLOW from now
        st.rerun(scope="app")


live_view()


def pareto_view(chosen: list) -> None:
    """Test accuracy vs adaptive evaluations per image for the chosen runs, computed on request
    (per checkpoint version, shared by every visitor)."""
    ckpts = {r.name: r.checkpoint for r in chosen if r.checkpoint is not None}
    if not ckpts:
        return
    st.markdown(f"**Pareto view**: accuracy against the cost of an accurate adaptive solve "
                f"({REFERENCE_SOLVER.label()}) on 1,000 test images. Up and to the left is better.")
    st.button("Compute Pareto view", key="btn_pareto", on_click=st.session_state.update,
              kwargs={"pareto_request": True})  # a callback: a rerun before this line would drop a button's True
    if st.session_state.pop("pareto_request", False) and (data := require_mnist()) is not None:
        with st.spinner(f"Solving {len(ckpts)} model(s) adaptively ..."):
            for path in ckpts.values():
                get_or_compute(("pareto", *file_version(path)),
                               lambda p=path: adaptive_cost(cached_model(p), data[1].subset(1000)))
    rows = [{"run": n, "accuracy": hit[0], "nfe": hit[1]} for n, path in ckpts.items()
            if (hit := peek(("pareto", *file_version(path)))) is not None]
    if rows:
        st.plotly_chart(plots.pareto_plot(pd.DataFrame(rows)), key="cmp_pareto", width="stretch")


st.divider()
st.subheader("Runs")
runs = [r for r in all_runs if r.status != "running"]
if not runs:
    st.caption("Finished and stopped runs will appear here.")
else:
    st.dataframe(runs_table(runs), hide_index=True, width="stretch")
    by_name = {r.name: r for r in runs}
    picked = st.multiselect("Compare runs", list(by_name), default=[runs[0].name], key="cmp_runs",
                            format_func=lambda n: by_name[n].legend if n in by_name else n)
    picked = [n for n in picked if n in by_name]  # a run deleted meanwhile
    if picked:  # legends say what each run was (recipe · solver · time), not only a timestamp
        loss, acc = plots.training_curves({by_name[n].legend: read_metrics(by_name[n].path) for n in picked})
        g1, g2 = st.columns(2)
        g1.plotly_chart(loss, key="cmp_loss", width="stretch")
        g2.plotly_chart(acc, key="cmp_acc", width="stretch")
        pareto_view([r for r in runs if r.name in picked])
    dl = st.selectbox("Download a run", list(by_name), key="dl_run",
                      format_func=lambda n: by_name[n].legend if n in by_name else n)
    run = by_name.get(dl, runs[0])
    d1, d2 = st.columns(2)
    # the bytes themselves, not a callable: Streamlit names a file by its content, so a click that
    # lands during a rerun (another run compared, the live view refreshing) still finds it; a
    # deferred callable got a new name on every run and an in-flight click hit "file not found"
    if run.checkpoint is not None:
        d1.download_button("Checkpoint (.pt)", run.checkpoint.read_bytes(), file_name=f"{run.name}.pt", key="dl_ckpt")
    d2.download_button("Metrics (.csv)", read_metrics(run.path).to_csv(index=False), file_name=f"{run.name}.csv",
                       key="dl_csv")
    if can_control:
        with st.expander("Delete a run"):
            victim = st.selectbox("Run", list(by_name), key="del_run",
                                  format_func=lambda n: f"{n} ({by_name[n].legend})" if n in by_name else n)
            # one confirmation per run: after a delete the next run's box starts unticked
            sure = st.checkbox(f"Delete {victim} and its checkpoints for good", key=f"del_confirm_{victim}")
            if st.button("Delete run", disabled=not sure, key="btn_delete"):
                try:
                    delete_run(victim, active=mgr.active_run_dirs(), runs_dir=mgr.runs_dir)
                    forget(glob_escape(f"del_confirm_{victim}"), "del_run")
                    st.rerun()
                except RunBusy as exc:
                    st.error(str(exc))
